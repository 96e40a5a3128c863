"""Gateway configuration: one frozen pydantic model, read once at start.

Sources, lowest priority first: field defaults, an optional TOML/YAML file named by
``GATEWAY_CONFIG``, then the environment. Names are those of CONTRACT.md §2.
"""

# layout: over 300 lines for now: the settings of the features landing this session are added
# here first; the model is split into one settings group per package once they have (issue 14).

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from gateway.shard_config import ShardEndpoint, check_shard_indexes, lift_noetl_table, parse_shard_list

# HS256 keys shorter than the hash output can be guessed offline from one captured token (RFC 7518 §3.2).
MIN_CALLBACK_SECRET_BYTES = 32


class ConfigError(Exception):
    """A configuration value is invalid; the message names the variable."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class GatewayConfig(BaseModel):
    """Every setting of the gateway; field name == environment variable name (lower case)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Process
    router_port: int = Field(8090, ge=0, le=65535)
    gateway_bind: str = "0.0.0.0"
    gateway_public_url: str = ""
    gateway_processes: int = Field(1, ge=0, le=256)
    gateway_log_format: Literal["text", "json"] = "text"
    gateway_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    gateway_shutdown_grace_secs: float = Field(10.0, ge=0)
    gateway_trusted_proxy_hops: int = Field(1, ge=0, le=10)
    gateway_audit_log: str = "off"

    # Upstream NoETL
    noetl_base_url: str = "http://localhost:8082"
    noetl_timeout_secs: float = Field(120.0, gt=0)
    noetl_connect_timeout_secs: float = Field(5.0, gt=0)
    gateway_proxy_timeout_secs: float = Field(300.0, gt=0)
    gateway_proxy_max_body_bytes: int = Field(1024 * 1024 * 1024, ge=0)

    # Shard routing (docs/sharding.md)
    noetl_shards: list[ShardEndpoint] | None = None  # None or empty: one NoETL, no routing
    gateway_shard_body_max_bytes: int = Field(10 * 1024 * 1024, gt=0)

    # NATS
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

    # GraphQL
    gateway_graphql_introspection: bool = True
    gateway_graphql_max_query_bytes: int = Field(64 * 1024, gt=0)
    gateway_graphql_max_depth: int = Field(15, gt=0)
    gateway_graphql_max_aliases: int = Field(30, ge=0)
    gateway_graphql_max_tokens: int = Field(10_000, gt=0)
    gateway_graphql_document_cache_size: int = Field(512, ge=0)

    # CORS
    cors_allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:8080", "http://localhost:8090", "http://localhost:3000"]
    )
    cors_allow_credentials: bool = True

    # Auth
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
    gateway_enforce_playbook_access: bool = True
    gateway_access_cache_ttl_secs: float = Field(60.0, ge=0)
    # Reference-style auth (issue 15): unsigned callbacks from the workers' network, the login and
    # check-access wait's short budget, NoETL's synchronous auth routes instead of playbooks.
    gateway_callback_trusted_networks: list[str] = Field(default_factory=list, validate_default=True)
    auth_playbook_fail_fast_secs: float = Field(12.0, ge=0)
    noetl_auth_sync: bool = False
    noetl_authz_sync: bool = False
    gateway_session_validate_via_playbook: bool = False

    # Authorization (gateway/access/)
    gateway_admin_roles: list[str] = Field(default_factory=lambda: ["admin"])
    gateway_route_policy: str | None = None
    gateway_proxy_request_max_answer_bytes: int = Field(8 * 1024 * 1024, gt=0)

    # SSE
    gateway_heartbeat_interval_secs: float = Field(30.0, gt=0)
    gateway_sse_client_buffer: int = Field(256, gt=0)
    gateway_sse_max_per_session: int = Field(16, gt=0)

    # playbook/state (issue 15): polling NoETL when its event mirror is not in JetStream; 0 turns it off.
    gateway_playbook_state_poll_secs: float = Field(2.0, ge=0)
    gateway_playbook_state_poll_max: int = Field(50, gt=0)

    # Abuse limits
    gateway_login_rate_per_minute: int = Field(30, ge=0)
    gateway_max_pending_per_session: int = Field(100, gt=0)
    gateway_max_body_bytes: int = Field(1024 * 1024, gt=0)
    # Anonymous cost (issue 13 §4): session checks that miss the cache, per client IP; invalid
    # token hashes remembered; revocation tombstones mirrored per process.
    gateway_validate_miss_per_minute: int = Field(60, ge=0)
    gateway_validate_miss_burst: int = Field(60, gt=0)
    gateway_negative_cache_secs: float = Field(30.0, ge=0)
    gateway_revocation_mirror_max: int = Field(100_000, gt=0)
    # Slow clients: header/idle and body deadlines (the proxy's longer one applies once signed in).
    gateway_idle_connection_timeout_secs: float = Field(75.0, gt=0)
    gateway_body_timeout_secs: float = Field(60.0, gt=0)
    gateway_proxy_body_timeout_secs: float = Field(3600.0, gt=0)

    # GraphQL subscriptions (graphql-ws on /graphql, graphql-sse on /graphql/stream; docs/graphql.md)
    gateway_max_subscriptions_per_session: int = Field(64, gt=0)
    gateway_max_subscriptions_per_connection: int = Field(32, gt=0)
    gateway_ws_max_message_bytes: int = Field(1024 * 1024, gt=0)
    gateway_ws_ping_interval_secs: float = Field(20.0, ge=0)
    gateway_ws_init_timeout_secs: float = Field(3.0, gt=0)

    # Push ingress (POST /ingress/{listener}, docs/ingress.md)
    gateway_ingress_config: str | None = None
    noetl_internal_api_token: str | None = None
    gateway_ingress_config_ttl_secs: float = Field(30.0, ge=0)
    gateway_ingress_jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    gateway_ingress_rate_per_minute: int = Field(600, ge=0)
    nats_ingress_bucket: str = "ingress_deliveries"
    gateway_ingress_idempotency_secs: int = Field(86400, gt=0)

    @field_validator("gateway_audit_log")
    @classmethod
    def _audit_destination(cls, value: str) -> str:
        value = value.strip() or "off"
        if value.lower() in ("off", "stdout"):
            return value.lower()
        if not Path(value).parent.is_dir():
            raise ValueError("must be off, stdout, or a file in an existing directory")
        return value

    @field_validator("cors_allowed_origins", "gateway_admin_roles", mode="before")
    @classmethod
    def _origins_from_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("gateway_callback_trusted_networks", mode="before")
    @classmethod
    def _networks_from_csv(cls, value: Any) -> Any:
        return _split_csv(value)

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
        """Auth bypass is one env var away from production: only a loopback-only bind may use it."""
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

    @field_validator("noetl_base_url", "gateway_public_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("noetl_shards", mode="before")
    @classmethod
    def _shards_from_text(cls, value: Any) -> Any:
        return parse_shard_list(value)

    @field_validator("noetl_shards")
    @classmethod
    def _shards_cover_every_index(cls, shards: list[ShardEndpoint] | None) -> list[ShardEndpoint] | None:
        return None if shards is None else check_shard_indexes(shards)

    @property
    def noetl_default_url(self) -> str:
        """Where calls that name no execution go: ``NOETL_BASE_URL``, or shard 0's when only shards are set."""
        if self.noetl_shards and "noetl_base_url" not in self.model_fields_set:
            return self.noetl_shards[0].base_url
        return self.noetl_base_url

    @property
    def shard_urls(self) -> list[tuple[int, str]]:
        """``(shard_index, base_url)`` in index order (empty: sharding off)."""
        return [(shard.shard_index, shard.base_url) for shard in self.noetl_shards or ()]

    @property
    def public_url(self) -> str:
        """The URL workers use to reach this gateway (``gateway_url`` in playbooks)."""
        return self.gateway_public_url or f"http://localhost:{self.router_port}"

    @property
    def nats_servers(self) -> list[str]:
        """NATS server URLs (CONTRACT allows a comma-separated list)."""
        return _split_csv(self.nats_url)

    @property
    def nats_enabled(self) -> bool:
        """An empty ``NATS_URL`` turns NATS off on purpose (no reconnect attempts)."""
        return bool(self.nats_servers)


def is_loopback(bind: str) -> bool:
    """True for an address only this host can reach (``""`` and ``0.0.0.0`` mean every interface)."""
    if bind.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


ENV_ALIASES: dict[str, str] = {
    "GATEWAY_PORT": "router_port",
    # The reference gateway's names (v3.x Helm chart) for the same Auth0 settings.
    "GATEWAY_AUTH0_DOMAIN": "auth0_domain",
    "GATEWAY_AUTH0_CLIENT_ID": "auth0_client_id",
    "GATEWAY_AUTH0_REDIRECT_URI": "auth0_redirect_uri",
    "GATEWAY_AUTH0_AUDIENCE": "auth0_audience",
}
# Aliases that must agree with their variable when both are set (a silent winner would hide a
# deployment that sets two different tenants); GATEWAY_PORT keeps its "ROUTER_PORT wins" rule.
AGREEING_ALIASES = frozenset(
    {"GATEWAY_AUTH0_DOMAIN", "GATEWAY_AUTH0_CLIENT_ID", "GATEWAY_AUTH0_REDIRECT_URI", "GATEWAY_AUTH0_AUDIENCE"}
)


def env_names() -> list[str]:
    """Every environment variable the model reads (for docs and the docs test)."""
    return sorted([name.upper() for name in GatewayConfig.model_fields] + list(ENV_ALIASES))


def _read_file(path: str) -> dict[str, Any]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"GATEWAY_CONFIG: cannot read {path}: {exc.strerror}") from None
    try:
        if file.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"GATEWAY_CONFIG: {path} is not valid: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"GATEWAY_CONFIG: {path} must hold a mapping of settings")
    values = {str(key).lower(): value for key, value in data.items()}
    problem = lift_noetl_table(values)
    if problem:
        raise ConfigError(f"GATEWAY_CONFIG: {problem}")
    return values


