"""The route policy: which roles may call which NoETL route through the gateway.

Every call to NoETL made for a user — the ``/noetl/*`` proxy and GraphQL ``proxyRequest`` —
asks :meth:`RoutePolicy.decide` first. Rules are (methods, path pattern, roles); the first
rule whose methods and pattern match decides, and a route no rule names needs an admin
role (deny by default). Paths are compared in their canonical form (decoded, without
empty segments, lower case), so ``/noetl//Postgres/execute/`` meets the same rule as
``/noetl/postgres/execute``. The table of defaults is documented in docs/proxy.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.access.refusals import AccessDenied
from gateway.access.roles import is_admin

ANY_SIGNED_IN = "*"
ADMIN = "@admin"
ANY_METHOD = "*"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})  # what a rule may name, besides "*"


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One row of the policy: these methods on paths matching ``pattern`` need one of ``roles``.

    ``pattern`` is a canonical API path (after ``/api/``) where ``*`` stands for one segment and
    ``**`` for one or more. ``roles`` holds role names, ``*`` (any signed-in user) or ``@admin``
    (any role of ``GATEWAY_ADMIN_ROLES``); an empty list lets nobody through.
    """

    name: str
    methods: frozenset[str]
    pattern: str
    roles: frozenset[str]

    def matches_method(self, method: str) -> bool:
        return ANY_METHOD in self.methods or method in self.methods


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``executions/*/status`` → a regex over canonical paths (``*`` one segment, ``**`` several)."""
    parts = []
    for segment in pattern.split("/"):
        if segment == "**":
            parts.append(r"[^/]+(?:/[^/]+)*")
        elif segment == "*":
            parts.append(r"[^/]+")
        else:
            parts.append(re.escape(segment))
    return re.compile("/".join(parts))


def check_pattern(pattern: str) -> str:
    """The pattern in canonical form, or ValueError saying what is wrong with it."""
    canonical = pattern.strip().strip("/").lower()
    if not canonical:
        raise ValueError("path pattern must not be empty (use '**' for every route)")
    for segment in canonical.split("/"):
        if not segment:
            raise ValueError(f"path pattern {pattern!r} has an empty segment")
        if "*" in segment and segment not in ("*", "**"):
            raise ValueError(f"path pattern {pattern!r}: '*' and '**' must be whole segments")
        if segment in (".", ".."):
            raise ValueError(f"path pattern {pattern!r} must not contain '.' or '..'")
    return canonical


def _rule(name: str, methods: str, pattern: str, *roles: str) -> RouteRule:
    return RouteRule(name, frozenset(methods.split()), pattern, frozenset(roles))


_READ = "GET HEAD"
# NoETL 4.26's API (server/api/*/endpoint.py). Admin-only routes are named first so that a
# broader "signed-in" pattern below can never open them; anything unnamed falls through to
# the default (admin), so a route a newer NoETL adds is closed until the policy names it.
DEFAULT_RULES: tuple[RouteRule, ...] = (
    _rule("admin: executions cleanup", "*", "executions/cleanup", ADMIN),
    _rule("admin: execution finalize", "*", "executions/*/finalize", ADMIN),
    _rule("admin: execution AI analysis", "*", "executions/*/analyze/**", ADMIN),
    _rule("admin: execution analysis", "*", "executions/*/analyze", ADMIN),
    _rule("signed-in: health", _READ, "health", ANY_SIGNED_IN),
    _rule("signed-in: dashboard", _READ, "dashboard/**", ANY_SIGNED_IN),
    _rule("signed-in: catalog list", "POST", "catalog/list", ANY_SIGNED_IN),
    _rule("signed-in: catalog agents list", "POST", "catalog/agents/list", ANY_SIGNED_IN),
    _rule("signed-in: catalog resource", "POST", "catalog/resource", ANY_SIGNED_IN),
    _rule("signed-in: catalog ui_schema", _READ, "catalog/**/ui_schema", ANY_SIGNED_IN),
    _rule("signed-in: executions list", _READ, "executions", ANY_SIGNED_IN),
    _rule("signed-in: execution", _READ, "executions/*", ANY_SIGNED_IN),
    _rule("signed-in: execution status", _READ, "executions/*/status", ANY_SIGNED_IN),
    _rule("signed-in: execution events", _READ, "executions/*/events", ANY_SIGNED_IN),
    _rule("signed-in: execution cancellation check", _READ, "executions/*/cancellation-check", ANY_SIGNED_IN),
    _rule("signed-in: execution cancel", "POST", "executions/*/cancel", ANY_SIGNED_IN),
    _rule("signed-in: start a playbook (access-checked)", "POST", "execute", ANY_SIGNED_IN),
)
UNLISTED_RULE = _rule("admin: any route the policy does not name", "*", "**", ADMIN)
DENY_UNLISTED_RULE = _rule("deny: any route the policy does not name", "*", "**")


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: RouteRule
    regex: re.Pattern[str]


class RoutePolicy:
    """Decides (method, canonical path, roles) → allowed, or :class:`AccessDenied` naming the rule."""

    def __init__(self, rules: Sequence[RouteRule], admin_roles: Iterable[str], *, unlisted: RouteRule = UNLISTED_RULE):
        self.rules = (*rules, unlisted)
        self.admin_roles = frozenset(admin_roles)
        # Rules indexed by their first literal segment (wildcard-first rules go in every list),
        # so a decision looks at a handful of rules, not the whole table.
        compiled = [
            (rule.pattern.split("/", 1)[0], _Compiled(rule, compile_pattern(rule.pattern))) for rule in self.rules
        ]
        self._wild = tuple(item for head, item in compiled if head in ("*", "**"))
        self._by_head = {
            head: tuple(item for first, item in compiled if first in (head, "*", "**"))
            for head, _ in compiled
            if head not in ("*", "**")
        }

    def rule_for(self, method: str, canonical_path: str) -> RouteRule:
        """The first rule matching the call (there always is one: the unlisted-route rule)."""
        head = canonical_path.split("/", 1)[0]
        for item in self._by_head.get(head, self._wild):
            if item.rule.matches_method(method) and item.regex.fullmatch(canonical_path):
                return item.rule
        return self.rules[-1]

    def allows(self, rule: RouteRule, roles: Iterable[str]) -> bool:
        """Whether a user with ``roles`` passes ``rule``."""
        if ANY_SIGNED_IN in rule.roles:
            return True
        held = tuple(roles)
        if ADMIN in rule.roles and is_admin(held, self.admin_roles):
            return True
        return any(role in rule.roles for role in held)

    def decide(self, method: str, canonical_path: str, roles: Iterable[str]) -> RouteRule:
        """The rule that allowed the call; :class:`AccessDenied` when it does not."""
        verb = "GET" if method == "HEAD" else method
        rule = self.rule_for(verb, canonical_path)
        if not self.allows(rule, roles):
            raise AccessDenied(
                f"Forbidden: {method} /noetl/{canonical_path} needs {self.describe_roles(rule)} "
                f"(route policy rule '{rule.name}')",
                rule.name,
            )
        return rule

    def describe_roles(self, rule: RouteRule) -> str:
        """The roles a rule asks for, in words (for the 403 text and the docs)."""
        if not rule.roles:
            return "a rule that allows it (none does)"
        names = sorted(self.admin_roles if role == ADMIN else {role} for role in rule.roles)
        flat = sorted({name for group in names for name in group})
        return "one of the roles " + ", ".join(flat)


def default_policy(admin_roles: Iterable[str]) -> RoutePolicy:
    """The built-in policy (docs/proxy.md has it as a table)."""
    return RoutePolicy(DEFAULT_RULES, admin_roles)
