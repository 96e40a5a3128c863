"""Every endpoint's handler, joined from each module's ``default_handlers``."""

from __future__ import annotations

from typing import Any

from handlers import auth, callbacks, health


def all_handlers() -> list[tuple[str, Any]]:
    """Routes in match order (most specific modules first)."""
    routes: list[tuple[str, Any]] = []
    for module in (health, auth, callbacks):
        routes.extend(module.default_handlers)
    return routes
