"""``playbook/state`` frames from NoETL for the clients waiting on an execution, on any replica.

Where they come from (``source``, shown by ``/health/ready``): NoETL's event mirror read from
JetStream (``nats``, ``noetl_events.py``) when it exists, else polling NoETL (``polling``,
``state_poll.py``; ``off`` when ``GATEWAY_PLAYBOOK_STATE_POLL_SECS`` is 0). Either way a frame goes
only to the clients with a pending request for that execution (``by_execution.py``), through the
events stream like a result. The synthetic frame of a final callback is ``Delivery``'s own.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.config import GatewayConfig
from gateway.live.by_execution import ExecutionIndex, Pending
from gateway.live.delivery import Delivery
from gateway.live.noetl_events import NoetlEventFeed
from gateway.live.state_poll import StatePoller
from gateway.live.store import RequestStore
from gateway.metrics import Metrics
from gateway.nats.link import NatsLink
from gateway.noetl.client import NoetlClient

log = logging.getLogger("gateway.live")


class PlaybookStates:
    """Execution lifecycle frames from NoETL (see module doc)."""

    def __init__(
        self,
        config: GatewayConfig,
        link: NatsLink,
        metrics: Metrics,
        requests: RequestStore,
        delivery: Delivery,
        noetl: NoetlClient | None,
    ) -> None:
        self._link, self._metrics, self._delivery = link, metrics, delivery
        self.index = ExecutionIndex(requests, link)
        reconnects = metrics.reference.event_feed_reconnect
        self.feed = NoetlEventFeed(config, link, self._from_event, lambda reason: reconnects.labels(reason).inc())
        self.poller = StatePoller(
            noetl,
            config.gateway_playbook_state_poll_secs,
            config.gateway_playbook_state_poll_max,
            config.nats_request_ttl_secs,
            self.index,
            self._from_poll,
            metrics,
            paused=lambda: self.feed.active,
        )

    @property
    def source(self) -> str:
        """``nats`` (NoETL's event mirror), ``polling``, or ``off``."""
        if self.feed.active:
            return "nats"
        return "polling" if self.poller.enabled else "off"

    def start(self) -> None:
        """Start reading the mirror (or looking for it) and the polling loop."""
        self.feed.start()
        self.poller.start()

    async def watch(self, execution_id: str, request_id: str) -> None:
        """A request waits on this execution: polled here, and (while NoETL's mirror is read) findable
        by its id on every replica. Without the mirror nobody looks it up: no KV write per execute."""
        self.poller.watch(execution_id, request_id)
        if self.feed.active:
            await self.index.add(execution_id, request_id)

    async def _from_event(self, params: dict[str, Any], key: str) -> None:
        """A NoETL event's frame, to the clients waiting on its execution (raises: redelivered)."""
        ids = await self.index.request_ids(params["execution_id"])
        if not ids:
            return
        for request_id, record in await self.index.waiting(ids):
            await self._delivery.deliver_state(record, params, msg_id=f"noetl:{key}:{request_id}", strict=True)
            self._metrics.playbook_state_frames.labels("nats").inc()

    async def _from_poll(self, waiting: Pending, params: dict[str, Any]) -> None:
        for _, record in waiting:
            await self._delivery.deliver_state(record, params, msg_id=None, strict=False)
            self._metrics.playbook_state_frames.labels("polling").inc()

    async def close(self) -> None:
        """Stop reading and polling."""
        await self.feed.close()
        await self.poller.close()
        await self.index.close()
