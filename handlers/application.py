"""The gateway's Tornado ``Application``: Tornado's, with the connection deadlines of handlers/deadlines.py
and literal paths routed by handlers/exact_routes.py."""

from __future__ import annotations

from typing import Any

from tornado.httputil import HTTPConnection, HTTPMessageDelegate, HTTPServerRequest
from tornado.web import Application

from handlers.deadlines import ConnectionDeadlines, DeadlineDelegate, stream_of
from handlers.exact_routes import ExactRoute, exact_routes


class GatewayApplication(Application):
    """Every request's delegate is wrapped so its header and body deadlines are kept (one dict, one
    sweep) instead of Tornado's timer per read; ``settings["connection_deadlines"]`` holds them.
    A literal path is routed with one dict lookup when Tornado's rules would pick the same handler."""

    def __init__(self, handlers: list[Any], deadlines: ConnectionDeadlines, **settings: Any) -> None:
        super().__init__(handlers, connection_deadlines=deadlines, **settings)
        self.deadlines = deadlines
        # Host-specific rules (add_handlers) would come before the wildcard ones: none here, else no shortcut.
        self.exact: dict[str, ExactRoute] = (
            exact_routes(self.wildcard_router.rules) if len(self.default_router.rules) == 1 else {}
        )

    def start_request(self, server_conn: object, request_conn: HTTPConnection) -> HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        stream = stream_of(request_conn)
        if stream is None:
            return delegate
        self.deadlines.awaiting_headers(stream)
        return DeadlineDelegate(delegate, stream, self.deadlines)

    def find_handler(self, request: HTTPServerRequest, **kwargs: Any) -> Any:
        route = self.exact.get(request.path)
        if route is not None:
            return self.get_handler_delegate(request, route[0], route[1])
        return super().find_handler(request, **kwargs)
