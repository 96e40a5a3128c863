"""The stand-in's synchronous auth routes and execution cancel (DEVELOPMENT STAND-IN — not NoETL).

``POST /api/auth/login`` and ``POST /api/auth/check-playbook-access`` answer like the reference
gateway expects of NoETL (``{"status": "success" | "error", "data": {…}}``), deciding exactly as
the login and check-access scripts do — but only while a test turns them on
(``auth_api(state).sync_routes = True``); otherwise they are what NoETL 4.26 answers for a route
it does not have: 404 ``{"detail": "Not Found"}``. ``POST /api/executions/{id}/cancel`` stops the
execution's script (status ``CANCELLED``), or answers ``cancel_status`` when a test sets one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.standin import playbooks
from tests.standin.per_standin import PerStandin
from tests.standin.server import _Handler


@dataclass
class AuthApiState:
    """Switches of these routes, per stand-in."""

    sync_routes: bool = False
    cancel_status: int | None = None


auth_api: PerStandin[AuthApiState] = PerStandin(AuthApiState)  # the switches for one stand-in


class _SyncRoute(_Handler):
    def fields(self) -> dict[str, Any] | None:
        """The body, or None after answering 404 like a NoETL without this route."""
        if not auth_api(self.state).sync_routes:
            self.reply({"detail": "Not Found"}, 404)
            return None
        return self.body if isinstance(self.body, dict) else {}


class SyncLoginRoute(_SyncRoute):
    def post(self) -> None:
        body = self.fields()
        if body is not None:
            status, data = playbooks.login_outcome(self.state, body)
            self.reply({"status": status, "data": data})


class SyncCheckAccessRoute(_SyncRoute):
    def post(self) -> None:
        body = self.fields()
        if body is not None:
            self.reply({"status": "success", "data": playbooks.access_outcome(self.state, body)})


class CancelRoute(_Handler):
    def post(self, execution_id: str) -> None:
        forced = auth_api(self.state).cancel_status
        if forced is not None:
            self.reply({"detail": "scripted cancel failure"}, forced)
            return
        execution = self.state.executions.get(execution_id)
        if execution is None:
            self.reply({"detail": "Execution not found"}, 404)
            return
        if execution.status == "RUNNING":
            execution.status = "CANCELLED"
            if execution.task is not None:
                execution.task.cancel()
        self.reply({"execution_id": execution_id, "status": "CANCELLED"})


AUTH_API_ROUTES: list[Any] = [
    (r"/api/auth/login", SyncLoginRoute),
    (r"/api/auth/check-playbook-access", SyncCheckAccessRoute),
    (r"/api/executions/([^/]+)/cancel", CancelRoute),
]
