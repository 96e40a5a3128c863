"""NoETL's execution events, mirrored to JetStream, read as ``playbook/state`` frames.

NoETL run with ``NOETL_EVENT_MIRROR_ENABLED=true`` publishes each event of its log on
``{NATS_UPDATES_SUBJECT_PREFIX}{tenant}.{org}.{execution_id}.{shard}`` into its stream (``NOETL_EVENTS``;
found here by subject, so its name stays NoETL's business).

**Each replica reads every event, in stream order, and the events stream keeps one copy of each
frame.** A replica runs one ordered consumer on the stream (no server-side state to clean up
after a pod goes; after a reconnect it resumes from the last sequence it handled, like the events
bus), filters by event type (cheap), looks the execution up (``by_execution.py``) for the four
forwarded types only, and publishes a frame per waiting request with ``Nats-Msg-Id``
``noetl:{event_id}:{request_id}``: the same id on every replica, so JetStream stores the first and
drops the others (within its duplicate window, 2 minutes). Why not one durable consumer shared
by the replicas (each message to one of them)? Its messages are handled concurrently on several
replicas, so a ``playbook.completed`` frame could overtake the ``step.exit`` before it; here each
replica publishes in stream order, so whichever copy lands first, the stream's order is NoETL's.
And a replica that cannot publish (or dies) loses nothing: the others publish the same frames.

The stream may be missing (the mirror is off, or NoETL has not published yet): ``active`` is then
False, polling (``state_poll.py``) stands in, and the stream is looked for again every
``RECHECK_SECS`` and on every NATS reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js import api
from nats.js.errors import NotFoundError

from gateway.config import GatewayConfig
from gateway.live.lifecycle import decode_event, execution_id_of_subject, execution_id_text, state_from_noetl
from gateway.nats.consumers import newer_sequence, unsubscribe_quietly
from gateway.nats.link import NatsLink
from gateway.tasks import Backoff, stop_tasks

log = logging.getLogger("gateway.live")

RECHECK_SECS = 10.0
PUBLISH_ATTEMPTS = 3  # then the frame is left to the other replicas (or to polling's next answer)

# (params of the frame, a key unique to the NoETL event) -> publish to every waiting client; raises on failure.
Route = Callable[[dict[str, Any], str], Awaitable[None]]


class NoetlEventFeed:
    """This replica's ordered consumer on NoETL's event stream (see module doc)."""

    def __init__(
        self, config: GatewayConfig, link: NatsLink, route: Route, reconnects: Callable[[str], None] | None = None
    ) -> None:
        self._link = link
        self._route = route
        self._reconnects = reconnects or (lambda reason: None)  # noetl_gateway_event_feed_reconnect_total
        self.prefix = config.nats_updates_subject_prefix.rstrip(".") + "."
        self.stream: str | None = None
        self.handled = 0  # the last stream sequence handled: where a new subscription starts
        self._sub: Any = None
        self._stale = True  # (re)connected since the subscription was made: make it again
        self._started = False
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._said_missing = False
        # GraphQL executionUpdates (gateway/live/execution_watch.py): every frame read here, in order.
        self.on_frame: Callable[[dict[str, Any]], None] | None = None
        link.add_state_listener(self._on_link_state)

    @property
    def active(self) -> bool:
        """True while NoETL's event stream is being read (polling pauses)."""
        return self._sub is not None and self._link.connected

    def start(self) -> None:
        """Start looking for the stream (and reading it); call once, inside the loop."""
        if self._link.enabled:
            self._task = asyncio.create_task(self._run(), name="noetl-events")

    def _on_link_state(self, connected: bool) -> None:
        if connected:
            self._stale = True
            self._kick.set()

    async def _run(self) -> None:
        while True:
            self._kick.clear()
            if self._link.connected:
                try:
                    await self._ensure()
                except Exception as exc:  # JetStream settling after a reconnect: try again soon
                    log.warning("NoETL's event stream not read (%s); retrying", type(exc).__name__)
                    if self._sub is not None:
                        self._reconnects("error")
                    await self._stop()
            try:
                # asyncio.timeout, not wait_for: wait_for returns the event's result when a cancel
                # arrives just as it is set, and the task would never stop.
                async with asyncio.timeout(RECHECK_SECS):
                    await self._kick.wait()
            except TimeoutError:
                pass

    async def _ensure(self) -> None:
        """Find the stream; subscribe (again) when needed; stop when the stream is gone."""
        js = self._link.js
        assert js is not None
        subject = self.prefix + ">"
        try:
            stream = await js.find_stream_name_by_subject(subject)
        except NotFoundError:
            await self._stop()
            self.stream = None
            if not self._said_missing:
                log.info("no stream holds %s (NoETL's event mirror is off): playbook/state not from it", subject)
                self._said_missing = True
            return
        if self._sub is not None and not self._stale and stream == self.stream:
            return
        if self._sub is not None:
            self._reconnects("ended")  # NATS reconnected (or the stream moved): the subscription is made again
        await self._stop()
        last = int((await js.stream_info(stream)).state.last_seq or 0)
        if not self._started or stream != self.stream or self.handled > last:
            self.handled = last  # a new process (or stream): from now on; after a reconnect: where it stopped
        self._started, self._stale = True, False
        self._sub = await js.subscribe(
            subject,
            stream=stream,
            cb=self._on_message,
            ordered_consumer=True,
            config=api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.handled + 1
            ),
        )
        if stream != self.stream:
            log.info("playbook/state from NoETL's events: stream %s", stream)
        self.stream, self._said_missing = stream, False

    async def _on_message(self, message: Any) -> None:
        seq = newer_sequence(message, self.handled)
        if seq is None:
            return
        self.handled = seq
        await self.handle(message.subject, message.data, seq)

    async def handle(self, subject: str, data: bytes, seq: int) -> None:
        """One NoETL event: its frame to every client waiting on the execution (a few tries)."""
        event = decode_event(data)
        params = state_from_noetl(event, execution_id_of_subject(subject, self.prefix))
        if params is None:
            return
        if self.on_frame is not None:
            self.on_frame(params)
        key = execution_id_text(event.get("event_id")) or f"seq{seq}"
        backoff = Backoff()
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                await self._route(params, key)
                return
            except Exception as exc:
                if attempt == PUBLISH_ATTEMPTS:
                    log.warning("playbook/state of NoETL event %s not published here (%s)", key, type(exc).__name__)
                    return
                await backoff.pause()

    async def _stop(self) -> None:
        sub, self._sub = self._sub, None
        await unsubscribe_quietly(sub)

    async def close(self) -> None:
        """Stop reading."""
        await stop_tasks(self._task)
        await self._stop()
