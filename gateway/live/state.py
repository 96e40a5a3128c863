"""The live state the parts of the hub share: client records, pending requests, their slots, the journal."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import GatewayConfig
from gateway.live.bus import MemoryJournal
from gateway.live.slots import SessionSlots
from gateway.live.store import ClientRegistry, RequestStore
from gateway.nats.link import NatsLink


@dataclass(frozen=True, slots=True)
class LiveState:
    """NATS-backed stores (each with its process-memory fallback) and this process's event journal."""

    clients: ClientRegistry
    requests: RequestStore
    slots: SessionSlots
    journal: MemoryJournal

    @classmethod
    def create(cls, config: GatewayConfig, link: NatsLink) -> LiveState:
        """The stores of the configured buckets (not connected yet: the link sets them up)."""
        retention = float(config.gateway_event_retention_secs)
        clients = ClientRegistry(link, config.nats_client_bucket, retention)
        requests = RequestStore(link, config.nats_request_bucket, config.nats_request_ttl_secs)
        slots = SessionSlots(requests, link, config.nats_request_ttl_secs, config.gateway_max_pending_per_session)
        return cls(clients, requests, slots, MemoryJournal(retention))
