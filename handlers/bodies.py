"""Request bodies with a per-route limit, enforced before the body is read (issue 13).

Every route streams its body (``@stream_request_body``) so that the limit is the route's and is
enforced before the body is read, not after Tornado buffered all of it: a declared
``Content-Length`` over the limit is refused in ``prepare()``, a chunked body as it passes the
limit, and nothing past the limit is ever kept. ``self.request.body`` is set when the body is
complete, before the HTTP method runs, as Tornado does for buffered handlers.
"""

from __future__ import annotations

from asyncio import Future
from collections.abc import Awaitable

from tornado.httputil import HTTPServerRequest
from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler, stream_request_body

from gateway.config import GatewayConfig
from handlers.errors import ApiError
from handlers.http_headers import header_value

# A declared body at most this far past a route's limit is read and dropped before the 413 goes
# out: a client that writes its whole body before reading (http.client, requests) would see a
# reset instead of the answer if the gateway closed with its bytes unread. Larger: 413 at once.
DISCARD_BODY_BYTES = 1 << 20


def body_read_ceiling(config: GatewayConfig) -> int:
    """Tornado's own body limit; only the proxy raises it, per request, once the session is valid.

    The JSON limit, the drop allowance past it, and one allowance more: a chunk that crosses the
    drop allowance still reaches the handler, whose 413 answers before Tornado's bare 400 would.
    """
    return config.gateway_max_body_bytes + 2 * DISCARD_BODY_BYTES


def pending_body(request: HTTPServerRequest) -> Future[None]:
    """The future Tornado resolves when a streamed body has ended (``_execute()`` waits on it).

    Tornado has no public API for it: this function and :func:`replace_pending_body` are the only
    places that touch ``request._body_future``; tests/test_body_limits.py fails if Tornado renames it.
    """
    future: Future[None] = request._body_future
    return future


def replace_pending_body(request: HTTPServerRequest) -> Future[None]:
    """Give the request a new body future (Tornado resolves the one it holds); return the old one."""
    old = pending_body(request)
    request._body_future = Future()
    return old


@stream_request_body
class BoundedBodyHandler(RequestHandler):
    """A handler whose body is bounded by ``body_limit()`` before it is read (see the module)."""

    _body: bytearray | None = None
    _body_received = 0
    _watching_body = False
    _deferred_error: BaseException | None = None
    _drop_allowance = 0

    def body_limit(self) -> int:
        """Most bytes of request body this route accepts (the proxy's own, once signed in)."""
        return self.settings["config"].gateway_max_body_bytes

    def body_too_large(self, limit: int | None = None) -> ApiError:
        """The 413 of this route (or of a narrower ``limit`` a part of it has)."""
        return ApiError(413, f"Request body too large (limit {self.body_limit() if limit is None else limit} bytes)")

    def declared_body_length(self) -> int | None:
        """``Content-Length`` as a number; 400 when it is not one."""
        value = header_value(self.request.headers, "Content-Length")
        if value is None:
            return None
        if not value.strip().isdigit():
            raise ApiError(400, "Invalid Content-Length header")
        return int(value)

    def _expect_body(self) -> None:
        declared = self.declared_body_length()
        if declared is not None and declared > self.body_limit():
            raise self.body_too_large()  # before a byte of it is read
        self._body = bytearray()
        self._watch_body_end()

    def _watch_body_end(self) -> None:
        # Added before _execute() awaits the same future, so it runs first: the body is in place
        # when the HTTP method runs.
        if not self._watching_body:
            self._watching_body = True
            pending_body(self.request).add_done_callback(self._body_ended)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        """Keep the body up to the limit; past it keep nothing and refuse."""
        if self._finished:
            return None
        self._body_received += len(chunk)
        if self._deferred_error is not None:  # refused already: drop, up to the allowance
            if self._body_received > self._drop_allowance:
                self._answer_during_body(self._deferred_error)
            return None
        if self._body is None:
            return None
        if self._body_received <= self.body_limit():
            self._body += chunk
            return None
        # A chunked body, the moment it passes the limit: nothing more is kept, and the 413 goes
        # when the body ends or once it has gone DISCARD_BODY_BYTES further.
        error = self.body_too_large()
        if self._defer_until_body_read(error, method_waiting=True):
            self._body = None
        else:
            self._answer_during_body(error)
        return None

    def _body_ended(self, future: Future[None]) -> None:
        body, self._body = self._body, None
        if future.cancelled() or future.exception() is not None:
            return
        if self._deferred_error is not None:
            if not self._finished:
                self._answer_error(self._deferred_error)
            return
        if body is not None:
            self.request.body = bytes(body)

    def _defer_until_body_read(self, error: BaseException, *, method_waiting: bool = False) -> bool:
        """Hold an error decided before the body arrived until a small body is read and dropped.

        An answer sent before the body is read makes Tornado close the connection: a keep-alive
        client would find it dead on its next request, and a client that sends its whole body
        before reading (http.client, requests) would get a reset instead of the answer. A body
        refused for its size may be read up to the limit plus DISCARD_BODY_BYTES (within the read
        ceiling), any other up to DISCARD_BODY_BYTES; a larger declared one is answered at once
        (``Connection: close``).
        """
        future = pending_body(self.request)
        if self._finished or self._deferred_error is not None or future.done():
            return False
        if self.request.headers.get("Expect", "").lower() == "100-continue":
            return False  # the client sends nothing until told to: answer now
        allowance = DISCARD_BODY_BYTES
        if isinstance(error, ApiError) and error.status_code == 413:
            allowance = min(self.body_limit(), self.settings["config"].gateway_max_body_bytes) + DISCARD_BODY_BYTES
        declared = self.request.headers.get("Content-Length", "").strip()
        if declared and not (declared.isdigit() and int(declared) <= allowance):
            return False
        self._deferred_error = error
        self._drop_allowance = allowance
        self._body = None
        if method_waiting:
            # _execute() waits on the body future to run the HTTP method, which must not run:
            # end that wait as a closed connection would, and watch the body's end on a new one
            # (Tornado resolves whichever future the request holds when the body ends).
            waiting = replace_pending_body(self.request)
            self._watching_body = False
            waiting.set_exception(StreamClosedError())
            waiting.exception()
        self._watch_body_end()
        return True

    def _answer_during_body(self, error: BaseException) -> None:
        """Answer before the body is complete; Tornado then closes the connection."""
        self._body = None
        self._answer_error(error)
        body_future = pending_body(self.request)
        if not body_future.done():  # _execute() may wait on it: end it as a closed connection would
            body_future.set_exception(StreamClosedError())
            body_future.exception()

    def _answer_error(self, error: BaseException) -> None:
        """Log and answer an error raised outside ``_execute()``'s own handling (BaseHandler's)."""
        raise NotImplementedError
