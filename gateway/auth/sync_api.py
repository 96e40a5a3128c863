"""NoETL's synchronous auth routes: answers in milliseconds instead of a playbook's round trip.

``NOETL_AUTH_SYNC=true``: login through ``POST /api/auth/login`` and session validation through
``POST /api/auth/session/validate``; ``NOETL_AUTHZ_SYNC=true``: access checks through
``POST /api/auth/check-playbook-access`` (the reference gateway's flags, request and answer
shapes). Login and check-access answer like the playbook's callback (``{"status": "success" |
"error", "data": {…}}``), so one tail in the auth service reads both.

NoETL 4.26 has only the validate route. A route its router does not know (404 ``Not Found``) is
``None`` here: the caller runs the playbook instead, and the log says so once per route and
process — not on every login.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.noetl.client import NoetlClient, UpstreamError

log = logging.getLogger("gateway.auth")

LOGIN_ROUTE = "auth/login"
VALIDATE_ROUTE = "auth/session/validate"
CHECK_ACCESS_ROUTE = "auth/check-playbook-access"


def route_missing(status: int, answer: Any) -> bool:
    """A 404 from the router (no such endpoint), not NoETL's 404 for a missing credential."""
    return status == 404 and (not isinstance(answer, dict) or answer.get("detail") in (None, "Not Found"))


class SyncAuthApi:
    """Calls NoETL's auth routes; ``None`` where NoETL lacks the route."""

    def __init__(self, noetl: NoetlClient, credential: str) -> None:
        self._noetl = noetl
        self._credential = credential
        self._said_missing: set[str] = set()

    def _missing(self, route: str, status: int, answer: Any) -> bool:
        """True if NoETL lacks the route; the first time, the log says the playbook stands in."""
        if not route_missing(status, answer):
            return False
        if route not in self._said_missing:
            self._said_missing.add(route)
            log.warning("NoETL has no POST /api/%s: using the auth playbook instead", route)
        return True

    async def _callback_shaped(self, route: str, body: dict[str, Any], what: str) -> dict[str, Any] | None:
        status, answer = await self._noetl.request_json("POST", route, {**body, "credential": self._credential})
        if self._missing(route, status, answer):
            return None
        if status >= 400 or not isinstance(answer, dict):
            raise UpstreamError(f"NoETL {what} failed with status {status}", status, answer)
        return {"status": str(answer.get("status") or "error"), "data": answer.get("data")}

    async def login(self, variables: dict[str, Any]) -> dict[str, Any] | None:
        """``POST /api/auth/login``: the login playbook's variables (less the callback ones)."""
        return await self._callback_shaped(LOGIN_ROUTE, variables, "login")

    async def check_access(self, token: str, playbook_path: str, action: str) -> dict[str, Any] | None:
        """``POST /api/auth/check-playbook-access``: ``data`` is ``{allowed, user, message}``."""
        body = {"session_token": token, "playbook_path": playbook_path, "action": action}
        return await self._callback_shaped(CHECK_ACCESS_ROUTE, body, "access check")

    async def validate(self, token: str) -> dict[str, Any] | None:
        """``POST /api/auth/session/validate`` → ``{"status": "ok", "valid", "user", "expires_at"}``."""
        status, answer = await self._noetl.validate_session(token, self._credential)
        if self._missing(VALIDATE_ROUTE, status, answer):
            return None
        if status >= 400 or not isinstance(answer, dict):
            raise UpstreamError(f"NoETL session validation failed with status {status}", status, answer)
        if answer.get("status", "ok") != "ok":
            # NoETL could not decide (e.g. its auth database is down): that is not "invalid", and
            # evicting would log out every user whose session is not cached.
            log.warning("NoETL session validation could not be done (status %s)", answer.get("status"))
            raise UpstreamError("Session validation is unavailable right now", status, answer, gateway_status=503)
        return answer
