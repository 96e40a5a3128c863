"""Every endpoint's handler, joined from each module's ``default_handlers``."""

from __future__ import annotations

from typing import Any

from handlers import (
    auth,
    callbacks,
    events,
    graphql,
    graphql_sse,
    graphql_ws,
    health,
    ingress,
    proxy,
    runtime,
    sharding,
)


def all_handlers() -> list[tuple[Any, Any]]:
    """Routes in match order; the proxy first: it is the busiest and overlaps no other route.

    graphql-ws before graphql: its rule takes ``/graphql`` only for ``Upgrade: websocket`` requests.
    """
    routes: list[tuple[Any, Any]] = []
    for module in (
        proxy,
        health,
        auth,
        callbacks,
        graphql_ws,
        graphql_sse,
        graphql,
        events,
        runtime,
        sharding,
        ingress,
    ):
        routes.extend(module.default_handlers)
    return routes
