"""The gateway's Tornado ``Application``: Tornado's, with literal paths routed by handlers/exact_routes.py."""

from __future__ import annotations

from typing import Any

from tornado.httputil import HTTPServerRequest
from tornado.web import Application

from handlers.exact_routes import ExactRoute, exact_routes


class GatewayApplication(Application):
    """A literal path is routed with one dict lookup when Tornado's rules would pick the same handler.

    ``settings["connection_deadlines"]`` holds the header and body deadlines that
    ``DeadlineHTTPServer`` keeps (handlers/deadlines.py) and the proxy extends.
    """

    def __init__(self, handlers: list[Any], **settings: Any) -> None:
        super().__init__(handlers, **settings)
        # Host-specific rules (add_handlers) would come before the wildcard ones: none here, else no shortcut.
        self.exact: dict[str, ExactRoute] = (
            exact_routes(self.wildcard_router.rules) if len(self.default_router.rules) == 1 else {}
        )

    def find_handler(self, request: HTTPServerRequest, **kwargs: Any) -> Any:
        route = self.exact.get(request.path)
        if route is not None:
            return self.get_handler_delegate(request, route[0], route[1])
        return super().find_handler(request, **kwargs)
