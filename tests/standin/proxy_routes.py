"""Extra stand-in routes for the proxy's tests (streams, large bodies, statuses)."""

from __future__ import annotations

from typing import Any

PROXY_ROUTES: list[Any] = []
