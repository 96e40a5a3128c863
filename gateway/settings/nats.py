"""Settings of NATS: the servers, and the names and lifetimes of every bucket, stream and subject."""

from __future__ import annotations

from pydantic import Field

from gateway.settings.common import SettingsGroup, split_csv


class NatsSettings(SettingsGroup):
    """Where NATS is and what the gateway keeps there (CONTRACT §7)."""

    nats_url: str = "nats://127.0.0.1:4222"
    nats_username: str | None = None
    nats_password: str | None = None
    nats_connect_timeout_secs: float = Field(2.0, gt=0)
    nats_callback_subject_prefix: str = "noetl.callbacks"
    nats_updates_subject_prefix: str = "noetl.events."
    nats_session_bucket: str = "sessions"
    nats_session_cache_ttl_secs: int = Field(300, gt=0)
    nats_request_bucket: str = "requests"
    nats_request_ttl_secs: int = Field(1800, gt=0)
    nats_revoked_bucket: str = "sessions_revoked"
    gateway_revocation_ttl_secs: int = Field(86400, gt=0)
    nats_client_bucket: str = "sse_clients"
    nats_spent_callback_bucket: str = "callbacks_spent"
    nats_events_stream: str = "GATEWAY_EVENTS"
    nats_events_subject_prefix: str = "gateway.events"
    gateway_event_retention_secs: int = Field(900, gt=0)
    # Clustered NATS (docs/deployment.md "Clustered NATS"): replicas of every bucket and the events stream.
    nats_replicas: int = Field(1, ge=1, le=5)

    @property
    def nats_servers(self) -> list[str]:
        """NATS server URLs (CONTRACT allows a comma-separated list)."""
        servers: list[str] = split_csv(self.nats_url)
        return servers

    @property
    def nats_enabled(self) -> bool:
        """An empty ``NATS_URL`` turns NATS off on purpose (no reconnect attempts)."""
        return bool(self.nats_servers)
