"""Listeners ready to serve: the spec with its secret resolved and the gateway's limits applied.

``load_listeners`` reads ``GATEWAY_INGRESS_CONFIG`` once, at start (a bad file, an unset secret
variable or an unreadable secret file stops start-up with one line naming file and listener);
``listener_from_noetl`` turns NoETL's answer into the same thing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from gateway.config import ConfigError, GatewayConfig
from gateway.ingress.spec import IngressFile, ListenerSpec, NoetlListenerSpec
from gateway.spec_file import read_spec_file

log = logging.getLogger("gateway.ingress")

VARIABLE = "GATEWAY_INGRESS_CONFIG"
# A shorter shared secret can be guessed offline from one captured signature.
MIN_SECRET_BYTES = 16


@dataclass(frozen=True, slots=True)
class Listener:
    """One listener as the handler uses it (the secret never appears in its repr)."""

    name: str
    spec: ListenerSpec
    max_body_bytes: int
    rate_per_minute: int
    origin: Literal["file", "noetl"]
    secret: bytes | None = field(default=None, repr=False)

    @property
    def playbook(self) -> str:
        return self.spec.dispatch.playbook

    @property
    def subscription(self) -> str:
        """What the workload names as the subscription: the catalog path, else the listener."""
        return self.spec.catalog_path or self.name


def load_listeners(config: GatewayConfig, environ: Mapping[str, str] | None = None) -> dict[str, Listener]:
    """The file's listeners by name (empty without a file); ConfigError naming file and listener."""
    path = config.gateway_ingress_config
    if not path:
        return {}
    document = read_spec_file(VARIABLE, path, IngressFile, what="'listeners'")
    env = os.environ if environ is None else environ
    listeners: dict[str, Listener] = {}
    for name, spec in document.listeners.items():
        where = f"{VARIABLE}: {path}: listeners.{name}.verify"
        listeners[name] = _ready(name, spec, config, _file_secret(spec, env, where), "file")
    return listeners


def listener_from_noetl(name: str, answer: Any, config: GatewayConfig) -> Listener:
    """NoETL's listener config; ValueError (logged by the caller, never shown) when it does not fit."""
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    try:
        spec = NoetlListenerSpec.model_validate(answer)
    except ValidationError as exc:
        if not all(error["loc"][:1] == ("directives",) for error in exc.errors()):
            first = exc.errors()[0]
            raise ValueError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
        # The reference's own directive engine spec: not ours to interpret; no header becomes a field.
        log.warning("ingress listener %s: NoETL's directives are not a header allowlist; ignored", name)
        spec = NoetlListenerSpec.model_validate({**answer, "directives": {}})
    if spec.listener not in (None, name):
        raise ValueError(f"NoETL answered for listener {spec.listener!r}")
    secret = spec.verify.secret.encode() if spec.verify.secret else None
    if secret is not None and len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"verify.secret is shorter than {MIN_SECRET_BYTES} bytes")
    return _ready(name, spec, config, secret, "noetl")


def _ready(
    name: str, spec: ListenerSpec, config: GatewayConfig, secret: bytes | None, origin: Literal["file", "noetl"]
) -> Listener:
    rate = spec.rate_per_minute
    return Listener(
        name=name,
        spec=spec,
        max_body_bytes=spec.max_body_bytes or config.gateway_max_body_bytes,
        rate_per_minute=config.gateway_ingress_rate_per_minute if rate is None else rate,
        origin=origin,
        secret=secret,
    )


def _file_secret(spec: ListenerSpec, env: Mapping[str, str], where: str) -> bytes | None:
    """The secret a file listener names, read now (from the environment or a mounted file)."""
    verify = spec.verify
    if verify.secret_env:
        value = env.get(verify.secret_env, "")
        if not value:
            raise ConfigError(f"{where}.secret_env: {verify.secret_env} is not set")
        secret = value.encode()
    elif verify.secret_file:
        try:
            secret = Path(verify.secret_file).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(f"{where}.secret_file: cannot read {verify.secret_file}: {exc.strerror}") from None
    else:
        return None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"{where}: the secret is shorter than {MIN_SECRET_BYTES} bytes (e.g. openssl rand -hex 32)")
    return secret
