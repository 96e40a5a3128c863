"""Settings of authentication: the auth playbooks, Auth0, callback tokens, and reference-style auth."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from gateway.settings.common import CsvList, SettingsGroup, is_loopback

# HS256 keys shorter than the hash output can be guessed offline from one captured token (RFC 7518 §3.2).
MIN_CALLBACK_SECRET_BYTES = 32


class AuthSettings(SettingsGroup):
    """Who the caller is: auth playbooks or NoETL's sync routes, Auth0, and who may post callbacks."""

    auth_playbook_login: str = "api_integration/auth0/auth0_login"
    auth_playbook_validate_session: str = "api_integration/auth0/auth0_validate_session"
    auth_session_db_credential: str = "pg_auth"
    auth_playbook_check_access: str = "api_integration/auth0/check_playbook_access"
    auth_playbook_logout: str | None = None
    auth_playbook_timeout_secs: float = Field(60.0, gt=0)
    gateway_auth_bypass: bool = False
    gateway_callback_secret: str | None = None
    gateway_callback_auth: Literal["required", "network", "legacy"] = "required"
    gateway_callback_token_ttl_secs: int = Field(1800, gt=0)
    auth0_domain: str | None = None
    auth0_audience: str | None = None
    auth0_jwks_url: str | None = None
    # Auth0 application metadata, published in GET /api/runtime/contract (not used to verify tokens).
    auth0_client_id: str | None = None
    auth0_redirect_uri: str | None = None
    # Reference-style auth (issue 15): unsigned callbacks from the workers' network, the login and
    # check-access wait's short budget, NoETL's synchronous auth routes instead of playbooks.
    gateway_callback_trusted_networks: CsvList = Field(default_factory=list, validate_default=True)
    auth_playbook_fail_fast_secs: float = Field(12.0, ge=0)
    noetl_auth_sync: bool = False
    noetl_authz_sync: bool = False
    gateway_session_validate_via_playbook: bool = False

    @field_validator("gateway_callback_trusted_networks")
    @classmethod
    def _networks_parse(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """CIDRs (IPv4 or IPv6; a bare address is one host); ``network`` mode needs at least one."""
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise PydanticCustomError(
                    "network", "{item} is not an address or CIDR network", {"item": repr(item)}
                ) from None
        if not value and info.data.get("gateway_callback_auth") == "network":
            raise PydanticCustomError(
                "networks_required", "GATEWAY_CALLBACK_AUTH=network needs at least one network (CIDR) here", {}
            )
        return value

    @field_validator("gateway_auth_bypass")
    @classmethod
    def _bypass_only_on_loopback(cls, value: bool, info: ValidationInfo) -> bool:
        """Auth bypass is one env var away from production: only a loopback-only bind may use it.
        (GATEWAY_BIND is validated first: ProcessSettings is the last base of GatewayConfig.)"""
        bind = str(info.data.get("gateway_bind", ""))
        if value and not is_loopback(bind):
            raise PydanticCustomError(
                "bypass_bind",
                "auth bypass is refused unless GATEWAY_BIND is loopback only (127.0.0.1, ::1 or localhost); "
                "GATEWAY_BIND is {bind}",
                {"bind": repr(bind)},
            )
        return value

    @field_validator("gateway_callback_secret")
    @classmethod
    def _long_enough_secret(cls, value: str | None) -> str | None:
        if value and len(value.encode("utf-8")) < MIN_CALLBACK_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_CALLBACK_SECRET_BYTES} bytes (e.g. openssl rand -hex 32)")
        return value
