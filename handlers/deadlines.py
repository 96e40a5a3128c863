"""Header and body deadlines for every connection, kept in one dict and checked by one sweep.

Why not Tornado's own (``idle_connection_timeout``, ``body_timeout``): it wraps every header read
and every body read in ``gen.with_timeout`` — a timer and three futures each, ≈ 40 µs of a result
callback's ≈ 470 µs (docs/benchmarks.md, "Result callbacks"). Here a deadline is a dict write when
a request starts, its headers end and its body ends; a sweep every ``sweep_secs`` (at most a
quarter of the shorter timeout, at most 1 s) closes a connection past its deadline. It runs only
while some connection is waiting for bytes, so an idle gateway keeps no timer.

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
import time
from collections.abc import Awaitable

from tornado.httputil import HTTPConnection, HTTPHeaders, HTTPMessageDelegate, RequestStartLine, ResponseStartLine
from tornado.iostream import IOStream

MAX_SWEEP_SECS = 1.0


class ConnectionDeadlines:
    """The time by which each connection must have sent what it owes (headers, then its body)."""

    def __init__(self, header_secs: float, body_secs: float) -> None:
        self.header_secs = header_secs
        self.body_secs = body_secs
        self.sweep_secs = min(MAX_SWEEP_SECS, header_secs / 4, body_secs / 4)
        self._due: dict[IOStream, float] = {}
        self._armed = False
        self.closed_late = 0  # connections closed for a missed deadline

    def __len__(self) -> int:
        """Connections that owe headers or a body now."""
        return len(self._due)

    @property
    def armed(self) -> bool:
        """Whether a sweep is scheduled (only while some connection owes something)."""
        return self._armed

    def awaiting_headers(self, stream: IOStream) -> None:
        self._due[stream] = time.monotonic() + self.header_secs
        if not self._armed:
            self._arm()

    def awaiting_body(self, stream: IOStream, secs: float | None = None) -> None:
        self._due[stream] = time.monotonic() + (self.body_secs if secs is None else secs)
        if not self._armed:
            self._arm()

    def extend_body(self, stream: IOStream, secs: float) -> None:
        """A longer body deadline for this request, counted from now, if its body is still due."""
        if stream in self._due:
            self._due[stream] = time.monotonic() + secs

    def settled(self, stream: IOStream) -> None:
        """Nothing is owed: the headers came without a body, or the body is complete."""
        self._due.pop(stream, None)

    def _arm(self) -> None:
        self._armed = True
        asyncio.get_running_loop().call_later(self.sweep_secs, self.sweep)

    def sweep(self) -> None:
        """Close every connection past its deadline; forget the ones already closed."""
        self._armed = False
        now = time.monotonic()
        due = self._due
        over = [stream for stream, deadline in due.items() if deadline <= now or stream.closed()]
        for stream in over:
            del due[stream]
            if not stream.closed():
                self.closed_late += 1
                stream.close()
        if due:
            self._arm()


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
