"""The one authorization decision every way into NoETL calls: route policy, then playbook starts.

``executePlaybook``, the ``/noetl/*`` proxy and ``proxyRequest`` all go through
:class:`AccessGuard`; nothing else in the gateway decides who may call what.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.access.refusals import AccessDenied
from gateway.access.routes import ADMIN, RoutePolicy, RouteRule
from gateway.access.starts import PlaybookAccess, start_from_body, start_from_url, start_kind
from gateway.audit import AuditLog
from gateway.metrics import Metrics


class AccessGuard:
    """Route policy by role (always on) and the playbook access check (``GATEWAY_ENFORCE_PLAYBOOK_ACCESS``)."""

    def __init__(self, routes: RoutePolicy, playbooks: PlaybookAccess, metrics: Metrics, audit: AuditLog) -> None:
        self.routes = routes
        self.playbooks = playbooks
        self._denials = metrics.policy_denials
        self._audit = audit
        authz = metrics.reference.authz  # one count per decision: route policy, then playbook check
        self._allowed, self._denied, self._undecided = (authz.labels(o) for o in ("allowed", "denied", "backend_error"))

    def check_route(self, method: str, canonical_path: str, roles: Iterable[str]) -> RouteRule:
        """The rule that lets the call through, or AccessDenied (counted by rule, audited)."""
        try:
            rule = self.routes.decide(method, canonical_path, roles)
        except AccessDenied as exc:
            self._denied.inc()
            self._denials.labels(exc.rule or "unknown").inc()
            self._audit.record("access_denied", method=method, route=canonical_path, rule=exc.rule or "unknown")
            raise
        self._allowed.inc()
        if rule.roles == {ADMIN}:
            self._audit.record("admin_route", method=method, route=canonical_path, rule=rule.name)
        return rule

    def needs_body_check(self, method: str, canonical_path: str) -> bool:
        """True when the call starts a playbook named in its body (the body must be read first)."""
        return self.playbooks.enforce and start_kind(method, canonical_path) == "body"

    async def check_url_start(self, token: str, method: str, canonical_path: str, raw_path: str) -> None:
        """A start that names its playbook in the URL (MCP routes) is checked before anything is sent."""
        if self.playbooks.enforce and start_kind(method, canonical_path) == "url":
            await self._checked(self.playbooks.check_path(token, start_from_url(raw_path).path or ""))

    async def check_body_start(self, token: str, body: Any) -> str:
        """Check the playbook a body-named start would run; return its catalog path."""
        return await self._checked(self.playbooks.check_start(token, start_from_body(body)))

    async def check_call(
        self, token: str, roles: Iterable[str], method: str, canonical_path: str, raw_path: str, body: Any
    ) -> None:
        """Everything for one whole call (``proxyRequest``): route, then whatever start it is."""
        self.check_route(method, canonical_path, roles)
        if not self.playbooks.enforce:
            return
        kind = start_kind(method, canonical_path)
        if kind == "body":
            await self.check_body_start(token, body)
        elif kind == "url":
            await self.check_url_start(token, method, canonical_path, raw_path)

    async def check_playbook(self, token: str, playbook_path: str) -> None:
        """``executePlaybook``: the access check on the playbook it names."""
        await self._checked(self.playbooks.check_path(token, playbook_path), playbook_path)

    async def _checked(self, check: Any, playbook: str | None = None) -> Any:
        try:
            allowed = await check
        except AccessDenied as exc:
            rule = exc.rule or "playbook access"
            self._denied.inc()
            self._denials.labels(rule).inc()
            self._audit.record("access_denied", rule=rule, playbook=playbook)
            raise
        except Exception:
            self._undecided.inc()  # NoETL could not decide: refused all the same (fail closed)
            raise
        self._allowed.inc()
        return allowed
