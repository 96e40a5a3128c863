"""Pending requests and the events that answer them.

A request is stored before its playbook starts (a fast worker's callback may arrive before NoETL
has answered the execute call); its result and progress are published to JetStream, consumed by
every replica and offered to the client's streams wherever they are. Without NATS the same
happens in process memory, and results for clients held elsewhere wait in an outbox until NATS
is back.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from typing import Any

from gateway.auth.sessions import Session
from gateway.errors import ClientNotOwned, TooManyPending
from gateway.live.bus import EventBus
from gateway.live.events import (
    KIND_PROGRESS,
    KIND_RESULT,
    KIND_STATE,
    LiveEvent,
    Pos,
    format_pos,
    notification,
    progress_params,
    result_params,
)
from gateway.live.lifecycle import synthetic_state
from gateway.live.state import LiveState
from gateway.live.streams import StreamRegistry
from gateway.metrics import Metrics
from gateway.nats.link import NatsLink
from gateway.tasks import Backoff, stop_tasks

log = logging.getLogger("gateway.live")

MAX_OUTBOX = 10_000  # results made during an NATS outage for clients held elsewhere


class Delivery:
    """The pending-request lifecycle, publishing, and the outage outbox."""

    def __init__(
        self, link: NatsLink, state: LiveState, bus: EventBus, streams: StreamRegistry, metrics: Metrics
    ) -> None:
        self._link, self._bus, self._streams, self._metrics = link, bus, streams, metrics
        self._requests, self._slots, self._journal = state.requests, state.slots, state.journal
        self._counter = itertools.count(1)
        self._state_frames = metrics.playbook_state_frames.labels("callback")  # the child, looked up once
        # Results made while NATS was away for a client this process does not hold (each with the
        # synthetic playbook/state before it): published when NATS is back, so they reach the
        # client's replica (or wait in the stream for it).
        self.outbox: dict[str, list[LiveEvent]] = {}
        self._outbox_task: asyncio.Task[None] | None = None
        link.add_state_listener(self._on_link_state)

    # -- the pending-request lifecycle (gateway/executions/service.py LiveResults) ----------

    async def prepare_request(self, session: Session, client_id: str) -> str:
        """A new request id for an execution whose result goes to ``client_id`` of this session.

        Takes one of the session's pending slots (``GATEWAY_MAX_PENDING_PER_SESSION``) and stores
        the request before the playbook starts: a fast worker's callback may arrive before
        NoETL has answered the execute call, and must find its client.
        """
        if not await self._streams.owns(session.token_hash, client_id):
            raise ClientNotOwned()
        request_id = str(uuid.uuid4())
        if not await self._slots.reserve(session.token_hash, request_id):
            raise TooManyPending(self._slots.limit)
        record = {
            "client_id": client_id,
            "session": session.token_hash,
            "execution_id": None,
            "playbook_path": None,
            "created_at": int(time.time()),
        }
        await self._requests.put_shared(request_id, record)
        return request_id

    async def release_request(self, session: Session, request_id: str) -> None:
        """The playbook did not start: forget the provisional request and free its slot."""
        await asyncio.gather(self._requests.delete(request_id), self._slots.release(session.token_hash, request_id))

    async def record_pending(
        self, request_id: str, client_id: str, session: Session, execution_id: str, playbook_path: str
    ) -> bool:
        """Complete the request ``prepare_request`` stored (CONTRACT §7 pending request); True if it waits.

        Unless its result was delivered meanwhile: then there is nothing left to wait for.
        """
        fields = {"execution_id": str(execution_id), "playbook_path": playbook_path}
        if await self._requests.complete(request_id, fields):
            await self._requests.add_to_index(client_id, request_id)
            return True
        return False

    async def find_request(self, request_id: str, *, for_callback: bool = False) -> dict[str, Any] | None:
        """The pending request, or None (``RequestStateUnavailable``: NATS cannot tell now).

        ``for_callback``: one this process stored comes from its own copy, no round trip. Until its
        final callback is spent (the atomic step on every replica, which refuses all after it) only
        this process changes it; subscriptions ("still pending?") read the bucket.
        """
        if for_callback:
            record = self._requests.stored_here(request_id)
            if record is not None:
                return record
        return await self._requests.get(request_id, sure=True)

    # -- results and progress --------------------------------------------------------------

    async def deliver_result(
        self,
        request_id: str,
        record: dict[str, Any],
        execution_id: str | int | None,
        status: str,
        data: Any,
        error: dict[str, Any] | None,
    ) -> bool:
        """Send ``playbook/state`` (synthetic, when the execution id is known), then ``playbook/result``;
        True if the client is connected (else both wait for the client)."""
        known_id = _execution_id(execution_id, record)
        params = result_params(request_id, known_id, status, data, error)
        result = notification("playbook/result", params)
        state: bytes | None = None
        if known_id is not None:
            # Before the result: a client waiting for the execution's end (the travel SPA) learns of it
            # even when NoETL's own playbook.completed comes later, after the request is gone.
            state = notification("playbook/state", synthetic_state(known_id, status, error))
            self._state_frames.inc()
        events = await self._publish_pair(record, request_id, state, result)
        event = events[-1]
        connected = await self._streams.is_connected(record)
        made_here = bool(event.pos[1]) and self._link.enabled  # the publish failed: NATS is away
        if made_here and connected and not self._streams.held_for(event.client_id, event.session):
            # NATS is going away (maybe not noticed yet) and the client is held by another replica,
            # which never saw the event: forward it once NATS answers, if the request is still pending
            # then. No record write: the holder deletes the request when it delivers, and a write
            # replayed after that would bring a delivered request back.
            self._keep_for_forwarding(request_id, events)
            return False
        if not connected:
            # Kept until the client is back; marked so pendingRequests no longer lists it (unless
            # it was delivered meanwhile: a plain write would bring the request back).
            await self._requests.complete(request_id, {"result": format_pos(event.pos)})
            if made_here:
                self._keep_for_forwarding(request_id, events)
        return connected

    async def _publish_pair(
        self, record: dict[str, Any], request_id: str, state: bytes | None, result: bytes
    ) -> list[LiveEvent]:
        """The synthetic state frame (if any), then the result: the events made here, then the result's.

        The state frame does not wait for its own ack (``EventBus.publish_ahead``): the result's, on
        the same connection, covers it. If the result fails the state frame's fate is unknown: both
        are made here, in order (a re-publish is deduplicated by its ``Nats-Msg-Id``).
        """
        client_id, session = str(record["client_id"]), str(record["session"])
        made: list[LiveEvent] = []
        if state is not None:
            if self._link.connected:
                ahead = False
                try:
                    await self._bus.publish_ahead(client_id, session, "playbook/state", state, KIND_STATE, request_id)
                    ahead = True
                    bus = self._bus
                    return [await bus.publish(client_id, session, "playbook/result", result, KIND_RESULT, request_id)]
                except Exception as exc:
                    _not_published(client_id, exc)
                    if ahead:  # the result failed: the state frame's fate is unknown
                        return [
                            self._made_here(client_id, session, "playbook/state", state, KIND_STATE, request_id),
                            self._made_here(client_id, session, "playbook/result", result, KIND_RESULT, request_id),
                        ]
            made.append(self._made_here(client_id, session, "playbook/state", state, KIND_STATE, request_id))
        return [*made, await self._publish(record, "playbook/result", result, KIND_RESULT, request_id)]

    def _keep_for_forwarding(self, request_id: str, events: list[LiveEvent]) -> None:
        """An in-process result JetStream has not seen: published when NATS is back (bounded)."""
        self.outbox.pop(request_id, None)
        self.outbox[request_id] = [event for event in events if event.pos[1]]
        while len(self.outbox) > MAX_OUTBOX:
            dropped = next(iter(self.outbox))
            del self.outbox[dropped]
            log.warning("result for request %s not kept for forwarding (outbox full)", dropped[:8])
        if self._link.connected:  # the publish failed although NATS is (back) up: forward now
            self._on_link_state(True)

    async def deliver_progress(
        self,
        request_id: str,
        record: dict[str, Any],
        execution_id: str | int | None,
        step: str | None,
        message: str | None,
        progress: float | None,
    ) -> bool:
        """Send ``playbook/progress``; True if the client is connected."""
        params = progress_params(request_id, _execution_id(execution_id, record), step, message, progress)
        await self._publish(
            record, "playbook/progress", notification("playbook/progress", params), KIND_PROGRESS, request_id
        )
        return await self._streams.is_connected(record)

    async def deliver_state(
        self, record: dict[str, Any], params: dict[str, Any], *, msg_id: str | None, strict: bool
    ) -> None:
        """A ``playbook/state`` frame of NoETL's (events or polling) for the request's client.

        ``strict``: into the events stream or raise (the NoETL event is then redelivered); else like
        every event, in process memory when NATS cannot take it.
        """
        payload = notification("playbook/state", params)
        if strict:
            client_id, session = str(record["client_id"]), str(record["session"])
            await self._bus.publish(client_id, session, "playbook/state", payload, KIND_STATE, None, msg_id=msg_id)
        else:
            await self._publish(record, "playbook/state", payload, KIND_STATE, None, msg_id=msg_id)

    async def _publish(
        self,
        record: dict[str, Any],
        method: str,
        payload: bytes,
        kind: str,
        request_id: str | None,
        msg_id: str | None = None,
    ) -> LiveEvent:
        client_id, session = str(record["client_id"]), str(record["session"])
        if self._link.connected:
            try:
                # Delivered by the consumer (here too): stream order is delivery order.
                return await self._bus.publish(client_id, session, method, payload, kind, request_id, msg_id=msg_id)
            except Exception as exc:
                _not_published(client_id, exc)
        return self._made_here(client_id, session, method, payload, kind, request_id)

    def _made_here(
        self, client_id: str, session: str, method: str, payload: bytes, kind: str, request_id: str | None
    ) -> LiveEvent:
        """An event NATS did not take: journalled and offered to this process's streams."""
        event = LiveEvent(self._local_pos(), client_id, session, method, payload, kind, request_id)
        self._journal.add(event)
        self._streams.dispatch(event)
        return event

    def _local_pos(self) -> Pos:
        if not self._link.enabled:
            return (next(self._counter), 0)
        return (self._bus.consumed, next(self._counter))

    # -- the outage outbox -----------------------------------------------------------------

    def _on_link_state(self, connected: bool) -> None:
        if connected and self.outbox and (self._outbox_task is None or self._outbox_task.done()):
            self._outbox_task = asyncio.create_task(self._forward_outbox(), name="live-outbox")

    async def _forward_outbox(self) -> None:
        """Publish the results made during the outage that are still undelivered (NATS is back)."""
        forwarded, backoff = 0, Backoff()
        while self.outbox and self._link.connected:
            request_id, events = next(iter(self.outbox.items()))
            record = await self._requests.get(request_id)
            if record is not None:  # else delivered meanwhile (the holder deleted it), or expired
                try:
                    for event in events:  # the state frame, then the result; a re-publish is deduplicated
                        await self._bus.publish(
                            event.client_id, event.session, event.method, event.payload, event.kind, request_id
                        )
                except Exception as exc:  # NATS settling after a reconnect: retry; away again: next connect
                    log.warning("forwarding results after the outage paused: %s", type(exc).__name__)
                    await backoff.pause()
                    continue
                forwarded += 1
            self.outbox.pop(request_id, None)
        if forwarded:
            log.info("%d result(s) made during the NATS outage forwarded", forwarded)

    async def close(self) -> None:
        """Stop forwarding the outbox (what is left stays in the stream or is lost with the process)."""
        await stop_tasks(self._outbox_task)


def _not_published(client_id: str, exc: Exception) -> None:
    log.warning("event for client %s not published (%s); delivering in-process", client_id[:8], type(exc).__name__)


def _execution_id(given: str | int | None, record: dict[str, Any]) -> str | None:
    if given is not None and given != "":
        return str(given)
    stored = record.get("execution_id")
    return None if stored is None else str(stored)
