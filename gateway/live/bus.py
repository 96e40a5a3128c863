"""Events to SSE clients through JetStream, and their in-process stand-in (CONTRACT §7, §8).

* Every event is published on ``{NATS_EVENTS_SUBJECT_PREFIX}.{client_id}`` into the stream
  ``NATS_EVENTS_STREAM`` (max age ``GATEWAY_EVENT_RETENTION_SECS``). The JSON-RPC message is the
  payload, byte for byte what the client receives; routing facts travel in headers.
* Each process runs **one** ordered push consumer on the whole subject space and hands every
  event to its local streams (a dict lookup; events for clients held elsewhere are dropped).
  One consumer per process, not per connection: 10k connections cost no server-side state
  and no task each, and the stream order is the delivery order. The consumer restarts after
  every reconnect from the last sequence it delivered, so nothing published meanwhile is missed.
* Replay (``Last-Event-ID``) reads the client's retained events by subject, directly from the
  stream (no consumer), one message per request.
* :class:`MemoryJournal` keeps events made while NATS is away (or never configured), bounded by
  age and count, so one process still delivers and replays.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from nats.js import api
from nats.js.errors import NotFoundError

from gateway.config import GatewayConfig
from gateway.live.events import KIND_RESULT, KIND_STATE, LiveEvent, Pos
from gateway.nats.acks import ack_inbox
from gateway.nats.consumers import newer_sequence, unsubscribe_quietly
from gateway.nats.link import NatsLink
from gateway.nats.replicas import ensure_stream
from gateway.tracing import nats_consumer, nats_publish

log = logging.getLogger("gateway.live")

MAX_EVENTS_PER_CLIENT = 10_000  # per subject in the stream: a runaway progress loop cannot fill the disk
_H_SESSION = "Gw-Session"
_H_METHOD = "Gw-Method"
_H_KIND = "Gw-Kind"
_H_REQUEST = "Gw-Request"


def _event_from(subject: str, prefix: str, seq: int, headers: dict[str, str] | None, data: bytes) -> LiveEvent | None:
    if not headers or not subject.startswith(prefix):
        return None
    session = headers.get(_H_SESSION)
    method = headers.get(_H_METHOD)
    if not session or not method:
        return None
    return LiveEvent(
        pos=(seq, 0),
        client_id=subject[len(prefix) :],
        session=session,
        method=method,
        payload=data,
        kind=headers.get(_H_KIND) or None,
        request_id=headers.get(_H_REQUEST) or None,
    )


def _headers(session: str, method: str, kind: str | None, request_id: str | None, msg_id: str | None) -> dict[str, str]:
    """The routing facts of an event, and its ``Nats-Msg-Id``."""
    headers = {_H_SESSION: session, _H_METHOD: method}
    if kind:
        headers[_H_KIND] = kind
    if request_id:
        headers[_H_REQUEST] = request_id
        if kind in (KIND_RESULT, KIND_STATE) and msg_id is None:
            # One result (and one synthetic state frame) per request: a re-publish (the outage
            # outbox forwarding one whose first publish timed out but landed after all) is dropped.
            msg_id = f"{kind}:{request_id}"
    if msg_id:
        headers["Nats-Msg-Id"] = msg_id
    return headers


class EventBus:
    """Publishes client events to JetStream; feeds the local streams from one consumer."""

    def __init__(self, config: GatewayConfig, link: NatsLink, on_event: Callable[[LiveEvent], None]) -> None:
        self._link = link
        self._on_event = on_event
        self.stream_name = config.nats_events_stream
        self.prefix = config.nats_events_subject_prefix.rstrip(".") + "."
        self.retention = float(config.gateway_event_retention_secs)
        # The last sequence the consumer delivered: where it restarts, and the base of local positions.
        self.consumed = 0
        self._started = False
        self._sub: Any = None
        link.add_setup_hook("sse-events", self._setup)

    def subject(self, client_id: str) -> str:
        """The subject of one client's events."""
        return self.prefix + client_id

    # -- setup (every (re)connect) ---------------------------------------------------------

    async def _setup(self, link: NatsLink) -> None:
        assert link.js is not None
        js = link.js
        config = api.StreamConfig(
            name=self.stream_name,
            subjects=[self.prefix + "*"],
            max_age=self.retention,
            max_msgs_per_subject=MAX_EVENTS_PER_CLIENT,
            discard=api.DiscardPolicy.OLD,
            storage=api.StorageType.FILE,
            allow_direct=True,
        )
        info = await ensure_stream(link, config)  # added, or updated to these settings and NATS_REPLICAS copies
        last = int(info.state.last_seq or 0)
        if not self._started:
            self.consumed = last  # a new process delivers what is published from now on
            self._started = True
        elif last < self.consumed:
            log.warning(
                "stream %s was reset (last seq %d < %d); positions restart", self.stream_name, last, self.consumed
            )
            self.consumed = last
        await self._stop_consumer()
        self._sub = await js.subscribe(
            self.prefix + "*",
            stream=self.stream_name,
            cb=self._on_message,
            ordered_consumer=True,
            config=api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.consumed + 1,
            ),
        )

    async def _stop_consumer(self) -> None:
        sub, self._sub = self._sub, None
        await unsubscribe_quietly(sub)

    @nats_consumer  # continues the publisher's trace (gateway/tracing)
    async def _on_message(self, msg: Any) -> None:
        seq = newer_sequence(msg, self.consumed)
        if seq is None:
            return
        self.consumed = seq
        event = _event_from(msg.subject, self.prefix, seq, msg.headers, msg.data)
        if event is not None:
            self._on_event(event)

    async def close(self) -> None:
        """Stop the consumer (the link drains the connection)."""
        await self._stop_consumer()

    # -- publish / replay ------------------------------------------------------------------

    async def publish(
        self,
        client_id: str,
        session: str,
        method: str,
        payload: bytes,
        kind: str | None,
        request_id: str | None,
        *,
        msg_id: str | None = None,
    ) -> LiveEvent:
        """Store an event in the stream; raises when NATS cannot take it.

        ``msg_id`` (Nats-Msg-Id) makes a re-publish within JetStream's duplicate window a no-op.
        """
        nc = self._link.nc
        if nc is None or self._link.js is None:
            raise ConnectionError("NATS is not connected")
        headers = _headers(session, method, kind, request_id, msg_id)
        subject = self.subject(client_id)
        with nats_publish(self.prefix.rstrip("."), headers):  # trace context into the headers (gateway/tracing)
            # No Nats-Expected-Stream: it would travel with every event to every consumer (a header costs
            # each replica's consumer its parsing); the subject can only be this stream's. The ack through
            # the connection's ack inbox (gateway/nats/acks.py), cheaper than nats-py's request().
            ack = await ack_inbox(nc).publish(subject, payload, headers, 2.0)
        return LiveEvent((int(ack["seq"]), 0), client_id, session, method, payload, kind, request_id)

    async def publish_ahead(
        self, client_id: str, session: str, method: str, payload: bytes, kind: str | None, request_id: str | None
    ) -> None:
        """Hand an event to NATS for the stream without waiting for its ack: only right before a
        ``publish`` on the same connection, whose ack then covers both.

        NATS keeps one connection's messages in order, and the stream stores what it is handed in
        that order: when the next event's ack arrives, this one was stored before it (or dropped as
        a duplicate of its ``Nats-Msg-Id``). Raises when NATS cannot take it now.
        """
        nc = self._link.nc
        if nc is None or self._link.js is None:
            raise ConnectionError("NATS is not connected")
        headers = _headers(session, method, kind, request_id, None)
        with nats_publish(self.prefix.rstrip("."), headers):
            await nc.publish(self.subject(client_id), payload, headers=headers)

    async def replay(self, client_id: str, after_seq: int) -> AsyncIterator[LiveEvent]:
        """The client's retained events with a sequence above ``after_seq``, in order."""
        js = self._link.js
        if js is None:
            return
        subject = self.subject(client_id)
        seq = after_seq + 1
        while True:
            try:
                msg = await js.get_msg(self.stream_name, seq=seq, subject=subject, next=True, direct=True)
            except NotFoundError:
                return
            if msg.seq is None:
                return
            event = _event_from(msg.subject or "", self.prefix, msg.seq, msg.headers, msg.data or b"")
            if event is not None:
                yield event
            seq = msg.seq + 1


