"""``services.subscriptions``: the source streams of GraphQL subscriptions, with their limits and access rules.

* ``playbook_events`` — a request of the caller's session (``requestId``, or ``executionId`` of one):
  its progress, state and result from the live events (``watch.py``), ending after the result.
  An execution with no request of this session to follow (started without a ``clientId``) is
  followed through NoETL instead, if the caller may view it: its state frames
  (``execution_watch.py``), then NoETL's own result.
* ``execution_updates`` — the ``playbook/state`` frames of any execution the caller may view (the
  route policy's rule for ``GET executions/{id}``, as for ``execution(id)``).

Each stream holds one of the session's subscription slots (``subscribers.py``: counted across
replicas) until it ends or is closed.
No GraphQL here: the schema's resolvers (``schema/subscriptions.py``) hand these streams to
graphql-core's ``subscribe()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Any

from gateway.access.guard import AccessGuard
from gateway.auth.sessions import Session, SessionCache
from gateway.config import GatewayConfig
from gateway.errors import BadExecutionInput
from gateway.executions.describe import check_execution_id
from gateway.executions.service import Executions
from gateway.live.execution_watch import ExecutionWatches
from gateway.live.hub import LiveHub
from gateway.live.lifecycle import PLAYBOOK_END
from gateway.live.stream import SHUTDOWN
from gateway.live.subscribers import Slot, Subscribers
from gateway.live.watch import RequestWatches
from gateway.metrics import Metrics
from gateway.noetl.client import NoetlClient
from gateway.subscriptions import fields as playbook_events

Fields = dict[str, Any]

# Subscriptions starting at once in this process (the rest wait their turn). A start holds ≈ 15 KB
# while its KV reads and writes are in flight; after a restart every client resubscribes at once,
# and the allocator keeps much of such a peak (bench/subscriptions_bench.py: 1,000 subscribes sent
# at once cost 11 KiB of RSS each with no bound, 7 with this one, as when they come 50 at a time).
STARTS_AT_ONCE = 32


class EventStream:
    """An async iterator of ``PlaybookEvent`` fields that gives its slot back when it ends or is closed.

    ``convert`` turns what ``events`` yields into fields (None: skip it) here rather than in another
    generator wrapped around it: an idle subscription holds one generator frame less.
    """

    __slots__ = ("_convert", "_events", "_slot")

    def __init__(self, events: AsyncGenerator[Any, None], slot: Slot, convert: Callable[[Any], Fields | None]) -> None:
        self._events = events
        self._slot = slot
        self._convert = convert

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Fields:
        try:
            while True:
                fields = self._convert(await self._events.__anext__())
                if fields is not None:
                    return fields
        except BaseException:
            self._slot.release()
            raise

    async def aclose(self) -> None:
        """Stop watching (the transport's unsubscribe, or the connection closed)."""
        self._slot.release()
        await self._events.aclose()


def _same(fields: Fields) -> Fields:
    return fields


class Subscriptions:
    """Subscriptions' source streams (see module doc)."""

    def __init__(
        self,
        config: GatewayConfig,
        sessions: SessionCache,
        hub: LiveHub,
        access: AccessGuard,
        executions: Executions,
        noetl: NoetlClient,
        metrics: Metrics,
    ) -> None:
        self._access = access
        self._executions = executions
        self.starting = asyncio.Semaphore(STARTS_AT_ONCE)
        self.subscribers = Subscribers(
            sessions,
            hub.writes,
            hub.clients,
            config.gateway_max_subscriptions_per_session,
            hub.streams.refresh_secs,
            metrics.graphql_subscriptions,
            hub.slots,
        )
        self.requests = RequestWatches(hub)
        self.executions = ExecutionWatches(hub.states.feed, noetl, config.gateway_playbook_state_poll_secs)

    def start(self) -> None:
        """Start keeping the connections' client records alive; call once, inside the loop."""
        self.subscribers.start()

    async def playbook_events(
        self,
        session: Session,
        roles: Iterable[str],
        request_id: str | None,
        execution_id: str | None,
        own_client: str | None = None,
    ) -> AsyncIterator[Fields]:
        """Progress, state and the result of one request (or execution) of the caller (module doc)."""
        if request_id is None and execution_id is None:
            raise BadExecutionInput("playbookEvents needs requestId or executionId")
        if execution_id is not None:
            execution_id = check_execution_id(execution_id)
        watch = await self.requests.find(session, request_id, execution_id, own_client)
        if watch is None:
            assert execution_id is not None
            self._check_view(execution_id, roles)
            slot = await self.subscribers.admit(session.token_hash)
            return EventStream(self._through_noetl(execution_id, tuple(roles)), slot, _same)
        slot = await self.subscribers.admit(session.token_hash)
        request_id = watch.request_id
        return EventStream(
            self.requests.events(watch), slot, lambda event: playbook_events.from_live_event(event, request_id)
        )

    async def execution_updates(
        self, session: Session, roles: Iterable[str], execution_id: str
    ) -> AsyncIterator[Fields]:
        """``playbook/state`` frames of an execution the caller may view; ends after its end."""
        execution_id = check_execution_id(execution_id)
        self._check_view(execution_id, roles)
        slot = await self.subscribers.admit(session.token_hash)
        return EventStream(
            self.executions.frames(execution_id), slot, lambda frame: playbook_events.from_state(frame, None)
        )

    def _check_view(self, execution_id: str, roles: Iterable[str]) -> None:
        """The route policy's decision for reading the execution (AccessDenied otherwise)."""
        self._access.check_route("GET", f"executions/{execution_id}", roles)

    async def _through_noetl(self, execution_id: str, roles: tuple[str, ...]) -> AsyncGenerator[Fields, None]:
        async for frame in self.executions.frames(execution_id):
            yield playbook_events.from_state(frame, None)
            if frame.get("event_type") in PLAYBOOK_END:
                described = await self._executions.get(execution_id, roles)
                yield playbook_events.from_execution(execution_id, described)

    async def shutdown(self) -> None:
        """Shutdown hook: connections close ("going away"), request watches end; clients resubscribe."""
        self.subscribers.end_all(SHUTDOWN)
        self.requests.end_all(SHUTDOWN)

    async def close(self) -> None:
        """Stop background work (before the hub's own close: its write-behind takes our last records)."""
        await self.subscribers.close()
