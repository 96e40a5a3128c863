"""The gateway's Tornado ``Application``: Tornado's, with the connection deadlines of handlers/deadlines.py."""

from __future__ import annotations

from typing import Any

from tornado.httputil import HTTPConnection, HTTPMessageDelegate
from tornado.web import Application

from handlers.deadlines import ConnectionDeadlines, DeadlineDelegate, stream_of


class GatewayApplication(Application):
    """Every request's delegate is wrapped so its header and body deadlines are kept (one dict, one
    sweep) instead of Tornado's timer per read; ``settings["connection_deadlines"]`` holds them."""

    def __init__(self, handlers: list[Any], deadlines: ConnectionDeadlines, **settings: Any) -> None:
        super().__init__(handlers, connection_deadlines=deadlines, **settings)
        self.deadlines = deadlines

    def start_request(self, server_conn: object, request_conn: HTTPConnection) -> HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        stream = stream_of(request_conn)
        if stream is None:
            return delegate
        self.deadlines.awaiting_headers(stream)
        return DeadlineDelegate(delegate, stream, self.deadlines)
