"""What a GraphQL subscription watches: the live events of one request, on any replica, none missed.

A request's events (``playbook/progress``, the synthetic ``playbook/state`` and ``playbook/result``,
and NoETL's ``playbook/state`` frames of its execution) are published on its client's subject in
``GATEWAY_EVENTS`` (``bus.py``), and every replica's one consumer hands each event to
``StreamRegistry.dispatch``. A watch *taps* that hand-over for its client id — a dict lookup per
event, no NATS consumer per watch — so a result posted to any replica reaches a subscription on
any other, and after a NATS restart the consumer resumes where it stopped, as for ``/events``.

Before going live a watch replays the client's retained events (``replay.py``: the stream merged
with this process's outage journal, what ``/events`` resumes with) and keeps its request's.
Events that arrive meanwhile are held and released after the replay, skipping those it already
sent (``stream.LiveStream``'s bookkeeping): a subscription that starts after ``executePlaybook``
returned — within ``GATEWAY_EVENT_RETENTION_SECS`` — gets every event once, in order. So does one
that starts after the result was delivered (to an ``/events`` stream, or to another subscription):
the request's trace (``store.py``) names its session and client, the replay gives what is
retained, and the watch ends there (nothing more will come). A watch ends
after its request's result; or ``END_GRACE_SECS`` after NoETL said the execution ended, when no
result came (a playbook that never posts one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import orjson

from gateway.auth.sessions import Session
from gateway.errors import PublicError, SubscriptionRefused
from gateway.live.events import KIND_RESULT, KIND_STATE, ZERO, LiveEvent
from gateway.live.hub import LiveHub
from gateway.live.lifecycle import PLAYBOOK_END, execution_id_text
from gateway.live.store import DELIVERED_TO
from gateway.live.stream import SHUTDOWN, SLOW, LiveStream
from gateway.live.streams import Opened

log = logging.getLogger("gateway.subscriptions")

END_GRACE_SECS = 5.0
NOT_WATCHABLE = "No request of this session with that id is waiting or retained"


class WatchEnded(PublicError):
    """The watch stopped before its result: too slow a reader (``slow``), or the process stops."""

    def __init__(self, reason: str) -> None:
        public = _ENDED.get(reason, "The subscription ended early; subscribe again")
        super().__init__(503, "SUBSCRIPTION_ENDED", public)
        self.reason = reason


_ENDED = {
    SLOW: "Events were not read in time; subscribe again (nothing retained is lost)",
    SHUTDOWN: "The gateway is restarting; subscribe again (nothing retained is lost)",
}


class RequestWatch:
    """One subscription's filter and queue over one client's events."""

    __slots__ = ("delivered", "execution_id", "request_id", "stream")

    def __init__(
        self,
        request_id: str,
        execution_id: str | None,
        client_id: str,
        session: str,
        limit: int,
        delivered: bool = False,
    ) -> None:
        self.request_id = request_id
        self.execution_id = execution_id
        self.stream = LiveStream(client_id, session, limit)
        self.delivered = delivered  # its result was delivered already: replay only

    def wants(self, event: LiveEvent) -> bool:
        """Its request's events, and NoETL's state frames of its execution (they carry no request id)."""
        if event.request_id is not None:
            return event.request_id == self.request_id
        if event.kind != KIND_STATE or self.execution_id is None:
            return False
        return state_of(event).get("execution_id") == self.execution_id

    def offer(self, event: LiveEvent) -> None:
        """From the tap: queue the event if it is this watch's (never blocks)."""
        if self.wants(event):
            self.stream.offer(event)


def params_of(event: LiveEvent) -> dict[str, Any]:
    """The JSON-RPC params of an event's payload ({} when it has none)."""
    try:
        message = orjson.loads(event.payload)
    except orjson.JSONDecodeError:
        return {}
    params = message.get("params") if isinstance(message, dict) else None
    return params if isinstance(params, dict) else {}


def state_of(event: LiveEvent) -> dict[str, Any]:
    """A ``playbook/state`` event's params (``execution_id`` is always text)."""
    return params_of(event) if event.kind == KIND_STATE else {}


