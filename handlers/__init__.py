"""Every endpoint's handler, joined from each module's ``default_handlers``."""

from __future__ import annotations

from typing import Any

from handlers import auth, callbacks, events, graphql, health, ingress, proxy, runtime, sharding


def all_handlers() -> list[tuple[str, Any]]:
    """Routes in match order; the proxy first: it is the busiest and overlaps no other route."""
    routes: list[tuple[str, Any]] = []
    for module in (proxy, health, auth, callbacks, graphql, events, runtime, sharding, ingress):
        routes.extend(module.default_handlers)
    return routes
