"""Settings of authorization (gateway/access/): admin roles, the route policy, the playbook check."""

from __future__ import annotations

from pydantic import Field

from gateway.settings.common import CsvList, SettingsGroup


class AccessSettings(SettingsGroup):
    """What a signed-in caller may reach, and what an answer may show a non-admin."""

    gateway_enforce_playbook_access: bool = True
    gateway_access_cache_ttl_secs: float = Field(60.0, ge=0)
    gateway_admin_roles: CsvList = Field(default_factory=lambda: ["admin"])
    gateway_route_policy: str | None = None
    gateway_proxy_request_max_answer_bytes: int = Field(8 * 1024 * 1024, gt=0)