class MemoryJournal:
    """Recent events kept in process memory, per client, bounded by age and count."""

    def __init__(self, retention_secs: float, per_client: int = 1000, max_clients: int = 100_000) -> None:
        self.retention = retention_secs
        self.per_client = per_client
        self.max_clients = max_clients
        self._events: OrderedDict[str, deque[tuple[float, LiveEvent]]] = OrderedDict()

    def add(self, event: LiveEvent) -> None:
        """Keep an event for replay."""
        events = self._events.get(event.client_id)
        if events is None:
            events = self._events[event.client_id] = deque(maxlen=self.per_client)
            while len(self._events) > self.max_clients:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(event.client_id)
        events.append((time.monotonic() + self.retention, event))

    def after(self, client_id: str, pos: Pos) -> list[LiveEvent]:
        """The client's kept events after ``pos``, in order."""
        events = self._events.get(client_id)
        if not events:
            return []
        now = time.monotonic()
        return [event for expires, event in events if expires > now and event.pos > pos]

    def purge(self) -> None:
        """Drop expired events (called periodically)."""
        now = time.monotonic()
        for client_id in list(self._events):
            events = self._events[client_id]
            while events and events[0][0] <= now:
                events.popleft()
            if not events:
                del self._events[client_id]

    def __len__(self) -> int:
        return sum(len(events) for events in self._events.values())
