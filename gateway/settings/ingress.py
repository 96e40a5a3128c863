"""Settings of push ingress (``POST /ingress/{listener}``, docs/ingress.md)."""

from __future__ import annotations

from pydantic import Field

from gateway.settings.common import SettingsGroup


class IngressSettings(SettingsGroup):
    """Where listeners come from, Pub/Sub's keys, the rate per listener, the idempotency window."""

    gateway_ingress_config: str | None = None
    noetl_internal_api_token: str | None = None
    gateway_ingress_config_ttl_secs: float = Field(30.0, ge=0)
    gateway_ingress_jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    gateway_ingress_rate_per_minute: int = Field(600, ge=0)
    nats_ingress_bucket: str = "ingress_deliveries"
    gateway_ingress_idempotency_secs: int = Field(86400, gt=0)
