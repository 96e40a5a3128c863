"""``GATEWAY_ROUTE_POLICY``: an operator's route policy file (YAML or TOML), checked at start.

```yaml
mode: extend        # extend (default): these rules first, then the built-in ones; replace: only these
unlisted: admin     # routes no rule names: admin (default) or deny
rules:
  - name: ops read variables
    methods: [GET]
    path: vars/**
    roles: [ops, "@admin"]
```

A file that cannot be read or does not validate stops start-up with one line naming the file
and the line of the offending rule — a policy that half-loads would open or close routes
nobody meant to.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.access.routes import (
    ADMIN,
    ANY_METHOD,
    ANY_SIGNED_IN,
    DEFAULT_RULES,
    DENY_UNLISTED_RULE,
    METHODS,
    UNLISTED_RULE,
    RoutePolicy,
    RouteRule,
    check_pattern,
)
from gateway.config import GatewayConfig
from gateway.spec_file import read_spec_file

_ROLE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


class RuleSpec(BaseModel):
    """One rule as written in the file."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    methods: list[str] = Field(min_length=1)
    path: str
    roles: list[str]

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        upper = [method.strip().upper() for method in value]
        unknown = [m for m in upper if m != ANY_METHOD and m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r} (use GET, HEAD, POST, PUT, PATCH, DELETE or '*')")
        return upper

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_pattern(value)

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        for role in value:
            if role not in (ANY_SIGNED_IN, ADMIN) and not _ROLE.fullmatch(role):
                raise ValueError(f"role {role!r} is not a role name, '*' or '@admin'")
        return value


class PolicySpec(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["extend", "replace"] = "extend"
    unlisted: Literal["admin", "deny"] = "admin"
    rules: list[RuleSpec] = Field(default_factory=list)


def load_route_policy(config: GatewayConfig) -> RoutePolicy:
    """The policy in force: the built-in one, or the file's (ConfigError naming file and line)."""
    path = config.gateway_route_policy
    if not path:
        return RoutePolicy(DEFAULT_RULES, config.gateway_admin_roles)
    spec = read_policy_file(path)
    rules = [
        RouteRule(
            name=item.name or f"{path} rule {index + 1}",
            methods=frozenset(item.methods),
            pattern=item.path,
            roles=frozenset(item.roles),
        )
        for index, item in enumerate(spec.rules)
    ]
    if spec.mode == "extend":
        rules.extend(DEFAULT_RULES)
    unlisted = UNLISTED_RULE if spec.unlisted == "admin" else DENY_UNLISTED_RULE
    return RoutePolicy(rules, config.gateway_admin_roles, unlisted=unlisted)


def read_policy_file(path: str) -> PolicySpec:
    """Parse and validate; every error names the file and, where it can, the line."""
    return read_spec_file("GATEWAY_ROUTE_POLICY", path, PolicySpec, what="'rules'")
