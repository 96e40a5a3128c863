"""NoETL's execution events, mirrored to JetStream, read as ``playbook/state`` frames.

NoETL run with ``NOETL_EVENT_MIRROR_ENABLED=true`` publishes each event of its log on
``{NATS_UPDATES_SUBJECT_PREFIX}{tenant}.{org}.{execution_id}.{shard}`` into its stream (``NOETL_EVENTS``;
found here by subject, so its name stays NoETL's business). Every replica reads it through **one
durable pull consumer they share**, ``{NATS_EVENTS_STREAM}_playbook_state`` (two deployments on one
NATS already need their own events stream, so they get their own consumer too): JetStream hands
each message to one replica's fetch, so each frame is published once into our events stream, and
from there reaches the client on whichever replica holds it, retained and resumable like results.
A message is acked after its frames are published; if a replica dies first, JetStream redelivers
it (after ``ACK_WAIT_SECS``) to another, and the frames' ``Nats-Msg-Id`` (NoETL's ``event_id`` and
the request id) drops any copy already stored.

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
from gateway.nats.link import NatsLink
from gateway.tasks import stop_tasks

log = logging.getLogger("gateway.live")

RECHECK_SECS = 10.0
FETCH_BATCH = 64
FETCH_WAIT_SECS = 5.0
ACK_WAIT_SECS = 30.0
MAX_DELIVER = 5  # a frame that cannot be published (say, a malformed request record) is not retried forever
MAX_ACK_PENDING = 1000
INACTIVE_SECS = 24 * 3600.0  # the consumer goes away a day after the last gateway stopped reading it

# (params of the frame, a key unique to the NoETL event) -> publish to every waiting client; raises to retry.
Route = Callable[[dict[str, Any], str], Awaitable[None]]


class NoetlEventFeed:
    """The shared durable consumer on NoETL's event stream (see module doc)."""

    def __init__(self, config: GatewayConfig, link: NatsLink, route: Route) -> None:
        self._link = link
        self._route = route
        self.prefix = config.nats_updates_subject_prefix.rstrip(".") + "."
        self.durable = f"{config.nats_events_stream}_playbook_state"
        self.stream: str | None = None
        self.active = False
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._said_missing = False
        link.add_state_listener(self._on_link_state)

    def start(self) -> None:
        """Start looking for the stream (and reading it); call once, inside the loop."""
        if self._link.enabled:
            self._task = asyncio.create_task(self._run(), name="noetl-events")

    def _on_link_state(self, connected: bool) -> None:
        if connected:
            self._kick.set()

    async def _run(self) -> None:
        while True:
            self._kick.clear()
            if not self._link.connected:
                await self._kick.wait()
                continue
            sub = await self._bind()
            if sub is None:
                await _wait(self._kick, RECHECK_SECS)
                continue
            self.active = True
            try:
                await self._consume(sub)
            finally:
                self.active = False
                try:
                    await sub.unsubscribe()
                except Exception:
                    pass
            await _wait(self._kick, 1.0)  # then bind again (or find the stream gone)

    async def _bind(self) -> Any:
        """The pull subscription on the shared consumer; None while NoETL's stream does not exist."""
        js = self._link.js
        if js is None:
            return None
        subject = self.prefix + ">"
        try:
            stream = await js.find_stream_name_by_subject(subject)
        except NotFoundError:
            if not self._said_missing:
                log.info("no stream holds %s (NoETL's event mirror is off): playbook/state by polling", subject)
                self._said_missing = True
            self.stream = None
            return None
        except Exception as exc:
            log.warning("NoETL's event stream not looked up (%s); retrying", type(exc).__name__)
            return None
        config = api.ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_SECS,
            max_deliver=MAX_DELIVER,
            max_ack_pending=MAX_ACK_PENDING,
            filter_subject=subject,
            inactive_threshold=INACTIVE_SECS,
        )
        try:
            sub = await js.pull_subscribe(subject, durable=self.durable, stream=stream, config=config)
        except Exception as exc:
            log.warning("consumer %s on stream %s not bound (%s); retrying", self.durable, stream, type(exc).__name__)
            return None
        if self.stream != stream:
            log.info("playbook/state from NoETL's events: stream %s, shared consumer %s", stream, self.durable)
        self.stream, self._said_missing = stream, False
        return sub

    async def _consume(self, sub: Any) -> None:
        """Fetch and handle until the link goes or the consumer fails (the caller binds again)."""
        while self._link.connected:
            try:
                messages = await sub.fetch(FETCH_BATCH, timeout=FETCH_WAIT_SECS)
            except TimeoutError:  # nothing new (nats-py's timeouts derive from it)
                continue
            except Exception as exc:
                log.warning("reading NoETL's events stopped (%s); binding again", type(exc).__name__)
                return
            for message in messages:
                await self.handle(message)

    async def handle(self, message: Any) -> None:
        """One NoETL event: its frame to every client waiting on the execution, then ack (nak on failure)."""
        event = decode_event(message.data)
        params = state_from_noetl(event, execution_id_of_subject(message.subject, self.prefix))
        try:
            if params is not None:
                key = execution_id_text(event.get("event_id")) or f"seq{message.metadata.sequence.stream}"
                await self._route(params, key)
        except Exception as exc:
            log.warning("playbook/state of a NoETL event not published (%s); redelivered later", type(exc).__name__)
            await _settle(message.nak(delay=1.0))
            return
        await _settle(message.ack())

    async def close(self) -> None:
        """Stop reading (the consumer stays for the other replicas)."""
        await stop_tasks(self._task)
        self.active = False


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass


async def _settle(reply: Awaitable[None]) -> None:
    try:
        await reply
    except Exception as exc:  # the connection went: JetStream redelivers after the ack wait
        log.debug("ack of a NoETL event failed: %s", type(exc).__name__)
