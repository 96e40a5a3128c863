"""Gateway configuration: one frozen pydantic model, read once at start.

Sources, lowest priority first: field defaults, an optional TOML/YAML file named by
``GATEWAY_CONFIG``, then the environment. Names are those of CONTRACT.md §2.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.settings.access import AccessSettings
from gateway.settings.auth import AuthSettings
from gateway.settings.http import CorsSettings, GraphqlSettings, LimitSettings
from gateway.settings.ingress import IngressSettings
from gateway.settings.live import LiveSettings
from gateway.settings.nats import NatsSettings
from gateway.settings.process import ProcessSettings
from gateway.settings.upstream import UpstreamSettings
from gateway.shard_config import lift_noetl_table


class ConfigError(Exception):
    """A configuration value is invalid; the message names the variable."""


class GatewayConfig(
    IngressSettings,
    LiveSettings,
    AccessSettings,
    AuthSettings,
    LimitSettings,
    CorsSettings,
    GraphqlSettings,
    NatsSettings,
    UpstreamSettings,
    ProcessSettings,
):
    """Every setting of the gateway; field name == environment variable name (lower case).

    One group per part (gateway/settings/); pydantic validates the fields of the last base first,
    so ``ProcessSettings`` (``GATEWAY_BIND``) comes before the auth checks that read it.
    """


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