class RequestWatches:
    """The tap on the hub's hand-over, and the watches of this process by client id."""

    def __init__(self, hub: LiveHub) -> None:
        self._hub = hub
        self._limit = hub.config.gateway_sse_client_buffer
        # A list per client id, not a set: mostly one watch each, and an empty set costs 216 bytes.
        self._by_client: dict[str, list[RequestWatch]] = {}
        hub.streams.tap = self._tap

    @property
    def count(self) -> int:
        """Open request watches in this process."""
        return sum(len(watches) for watches in self._by_client.values())

    def _tap(self, event: LiveEvent) -> None:
        watches = self._by_client.get(event.client_id)
        if watches:
            for watch in watches:
                watch.offer(event)

    async def find(
        self, session: Session, request_id: str | None, execution_id: str | None, own_client: str | None
    ) -> RequestWatch | None:
        """The watch of a request of this session, by request id or by execution id; None when no
        request of the session waits on that execution (the caller may then watch NoETL's view)."""
        mine = session.token_hash
        if request_id is not None:
            # Pending, or delivered already (its trace): the same refusal for another session's.
            record = await self._hub.requests.get(request_id, sure=True, delivered=True)
            if record is None or record.get("session") != mine:
                raise SubscriptionRefused(NOT_WATCHABLE)
            recorded = execution_id_text(record.get("execution_id"))
            if execution_id is not None and recorded is not None and recorded != execution_id:
                raise SubscriptionRefused(NOT_WATCHABLE)
            delivered_to = record.get(DELIVERED_TO)
            client_id = str(delivered_to or record["client_id"])
            watch_id = recorded or execution_id
            return RequestWatch(request_id, watch_id, client_id, mine, self._limit, delivered=bool(delivered_to))
        if execution_id is None:
            return None
        candidates = list(await self._hub.states.index.request_ids(execution_id))
        if own_client is not None:
            candidates += [rid for rid, _ in await self._hub.requests.of_client(own_client, mine)]
        for rid in dict.fromkeys(candidates):
            record = await self._hub.find_request(rid)
            if (
                record is not None
                and record.get("session") == mine
                and execution_id_text(record.get("execution_id")) == execution_id
            ):
                return RequestWatch(rid, execution_id, str(record["client_id"]), mine, self._limit)
        return None

    async def events(self, watch: RequestWatch) -> AsyncGenerator[LiveEvent, None]:
        """Replayed, then live events of the watch, in order, once; ends after its result."""
        stream = watch.stream
        self._by_client.setdefault(stream.client_id, []).append(watch)
        ending: float | None = None
        try:
            opened = Opened(stream=stream, client_id=stream.client_id, start=ZERO, replay_after=ZERO)
            async with aclosing(self._hub.replay(opened)) as missed:
                async for event in missed:
                    if not watch.wants(event):
                        continue
                    yield event
                    if self._is_result(watch, event):
                        return
                    ending = ending or self._end_deadline(event)
            del missed, opened  # done with: this frame lives as long as the subscription
            if watch.delivered:
                return  # its result came before the watch and is not retained any more: nothing will
            stream.go_live()
            while True:
                live = stream.take()
                if live is not None:
                    yield live
                    if self._is_result(watch, live):
                        return
                    ending = ending or self._end_deadline(live)
                elif stream.reason is not None:
                    raise WatchEnded(stream.reason)
                elif ending is not None:
                    try:
                        async with asyncio.timeout_at(ending):
                            await stream.wait()
                    except TimeoutError:
                        return  # NoETL said it ended and no result came
                else:
                    await stream.wait()
        finally:
            peers = self._by_client.get(stream.client_id)
            if peers is not None and watch in peers:
                peers.remove(watch)
                if not peers:
                    del self._by_client[stream.client_id]
            stream.close()

    def _is_result(self, watch: RequestWatch, event: LiveEvent) -> bool:
        if event.kind != KIND_RESULT:
            return False
        if watch.delivered:
            return True  # delivered before: its trace is written already
        # Sent: its request is over, as when an /events stream flushes it (frees the pending slot).
        stream = watch.stream
        self._hub.writes.note_delivered(watch.request_id, stream.session, stream.client_id, watch.execution_id)
        return True

    def _end_deadline(self, event: LiveEvent) -> float | None:
        if event.kind == KIND_STATE and event.request_id is None and state_of(event).get("event_type") in PLAYBOOK_END:
            return asyncio.get_running_loop().time() + END_GRACE_SECS
        return None

    def end_all(self, reason: str) -> None:
        """Process stopping: every watch ends (its subscription gets an error, the client resubscribes)."""
        for watches in list(self._by_client.values()):
            for watch in list(watches):
                watch.stream.end(reason)
