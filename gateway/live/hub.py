"""Live results: SSE clients, pending requests, and events that reach them from any replica.

``services.live`` (a :class:`LiveHub`) is the one entry point handlers and executions use; it
wires the parts, each doing one job:

* ``streams.StreamRegistry`` — which client ids this process holds streams for, their timers,
  and who owns a client id (the session that created it; NATS KV so it holds on every replica);
* ``delivery.Delivery`` — which requests wait for a result (``prepare_request``/``record_pending``
  for GraphQL, ``find_request`` for the callback endpoints), publishing results and progress
  (JetStream, consumed by every replica), and the outbox of results made during a NATS outage;
* ``replay.replay`` — what a reconnecting client missed; ``writes.RecordWriter`` — the
  write-behind of client records and delivered requests;
* ``playbook_state.PlaybookStates`` — ``playbook/state`` frames from NoETL (its event mirror, or
  polling) for the clients waiting on an execution.

Without NATS the same happens in process memory. Handlers only translate HTTP to these calls
and write frames. Background tasks start in :meth:`LiveHub.start`, never in ``__init__``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from gateway.auth.sessions import Session, SessionCache
from gateway.config import GatewayConfig
from gateway.live.bus import EventBus
from gateway.live.delivery import Delivery
from gateway.live.events import KIND_RESULT, ZERO, LiveEvent, format_pos, is_client_id, parse_pos
from gateway.live.playbook_state import PlaybookStates
from gateway.live.replay import replay
from gateway.live.state import LiveState
from gateway.live.stream import LiveStream
from gateway.live.streams import Opened, StreamRegistry
from gateway.live.writes import RecordWriter
from gateway.metrics import Metrics
from gateway.nats.link import NatsLink
from gateway.noetl.client import NoetlClient

__all__ = ["LiveHub", "Opened"]

log = logging.getLogger("gateway.live")


class LiveHub:
    """SSE streams of this process and the routing of events to them (see module doc)."""

    def __init__(
        self,
        config: GatewayConfig,
        link: NatsLink,
        metrics: Metrics,
        sessions: SessionCache,
        noetl: NoetlClient | None = None,
    ) -> None:
        self.config = config
        self._link = link
        self._metrics = metrics
        state = LiveState.create(config, link)
        self.clients, self.requests = state.clients, state.requests
        self.slots, self.journal = state.slots, state.journal
        self.streams = StreamRegistry(
            link,
            metrics,
            sessions,
            self.clients,
            heartbeat_secs=config.gateway_heartbeat_interval_secs,
            retention_secs=config.gateway_event_retention_secs,
        )
        self.bus = EventBus(config, link, self.streams.dispatch)
        self.delivery = Delivery(link, state, self.bus, self.streams, metrics)
        self.writes = RecordWriter(state, self.streams)
        self.states = PlaybookStates(config, link, metrics, state.requests, self.delivery, noetl)
        # The pending-request lifecycle (executions' LiveResults) and the callbacks' delivery are
        # Delivery's own methods, handed out as they are.
        self.prepare_request = self.delivery.prepare_request
        self.release_request = self.delivery.release_request
        self.find_request = self.delivery.find_request
        self.deliver_result = self.delivery.deliver_result
        self.deliver_progress = self.delivery.deliver_progress

    def start(self) -> None:
        """Start the background work (write-behind, housekeeping, playbook/state); call once, inside the loop."""
        self.writes.start()
        self.states.start()

    async def record_pending(
        self, request_id: str, client_id: str, session: Session, execution_id: str, playbook_path: str
    ) -> None:
        """Complete the pending request (``Delivery.record_pending``); while it waits, NoETL's frames
        for its execution reach its client."""
        if await self.delivery.record_pending(request_id, client_id, session, execution_id, playbook_path):
            await self.states.watch(str(execution_id), request_id)

    @property
    def playbook_state_source(self) -> str:
        """Where NoETL's playbook/state frames come from: ``nats``, ``polling`` or ``off``."""
        return self.states.source

    # -- ownership ---------------------------------------------------------------------------

    async def owns(self, session_hash: str, client_id: str) -> bool:
        """True if ``client_id`` is a stream client of that session (on any replica)."""
        return await self.streams.owns(session_hash, client_id)

    # -- streams ---------------------------------------------------------------------------

    def streams_of_session(self, session_hash: str) -> int:
        """Open streams of a session in this process (the per-session limit)."""
        return self.streams.of_session(session_hash)

    @property
    def stream_count(self) -> int:
        """Open streams in this process."""
        return self.streams.count

    def is_held(self, client_id: str) -> bool:
        """True if this process has an open stream for the client."""
        return self.streams.is_held(client_id)

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
        self.streams.add(stream, session)
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

    def replay(self, opened: Opened) -> AsyncGenerator[LiveEvent, None]:
        """Missed events, in order, each once: the stream's (NATS) merged with this process's own."""
        return replay(opened, self.journal, self.bus, self._link)

    def sent(self, stream: LiveStream, event: LiveEvent) -> None:
        """The writer flushed ``event``: a delivered result ends its pending request."""
        stream.sent_pos = event.pos
        self._metrics.sse_events.labels(event.method).inc()
        if event.kind == KIND_RESULT:
            if event.request_id:
                self.writes.note_delivered(event.request_id, event.session, event.client_id)
            self.writes.note_record(stream, connected=True)

    def close_stream(self, stream: LiveStream) -> None:
        """The connection is over: unregister, cancel timers, record where the client stopped."""
        if self.streams.remove(stream):
            self.writes.note_record(stream, connected=False)

    async def shutdown(self) -> None:
        """Shutdown hook: every stream gets a retry hint and a clean close (bounded wait)."""
        await self.streams.shutdown()

    # -- lifecycle -------------------------------------------------------------------------

    async def close(self) -> None:
        """Cancel background work, then one last write-behind pass (bounded); close the buckets."""
        await self.states.close()
        await self.delivery.close()
        await self.writes.close()
        await self.slots.close()
        await self.bus.close()
        await self.clients.bucket.close()
        await self.requests.bucket.close()
