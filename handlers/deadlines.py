"""Header and body deadlines for every connection, kept in one wheel of ticks instead of a timer per read.

Why not Tornado's own (``idle_connection_timeout``, ``body_timeout``): it wraps every header read
and every body read in ``gen.with_timeout`` — a timer and three futures each, ≈ 40 µs of a result
callback's ≈ 470 µs (docs/benchmarks.md, "Result callbacks"). Here a deadline is a set entry in a
wheel of ticks (``sweep_secs``: at most a quarter of the shorter timeout, at most 1 s), written when
a request starts, its headers end and its body ends, and dropped when the connection closes; each
tick closes the connections whose deadline fell in it, so a sweep looks only at what is due. The
tick runs only while some connection owes something: an idle gateway keeps no timer.

The rules (docs/configuration.md, "Abuse limits"), as Tornado's were:

* **headers**: from the moment a connection may send a request (accepted, or the previous answer
  finished on a kept-alive one) its request line and headers must be complete within the header
  timeout (``GATEWAY_IDLE_CONNECTION_TIMEOUT_SECS``): slow-loris and idle keep-alive connections end;
* **body**: a declared body (``Content-Length`` > 0 or ``Transfer-Encoding``) must be complete
  within the body timeout (``GATEWAY_BODY_TIMEOUT_SECS``); the proxy extends it for a signed-in
  upload (``GATEWAY_PROXY_BODY_TIMEOUT_SECS``);
* nothing else: an answer being written (an SSE stream, a proxied download, a WebSocket) has no
  deadline here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPConnection, HTTPHeaders, HTTPMessageDelegate, RequestStartLine, ResponseStartLine
from tornado.iostream import IOStream

MAX_SWEEP_SECS = 1.0


class ConnectionDeadlines:
    """The time by which each connection must have sent what it owes (headers, then its body)."""

    def __init__(self, header_secs: float, body_secs: float) -> None:
        self.header_secs = header_secs
        self.body_secs = body_secs
        self.sweep_secs = min(MAX_SWEEP_SECS, header_secs / 4, body_secs / 4)
        self._tick_of: dict[IOStream, int] = {}  # the tick a connection's deadline falls in
        self._due: dict[int, set[IOStream]] = {}  # tick → the connections due then
        self._armed = False
        self.closed_late = 0  # connections closed for a missed deadline

    def __len__(self) -> int:
        """Connections that owe headers or a body now."""
        return len(self._tick_of)

    @property
    def armed(self) -> bool:
        """Whether a sweep is scheduled (only while some connection owes something)."""
        return self._armed

    def awaiting_headers(self, stream: IOStream) -> None:
        self._owe(stream, self.header_secs)

    def awaiting_body(self, stream: IOStream) -> None:
        self._owe(stream, self.body_secs)

    def extend_body(self, stream: IOStream, secs: float) -> None:
        """A longer body deadline for this request, counted from now, if its body is still due."""
        if stream in self._tick_of:
            self._owe(stream, secs)

    def settled(self, stream: IOStream) -> None:
        """Nothing is owed: the headers came without a body, the body is complete, or it closed."""
        tick = self._tick_of.pop(stream, None)
        if tick is not None:
            self._due[tick].discard(stream)

    def _owe(self, stream: IOStream, secs: float) -> None:
        tick = math.ceil((time.monotonic() + secs) / self.sweep_secs)
        old = self._tick_of.get(stream)
        if old == tick:
            return
        if old is not None:
            self._due[old].discard(stream)
        self._tick_of[stream] = tick
        due = self._due.get(tick)
        if due is None:
            due = self._due[tick] = set()
        due.add(stream)
        if not self._armed:
            self._arm()

    def _arm(self) -> None:
        self._armed = True
        asyncio.get_running_loop().call_later(self.sweep_secs, self.sweep)

    def sweep(self) -> None:
        """Close every connection whose deadline has passed."""
        self._armed = False
        now = math.floor(time.monotonic() / self.sweep_secs)  # ticks up to here are wholly past
        for tick in [tick for tick in self._due if tick <= now]:  # a handful: one per sweep_secs of timeout
            for stream in self._due.pop(tick):
                del self._tick_of[stream]
                if not stream.closed():
                    self.closed_late += 1
                    stream.close()
        if self._tick_of:
            self._arm()


class DeadlineHTTPServer(HTTPServer):
    """Tornado's HTTP server with its timer per read off and the application's deadlines kept instead.

    ``start_request`` (a request may begin: its headers are due) and ``on_close`` (the connection is
    gone: nothing is owed) are the server's own hooks; the application's settings hold the deadlines
    (``connection_deadlines``: the proxy extends a body's).
    """

    def initialize(self, request_callback: Any, *args: Any, **kwargs: Any) -> None:
        super().initialize(request_callback, *args, **kwargs)
        self.deadlines: ConnectionDeadlines = request_callback.settings["connection_deadlines"]
        self.conn_params.header_timeout = None
        self.conn_params.body_timeout = None

    def start_request(self, server_conn: object, request_conn: HTTPConnection) -> HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        stream = stream_of(request_conn)
        if stream is None:
            return delegate
        self.deadlines.awaiting_headers(stream)
        return DeadlineDelegate(delegate, stream, self.deadlines)

    def on_close(self, server_conn: object) -> None:
        stream = getattr(server_conn, "stream", None)
        if isinstance(stream, IOStream):
            self.deadlines.settled(stream)
        super().on_close(server_conn)


class DeadlineDelegate(HTTPMessageDelegate):
    """Wraps the router's delegate for one request: marks when its headers and its body are in."""

    def __init__(self, inner: HTTPMessageDelegate, stream: IOStream, deadlines: ConnectionDeadlines) -> None:
        self._inner = inner
        self._stream = stream
        self._deadlines = deadlines

    def headers_received(
        self, start_line: RequestStartLine | ResponseStartLine, headers: HTTPHeaders
    ) -> Awaitable[None] | None:
        if declares_body(headers):
            self._deadlines.awaiting_body(self._stream)
        else:
            self._deadlines.settled(self._stream)
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._inner.data_received(chunk)

    def finish(self) -> None:
        self._deadlines.settled(self._stream)
        self._inner.finish()

    def on_connection_close(self) -> None:
        self._deadlines.settled(self._stream)
        self._inner.on_connection_close()


def declares_body(headers: HTTPHeaders) -> bool:
    """Whether Tornado will read a body after these headers (a length over 0, or a transfer coding)."""
    length = headers.get("Content-Length")
    if length is not None and length.strip() not in ("", "0"):
        return True
    return "Transfer-Encoding" in headers


def stream_of(request_conn: HTTPConnection | None) -> IOStream | None:
    """The connection's stream (Tornado's HTTP/1 connection has one; another kind would not)."""
    stream = getattr(request_conn, "stream", None)
    return stream if isinstance(stream, IOStream) else None
