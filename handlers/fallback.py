"""JSON 404 for unknown routes (Tornado's default is an HTML page)."""

from __future__ import annotations

from handlers.base import BaseHandler
from handlers.errors import ApiError


class NotFoundHandler(BaseHandler):
    """Any path no route matches; OPTIONS still gets its preflight answer."""

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method != "OPTIONS":
            raise ApiError(404, "Not found")
