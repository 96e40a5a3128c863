"""NoETL's ``GET /api/internal/ingress/{listener}``, behind a switch (DEVELOPMENT STAND-IN — not NoETL).

The reference gateway reads push-ingress listener configs from this route of its NoETL server;
NoETL 4.26 has no such route. Off (the default), the stand-in answers 404 like NoETL 4.26; on,
it serves ``ingress_state(state).listeners`` to callers holding the internal API token. Every
lookup is recorded, so tests can count what the gateway asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.standin.per_standin import PerStandin
from tests.standin.server import _Handler


@dataclass
class IngressRoutesState:
    """The switch, the listeners served, and what was asked."""

    serving: bool = False
    token: str = ""
    listeners: dict[str, Any] = field(default_factory=dict)
    status: int | None = None  # force an answer status (NoETL failing)
    lookups: list[str] = field(default_factory=list)


# The ingress route's switch and records for one stand-in.
ingress_state: PerStandin[IngressRoutesState] = PerStandin(IngressRoutesState)


class InternalIngressHandler(_Handler):
    def get(self, listener: str) -> None:
        routes = ingress_state(self.state)
        routes.lookups.append(listener)
        if not routes.serving:
            self.reply({"detail": "Not Found"}, 404)  # NoETL 4.26: the route does not exist
            return
        if self.request.headers.get("Authorization") != f"Bearer {routes.token}":
            self.reply({"detail": "invalid internal token"}, 401)
            return
        if routes.status is not None:
            self.reply({"detail": "scripted failure"}, routes.status)
            return
        config = routes.listeners.get(listener)
        if config is None:
            self.reply({"detail": f"no push subscription for listener {listener}"}, 404)
            return
        self.reply(config)


INGRESS_ROUTES = [(r"/api/internal/ingress/([^/]+)", InternalIngressHandler)]
