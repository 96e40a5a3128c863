"""Live results: SSE clients, pending requests, and events that reach them from any replica.

``services.live`` (a :class:`LiveHub`) is the one place that knows

* which client ids this process holds streams for (``open``/``close_stream``),
* who owns a client id (the session that created it; NATS KV so it holds on every replica),
* which requests wait for a result (``prepare_request``/``record_pending`` for GraphQL,
  ``find_request`` for the callback endpoints), and
* how an event gets to its client: published to JetStream, consumed by every replica, offered
  to the matching local streams; replayed from the stream on reconnect. Without NATS the same
  happens in process memory.

Handlers only translate HTTP to these calls and write frames.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gateway.auth.sessions import Session, SessionCache
from gateway.config import GatewayConfig
from gateway.errors import ClientNotOwned, TooManyPending
from gateway.live.bus import EventBus, MemoryJournal
from gateway.live.events import (
    KIND_PROGRESS,
    KIND_RESULT,
    ZERO,
    LiveEvent,
    Pos,
    format_pos,
    is_client_id,
    notification,
    parse_pos,
    progress_params,
    result_params,
)
from gateway.live.slots import SessionSlots
from gateway.live.store import ClientRegistry, RequestStore
from gateway.live.stream import EXPIRED, REVOKED, SHUTDOWN, LiveStream, expires_in
from gateway.metrics import Metrics
from gateway.nats.link import NatsLink

log = logging.getLogger("gateway.live")

SHUTDOWN_GRACE_SECS = 5.0
MAX_OUTBOX = 10_000  # results made during an NATS outage for clients held elsewhere
HEARTBEAT_SPREAD = 0.05  # fraction of the interval over which first pings are spread


@dataclass
class Opened:
    """A stream just opened: what the init message says and what to replay before going live."""

    stream: LiveStream
    client_id: str
    start: Pos
    pending: list[dict[str, Any]] = field(default_factory=list)
    replay_after: Pos | None = None  # None: nothing to replay
    results_only: bool = False  # client_id without Last-Event-ID: undelivered results only


class LiveHub:
    """SSE streams of this process and the routing of events to them (see module doc)."""

    def __init__(self, config: GatewayConfig, link: NatsLink, metrics: Metrics, sessions: SessionCache) -> None:
        self.config = config
        self._link = link
        self._metrics = metrics
        self._sessions = sessions
        retention = float(config.gateway_event_retention_secs)
        self.clients = ClientRegistry(link, config.nats_client_bucket, retention)
        self.requests = RequestStore(link, config.nats_request_bucket, config.nats_request_ttl_secs)
        self.slots = SessionSlots(
            self.requests, link, config.nats_request_ttl_secs, config.gateway_max_pending_per_session
        )
        self.bus = EventBus(config, link, self._dispatch)
        self.journal = MemoryJournal(retention)
        self._streams: dict[str, set[LiveStream]] = {}
        self._by_session: dict[str, set[LiveStream]] = {}
        self._counter = itertools.count(1)
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        # Write-behind of client records and delivered requests: one task, coalesced, never on
        # a connection's critical path.
        self._record_writes: dict[str, dict[str, Any]] = {}
        self._request_deletes: dict[str, str] = {}  # request id -> session hash (frees its slot)
        self._writes_due = asyncio.Event()
        self._refresh_secs = max(1.0, min(retention / 3.0, 300.0))
        self._tasks = [
            asyncio.create_task(self._write_behind(), name="live-write-behind"),
            asyncio.create_task(self._housekeeping(), name="live-housekeeping"),
        ]
        sessions.revoked.add_listener(self._on_revoked)
        # Results made while NATS was away for a client this process does not hold: published
        # when NATS is back, so they reach the client's replica (or wait in the stream for it).
        self._outbox: dict[str, LiveEvent] = {}
        self._outbox_task: asyncio.Task[None] | None = None
        link.add_state_listener(self._on_link_state)

    # -- the GraphQL seam (gateway/executions.py LiveResults) ------------------------------

    async def prepare_request(self, session: Session, client_id: str) -> str:
        """A new request id for an execution whose result goes to ``client_id`` of this session.

        Takes one of the session's pending slots (``GATEWAY_MAX_PENDING_PER_SESSION``) and stores
        the request before the playbook starts: a fast worker's callback may arrive before
        NoETL has answered the execute call, and must find its client.
        """
        if not await self.owns(session.token_hash, client_id):
            raise ClientNotOwned()
        request_id = str(uuid.uuid4())
        if not await self.slots.reserve(session.token_hash, request_id):
            raise TooManyPending(self.slots.limit)
        record = {
            "client_id": client_id,
            "session": session.token_hash,
            "execution_id": None,
            "playbook_path": None,
            "created_at": int(time.time()),
        }
        await self.requests.put(request_id, record)
        return request_id

    async def release_request(self, session: Session, request_id: str) -> None:
        """The playbook did not start: forget the provisional request and free its slot."""
        await asyncio.gather(self.requests.delete(request_id), self.slots.release(session.token_hash, request_id))

    async def record_pending(
        self, request_id: str, client_id: str, session: Session, execution_id: str, playbook_path: str
    ) -> None:
        """Complete the request ``prepare_request`` stored (CONTRACT §7 pending request).

        Unless its result was delivered meanwhile: then there is nothing left to wait for.
        """
        fields = {"execution_id": str(execution_id), "playbook_path": playbook_path}
        if await self.requests.complete(request_id, fields):
            await self.requests.add_to_index(client_id, request_id)

    async def owns(self, session_hash: str, client_id: str) -> bool:
        """True if ``client_id`` is a stream client of that session (on any replica)."""
        if not is_client_id(client_id):
            return False
        if any(s.session == session_hash for s in self._streams.get(client_id, ())):
            return True
        record = await self.clients.get(client_id)
        return record is not None and record.get("session") == session_hash

    # -- streams ---------------------------------------------------------------------------

    def streams_of_session(self, session_hash: str) -> int:
        """Open streams of a session in this process (the per-session limit)."""
        return len(self._by_session.get(session_hash, ()))

    @property
    def stream_count(self) -> int:
        """Open streams in this process."""
        return sum(len(streams) for streams in self._streams.values())

    def is_held(self, client_id: str) -> bool:
        """True if this process has an open stream for the client."""
        return bool(self._streams.get(client_id))

    async def open(self, session: Session, client_id: str | None, last_event_id: str | None) -> Opened:
        """Register a stream: resume ``client_id`` if this session owns it, else a fresh id."""
        mine = session.token_hash
        record: dict[str, Any] | None = None
        resume = False
        if client_id is not None and is_client_id(client_id):
            record = await self.clients.get(client_id)
            if record is not None and record.get("session") == mine:
                resume = True
            elif record is not None:
                log.warning("client id %s belongs to another session: issuing a fresh one", client_id[:8])
                client_id, record = None, None
            elif self._link.connected or not self._link.enabled:
                resume = True  # unknown or expired: this session may take it (events never cross sessions)
            else:
                log.info("client id %s cannot be checked while NATS is away: issuing a fresh one", client_id[:8])
                client_id = None
        elif client_id is not None:
            log.info("malformed client id refused: issuing a fresh one")
            client_id = None
        if client_id is None:
            client_id = str(uuid.uuid4())

        opened = Opened(
            stream=LiveStream(client_id, mine, self.config.gateway_sse_client_buffer), client_id=client_id, start=ZERO
        )
        if resume:
            given = parse_pos(last_event_id)
            if given is not None:
                opened.start = opened.replay_after = given
            else:
                delivered = parse_pos(str(record.get("delivered"))) if record else None
                opened.start = opened.replay_after = delivered or ZERO
                opened.results_only = True
        stream = opened.stream
        stream.last_pos = stream.sent_pos = opened.start
        created = (record or {}).get("created_at")
        if isinstance(created, int):
            stream.created_at = created
        self._register(stream, session)
        try:
            await self.clients.put(
                client_id,
                {
                    "session": mine,
                    "created_at": stream.created_at,
                    "connected": True,
                    "seen": int(time.time()),
                    "delivered": format_pos(opened.start),
                },
            )
            if resume:
                pending = await self.requests.of_client(client_id, mine)
                opened.pending = [
                    {"requestId": rid, "executionId": rec.get("execution_id"), "playbookPath": rec.get("playbook_path")}
                    for rid, rec in pending
                    if not rec.get("result")
                ]
        except BaseException:
            self.close_stream(stream)
            raise
        return opened

    def _register(self, stream: LiveStream, session: Session) -> None:
        self._streams.setdefault(stream.client_id, set()).add(stream)
        self._by_session.setdefault(stream.session, set()).add(stream)
        self._all_closed.clear()
        self._metrics.sse_clients.inc()
        loop = asyncio.get_running_loop()
        # The first ping comes up to 5% early, at random: streams accepted in one burst would
        # otherwise be due in the same loop iteration, every interval, and their writes would
        # hold up everything else (measured by bench/heartbeat_bench.py). The period stays exact.
        first = self.config.gateway_heartbeat_interval_secs * (1.0 - HEARTBEAT_SPREAD * random.random())
        stream.set_timer("ping", loop.call_later(first, self._ping, stream))
        remaining = expires_in(session.expires_epoch)
        if remaining is not None:
            stream.set_timer("expiry", loop.call_later(remaining, stream.end, EXPIRED))

    def _ping(self, stream: LiveStream) -> None:
        if stream.reason is not None:
            return
        if self._sessions.is_revoked(stream.session):  # also covers a logout while NATS was away
            stream.end(REVOKED)
            return
        stream.request_ping()
        loop = asyncio.get_running_loop()
        stream.set_timer("ping", loop.call_later(self.config.gateway_heartbeat_interval_secs, self._ping, stream))

    async def replay(self, opened: Opened) -> AsyncGenerator[LiveEvent, None]:
        """Missed events, in order, each once: the stream's (NATS) merged with this process's own."""
        after = opened.replay_after
        if after is None:
            return
        local = self.journal.after(opened.client_id, after)
        index = 0
        results: set[str] = set()  # a result forwarded after an outage is in the journal and the stream
        if self._link.connected:
            try:
                async for event in self.bus.replay(opened.client_id, after[0]):
                    while index < len(local) and local[index].pos < event.pos:
                        if self._wanted(opened, local[index], results):
                            yield local[index]
                        index += 1
                    if self._wanted(opened, event, results):
                        yield event
            except Exception as exc:  # NATS went away mid-replay: what follows comes live
                log.warning("replay for client %s cut short: %s", opened.client_id[:8], type(exc).__name__)
        for event in local[index:]:
            if self._wanted(opened, event, results):
                yield event

    def _wanted(self, opened: Opened, event: LiveEvent, results: set[str]) -> bool:
        if event.session != opened.stream.session:
            return False
        if opened.results_only and event.kind != KIND_RESULT:
            return False
        if event.kind == KIND_RESULT and event.request_id:
            if event.request_id in results:
                return False
            results.add(event.request_id)
        return opened.stream.replayed(event)

    def sent(self, stream: LiveStream, event: LiveEvent) -> None:
        """The writer flushed ``event``: a delivered result ends its pending request."""
        stream.sent_pos = event.pos
        self._metrics.sse_events.labels(event.method).inc()
        if event.kind == KIND_RESULT:
            if event.request_id:
                self._request_deletes[event.request_id] = event.session
            self._note_record(stream, connected=True)

    def _note_record(self, stream: LiveStream, *, connected: bool) -> None:
        self._record_writes[stream.client_id] = {
            "session": stream.session,
            "created_at": stream.created_at,
            "connected": connected,
            "seen": int(time.time()),
            "delivered": format_pos(stream.sent_pos),
        }
        self._writes_due.set()

    def close_stream(self, stream: LiveStream) -> None:
        """The connection is over: unregister, cancel timers, record where the client stopped."""
        stream.close()
        peers = self._streams.get(stream.client_id)
        if peers is not None and stream in peers:
            peers.discard(stream)
            if not peers:
                del self._streams[stream.client_id]
            session_streams = self._by_session.get(stream.session)
            if session_streams is not None:
                session_streams.discard(stream)
                if not session_streams:
                    del self._by_session[stream.session]
            self._metrics.sse_clients.dec()
            if not self._streams.get(stream.client_id):
                self._note_record(stream, connected=False)
        if not self._streams:
            self._all_closed.set()

    def _on_revoked(self, token_hash: str, value: dict[str, Any] | None) -> None:
        if value is None:
            return
        for stream in list(self._by_session.get(token_hash, ())):
            stream.end(REVOKED)

    async def shutdown(self) -> None:
        """Shutdown hook: every stream gets a retry hint and a clean close (bounded wait)."""
        for streams in list(self._streams.values()):
            for stream in list(streams):
                stream.end(SHUTDOWN)
        try:
            await asyncio.wait_for(self._all_closed.wait(), SHUTDOWN_GRACE_SECS)
        except TimeoutError:
            log.warning("%d event stream(s) did not close in time", self.stream_count)

    # -- callbacks -------------------------------------------------------------------------

    async def find_request(self, request_id: str) -> dict[str, Any] | None:
        """The pending request a callback names, or None."""
        return await self.requests.get(request_id)

    async def deliver_result(
        self,
        request_id: str,
        record: dict[str, Any],
        execution_id: str | int | None,
        status: str,
        data: Any,
        error: dict[str, Any] | None,
    ) -> bool:
        """Send ``playbook/result``; True if the client is connected (else it waits for the client)."""
        params = result_params(request_id, _execution_id(execution_id, record), status, data, error)
        event = await self._publish(
            record, "playbook/result", notification("playbook/result", params), KIND_RESULT, request_id
        )
        connected = await self._connected(record)
        if not connected:
            # Kept until the client is back; marked so pendingRequests no longer lists it (unless
            # it was delivered meanwhile: a plain write would bring the request back).
            await self.requests.complete(request_id, {"result": format_pos(event.pos)})
            if event.pos[1] and self._link.enabled:  # made in-process while NATS is away
                self._outbox.pop(request_id, None)
                self._outbox[request_id] = event
                while len(self._outbox) > MAX_OUTBOX:
                    dropped = next(iter(self._outbox))
                    del self._outbox[dropped]
                    log.warning("result for request %s not kept for forwarding (outbox full)", dropped[:8])
        return connected

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
        return await self._connected(record)

    async def _publish(
        self, record: dict[str, Any], method: str, payload: bytes, kind: str, request_id: str
    ) -> LiveEvent:
        client_id, session = str(record["client_id"]), str(record["session"])
        if self._link.connected:
            try:
                # Delivered by the consumer (here too): stream order is delivery order.
                return await self.bus.publish(client_id, session, method, payload, kind, request_id)
            except Exception as exc:
                log.warning(
                    "event for client %s not published (%s); delivering in-process", client_id[:8], type(exc).__name__
                )
        event = LiveEvent(self._local_pos(), client_id, session, method, payload, kind, request_id)
        self.journal.add(event)
        self._dispatch(event)
        return event

    def _local_pos(self) -> Pos:
        if not self._link.enabled:
            return (next(self._counter), 0)
        return (self.bus.consumed, next(self._counter))

    def _dispatch(self, event: LiveEvent) -> None:
        for stream in self._streams.get(event.client_id, ()):
            stream.offer(event)

    async def _connected(self, record: dict[str, Any]) -> bool:
        client_id, session = str(record["client_id"]), str(record["session"])
        if any(s.session == session for s in self._streams.get(client_id, ())):
            return True
        if not self._link.connected:
            return False
        owner = await self.clients.get(client_id)
        if owner is None or owner.get("session") != session or not owner.get("connected"):
            return False
        seen = owner.get("seen")
        # A replica that died cannot say goodbye: trust "connected" only while it is refreshed.
        return isinstance(seen, int | float) and time.time() - seen < 2 * self._refresh_secs + 30

    # -- background ------------------------------------------------------------------------

    def _on_link_state(self, connected: bool) -> None:
        if connected and self._outbox and (self._outbox_task is None or self._outbox_task.done()):
            self._outbox_task = asyncio.create_task(self._forward_outbox(), name="live-outbox")

    async def _forward_outbox(self) -> None:
        """Publish the results made during the outage that are still undelivered (NATS is back)."""
        forwarded = 0
        while self._outbox and self._link.connected:
            request_id, event = next(iter(self._outbox.items()))
            record = await self.requests.get(request_id)
            if record is not None and record.get("result"):  # else delivered meanwhile, or expired
                try:
                    await self.bus.publish(
                        event.client_id, event.session, event.method, event.payload, event.kind, request_id
                    )
                except Exception as exc:  # away again: the next connect resumes here
                    log.warning("forwarding results after the outage paused: %s", type(exc).__name__)
                    return
                forwarded += 1
            self._outbox.pop(request_id, None)
        if forwarded:
            log.info("%d result(s) made during the NATS outage forwarded", forwarded)

    async def _write_behind(self) -> None:
        while True:
            await self._writes_due.wait()
            self._writes_due.clear()
            await self._flush_writes()

    async def _flush_writes(self) -> None:
        records, self._record_writes = self._record_writes, {}
        deletes, self._request_deletes = self._request_deletes, {}
        jobs: list[Callable[[], Awaitable[None]]] = [partial(self.clients.put, c, r) for c, r in records.items()]
        jobs += [partial(self.requests.delete, rid) for rid in deletes]
        jobs += [partial(self.slots.release, session, rid) for rid, session in deletes.items()]
        for start in range(0, len(jobs), 64):
            results = await asyncio.gather(*(job() for job in jobs[start : start + 64]), return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    log.warning("live state write failed: %s", type(result).__name__)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_secs)
            self.journal.purge()
            for streams in list(self._streams.values()):
                for stream in list(streams)[:1]:
                    self._note_record(stream, connected=True)  # keeps the record alive (max age)

    async def close(self) -> None:
        """Cancel background work, then one last write-behind pass (bounded)."""
        if self._outbox_task is not None:
            self._tasks.append(self._outbox_task)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        try:
            await asyncio.wait_for(self._flush_writes(), 2.0)
        except (TimeoutError, Exception) as exc:
            log.warning("live state not fully written at close: %s", type(exc).__name__)
        await self.slots.close()
        await self.bus.close()
        await self.clients.bucket.close()
        await self.requests.bucket.close()


def _execution_id(given: str | int | None, record: dict[str, Any]) -> str | None:
    if given is not None and given != "":
        return str(given)
    stored = record.get("execution_id")
    return None if stored is None else str(stored)