def load_config(environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Build the config from file + environment; raise ConfigError naming the bad variable."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if env.get("GATEWAY_CONFIG"):
        values.update(_read_file(env["GATEWAY_CONFIG"]))
    for alias, field in ENV_ALIASES.items():
        if alias in env and field.upper() not in env and alias not in AGREEING_ALIASES:
            values[field] = env[alias]
    for field in GatewayConfig.model_fields:
        if field.upper() in env:
            values[field] = env[field.upper()]
    for alias in sorted(AGREEING_ALIASES):
        _apply_agreeing_alias(env, alias, ENV_ALIASES[alias], values)
    unknown = sorted(key for key in values if key not in GatewayConfig.model_fields)
    if unknown:
        raise ConfigError(f"GATEWAY_CONFIG: unknown setting {unknown[0].upper()}")
    try:
        return GatewayConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "configuration"
        shown = "" if _is_secret(name) or first["type"] == "secret_in_url" else f" (got {first.get('input')!r})"
        raise ConfigError(f"{name}: {first['msg']}{shown}") from None


def _apply_agreeing_alias(env: Mapping[str, str], alias: str, field: str, values: dict[str, Any]) -> None:
    """The alias's value unless it is empty (the reference chart renders unset values as ""); a
    different non-empty value in the variable itself stops the start."""
    value = env.get(alias, "").strip()
    if not value:
        return
    own = env.get(field.upper(), "").strip()
    if own and own != value:
        raise ConfigError(f"{alias} and {field.upper()} are both set, to different values: set only one of them")
    values[field] = value


def _is_secret(name: str) -> bool:
    return any(word in name for word in ("PASSWORD", "SECRET", "TOKEN"))
