"""Base handlers: CORS, request ids, one JSON error path, body parsing, session and
callback-token checks. Every endpoint handler derives from one of these."""

# layout: over 300 lines: the base classes share one error path and the session steps, which the
# trust-boundary work is rewriting (parse_body, require_session); split after it.
from __future__ import annotations

import logging
import random
from asyncio import Future
from collections.abc import Awaitable
from http.client import responses
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ValidationError
from tornado.iostream import StreamClosedError
from tornado.web import HTTPError, RequestHandler, stream_request_body

from gateway.auth.service import AuthService, ValidationBudgetExceeded
from gateway.auth.sessions import Session
from gateway.auth.tokens import is_callback_request_id, is_wellformed_session_token
from gateway.config import GatewayConfig
from gateway.errors import PublicError, code_for_status
from gateway.logging import request_id_var, scrub
from gateway.metrics import Metrics
from gateway.noetl.client import UpstreamFailure
from gateway.services import Services
from handlers.models import describe_validation_error

log = logging.getLogger("gateway.http")
access_log = logging.getLogger("gateway.access")

BodyT = TypeVar("BodyT", bound=BaseModel)

CORS_ALLOWED_HEADERS = (
    "Content-Type, Authorization, X-Session-Id, X-Session-Token, X-User-Id, X-Request-Id, "
    "X-Callback-Token, Last-Event-ID, Accept"
)
CORS_ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
_METRIC_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
SPENT_TOKEN = "Callback token already used"
_REQUEST_ID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")

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


_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID4_SET = (0x4 << 76) | (0x2 << 62)  # version 4, RFC 4122 variant


def new_request_id() -> str:
    """A random id in ``uuid.uuid4().hex`` form, ≈ 4 µs cheaper per request here (no syscall, no UUID).

    A request id correlates log lines; it grants nothing, so it need not be unpredictable:
    ``random`` suffices (and re-seeds itself in forked workers, so ids stay distinct per process).
    """
    return f"{(random.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET:032x}"


class ApiError(HTTPError, PublicError):
    """An HTTP-level refusal: ``public`` text is safe to show; ``log_message`` stays in the log.

    ``headers`` are sent with the error body, ``extra`` fields are added to it.
    """

    def __init__(
        self,
        status: int,
        public: str,
        log_message: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        HTTPError.__init__(self, status, log_message)  # Tornado's own fields (it answers HTTPError itself)
        self.status, self.code, self.public = status, code_for_status(status), public
        self.headers = headers or {}
        self.extra = extra


@stream_request_body
class BaseHandler(RequestHandler):
    """Common behaviour: typed services, CORS, request id, JSON errors, a bounded request body.

    Every route streams its body (``@stream_request_body``) so that the limit is the route's
    and is enforced before the body is read, not after Tornado buffered all of it: a declared
    ``Content-Length`` over the limit is refused in ``prepare()``, a chunked body as it passes
    the limit, and nothing past the limit is ever kept. ``self.request.body`` is set when the
    body is complete, before the HTTP method runs, as Tornado does for buffered handlers.
    """

    request_id: str = "-"
    route_name = "other"
    _body: bytearray | None = None
    _body_received = 0
    _watching_body = False
    _deferred_error: BaseException | None = None
    _drop_allowance = 0

    # -- services --------------------------------------------------------------------------

    @property
    def services(self) -> Services:
        return cast(Services, self.settings["services"])

    @property
    def config(self) -> GatewayConfig:
        return self.services.config

    @property
    def metrics(self) -> Metrics:
        return self.services.metrics

    @property
    def auth(self) -> AuthService:
        return self.services.auth

    # -- every response --------------------------------------------------------------------

    def set_default_headers(self) -> None:
        """CORS here, not in prepare(): send_error() clears headers and calls this again.

        ``Vary: Origin`` on every answer: whether it carries ``Access-Control-Allow-Origin``
        depends on the Origin, so a cache must never hand one origin's answer to another.
        """
        self.set_header("Vary", "Origin")
        origin = self.request.headers.get("Origin")
        if origin and origin in self.config.cors_allowed_origins:
            self.set_header("Access-Control-Allow-Origin", origin)
            if self.config.cors_allow_credentials:
                self.set_header("Access-Control-Allow-Credentials", "true")
            self.set_header("Access-Control-Expose-Headers", "X-Request-Id, Retry-After")
        self.set_header("X-Content-Type-Options", "nosniff")
        if self.request_id != "-":
            self.set_header("X-Request-Id", self.request_id)

    def _assign_request_id(self) -> None:
        given = self.request.headers.get("X-Request-Id", "")
        if given and len(given) <= 128 and set(given) <= _REQUEST_ID_OK:
            self.request_id = given
        else:
            self.request_id = new_request_id()
        request_id_var.set(self.request_id)
        self.set_header("X-Request-Id", self.request_id)

    _counted = False

    async def prepare(self) -> None:
        """Request id first, so every log line of the request carries it; then the body's size."""
        self._assign_request_id()
        self.services.request_started()
        self._counted = True
        self._expect_body()

    # -- the request body ------------------------------------------------------------------

    def body_limit(self) -> int:
        """Most bytes of request body this route accepts (the proxy's own, once signed in)."""
        return self.config.gateway_max_body_bytes

    def body_too_large(self) -> ApiError:
        """The 413 of this route."""
        return ApiError(413, f"Request body too large (limit {self.body_limit()} bytes)")

    def declared_body_length(self) -> int | None:
        """``Content-Length`` as a number; 400 when it is not one."""
        value = self.request.headers.get("Content-Length")
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
            self.request._body_future.add_done_callback(self._body_ended)

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
        future: Future[None] | None = getattr(self.request, "_body_future", None)
        if self._finished or self._deferred_error is not None or future is None or future.done():
            return False
        if self.request.headers.get("Expect", "").lower() == "100-continue":
            return False  # the client sends nothing until told to: answer now
        allowance = DISCARD_BODY_BYTES
        if isinstance(error, ApiError) and error.status_code == 413:
            allowance = min(self.body_limit(), self.config.gateway_max_body_bytes) + DISCARD_BODY_BYTES
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
            waiting = self.request._body_future
            self.request._body_future = Future()
            self._watching_body = False
            waiting.set_exception(StreamClosedError())
            waiting.exception()
        self._watch_body_end()
        return True

    def _answer_during_body(self, error: BaseException) -> None:
        """Answer before the body is complete; Tornado then closes the connection."""
        self._body = None
        self._answer_error(error)
        body_future = self.request._body_future
        if not body_future.done():  # _execute() may wait on it: end it as a closed connection would
            body_future.set_exception(StreamClosedError())
            body_future.exception()

    def _answer_error(self, error: BaseException) -> None:
        """Log and answer an error raised outside ``_execute()``'s own handling."""
        if isinstance(error, UpstreamFailure):
            self.services.metrics.upstream_errors.labels(type(error).__name__).inc()
            status = error.status
        else:
            self.log_exception(type(error), error, error.__traceback__)
            status = error.status_code if isinstance(error, HTTPError) else 500
        if not self._finished:
            self.send_error(status, exc_info=(type(error), error, error.__traceback__))

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.services.request_ended()

    def on_finish(self) -> None:
        self._uncount()

    def on_connection_close(self) -> None:
        # super() ends a streamed request body that will never complete (else the handler leaks).
        super().on_connection_close()
        self._uncount()

    def options(self, *args: Any, **kwargs: Any) -> None:
        """CORS preflight, answered for every route."""
        origin = self.request.headers.get("Origin")
        if origin and origin in self.config.cors_allowed_origins:
            self.set_header("Access-Control-Allow-Methods", CORS_ALLOWED_METHODS)
            requested = self.request.headers.get("Access-Control-Request-Headers")
            self.set_header("Access-Control-Allow-Headers", CORS_ALLOWED_HEADERS)
            if requested:
                self.set_header("Vary", "Origin, Access-Control-Request-Headers")
            self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    def write_json(self, payload: Any, status: int = 200) -> None:
        """Finish with a JSON body (orjson: the hot paths answer JSON)."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one error path: ``{"error": public text}``; never a traceback or upstream URL."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        body: dict[str, Any]
        if isinstance(exc, PublicError):
            body = {"error": exc.public}
            if isinstance(exc, ApiError):
                body.update(exc.extra)
                for name, value in exc.headers.items():  # send_error() cleared headers: set them here
                    self.set_header(name, value)
        elif status_code >= 500 and not isinstance(exc, HTTPError):
            body = {"error": "Internal server error", "request_id": self.request_id}
        else:
            body = {"error": responses.get(status_code, "Error")}
        self.set_header("Content-Type", "application/json")
        body_future: Future[None] | None = getattr(self.request, "_body_future", None)
        if body_future is not None and not body_future.done():
            self.set_header("Connection", "close")  # answered before the body: Tornado will close
        self.finish(orjson.dumps(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Expected errors log one line; only real bugs log a traceback (server side only)."""
        if isinstance(value, PublicError):
            log.info(
                "%s %s -> %s",
                self.request.method,
                scrub(self.request.path),
                value.status if isinstance(value, ApiError) else f"{value.status} {value.public}",
            )
            return
        super().log_exception(typ, value, tb)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, HTTPError | PublicError) and self._defer_until_body_read(e):
            return
        # Tornado answers its own HTTPError (ApiError among them) by status, anything else with 500;
        # the rest of the PublicError family is answered here, by its status, through write_error.
        if isinstance(e, PublicError) and not isinstance(e, HTTPError):
            if isinstance(e, UpstreamFailure):
                self.services.metrics.upstream_errors.labels(type(e).__name__).inc()
            self.log_exception(type(e), e, e.__traceback__)
            if not self._finished:
                self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    # -- helpers ---------------------------------------------------------------------------

    def client_ip(self) -> str:
        """The caller's address: the X-Forwarded-For entry added by the nearest trusted proxy.

        Entries left of the proxies' own are client-controlled, so the first entry is never
        trusted blindly (it would let anyone dodge the per-IP login limit).
        """
        hops = self.config.gateway_trusted_proxy_hops
        forwarded = self.request.headers.get("X-Forwarded-For", "")
        if hops and forwarded:
            entries = [part.strip() for part in forwarded.split(",") if part.strip()]
            if entries:
                return entries[-hops] if len(entries) >= hops else entries[0]
        return self.request.remote_ip or ""


class APIHandler(BaseHandler):
    """JSON API endpoints: body parsing and the session requirement."""

    session: Session | None = None
    session_token: str | None = None

    def parse_body(self, model: type[BodyT]) -> BodyT:
        """Validate the JSON body against a model; 413/415/400 with a clear message."""
        raw = self.request.body or b""  # never over body_limit(): BaseHandler refused it before
        ctype = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if raw and ctype not in ("application/json", "") and not ctype.endswith("+json"):
            raise ApiError(415, "Content-Type must be application/json")
        if not raw.strip():
            raise ApiError(400, "Request body must be a JSON object")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(400, "Malformed JSON in request body") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Request body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ApiError(400, describe_validation_error(exc)) from None

    def find_session_token(self) -> str | None:
        """Token from Authorization Bearer, X-Session-Token or the session_token cookie."""
        header = self.request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            return header[7:].strip()
        token = self.request.headers.get("X-Session-Token")
        if token:
            return token.strip()
        return self.get_cookie("session_token")

    async def require_session(self, token: str | None = None) -> Session:
        """Resolve the session (cache, then NoETL); 401 when missing or invalid."""
        token = token if token is not None else self.find_session_token()
        if not token:
            raise ApiError(401, "Missing authentication token")
        if not is_wellformed_session_token(token):
            self.metrics.session_cache.labels("malformed").inc()
            raise ApiError(401, "Invalid or expired session")
        session = await self.validate_token(token)
        if session is None:
            raise ApiError(401, "Invalid or expired session")
        self.session = session
        self.session_token = token
        self.current_user = session.user
        return session

    async def validate_token(self, token: str) -> Session | None:
        """The session for a token; a cache miss spends from this client's budget (429 beyond it)."""
        try:
            return await self.auth.validate(token, client=self.client_ip())
        except ValidationBudgetExceeded as exc:
            self.metrics.session_cache.labels("over_budget").inc()
            raise ApiError(exc.status, exc.public, headers={"Retry-After": str(exc.retry_after)}) from None

    def check_cookie_origin(self) -> None:
        """A cookie-authenticated state change must come from an allowed origin (CSRF)."""
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return
        if self.request.headers.get("Authorization") or self.request.headers.get("X-Session-Token"):
            return
        if not self.get_cookie("session_token"):
            return
        origin = self.request.headers.get("Origin")
        if origin is None or origin in self.config.cors_allowed_origins or self.is_own_origin(origin):
            return
        raise ApiError(403, "Origin not allowed for cookie-authenticated requests")

    def is_own_origin(self, origin: str) -> bool:
        """A page served by this gateway (e.g. GraphiQL): browsers cannot forge Origin.

        An Origin that does not parse (``http://[``) is nobody's: not ours, never a 500.
        """
        try:
            netloc = urlsplit(origin).netloc.lower()
        except ValueError:
            return False
        return bool(netloc) and netloc in (self.request.host.lower(), urlsplit(self.config.public_url).netloc.lower())


class AuthenticatedHandler(APIHandler):
    """Endpoints that need a session before anything else runs."""

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method == "OPTIONS":
            return
        self.check_cookie_origin()
        await self.require_session()


class CallbackHandler(APIHandler):
    """Worker callbacks: the request id's shape, then the callback token (signed, for this id, not
    yet spent), all before the request id is looked up or becomes a NATS subject."""

    def check_request_id(self, request_id: str) -> None:
        """400 unless the id is one the gateway could have issued (a uuid)."""
        if not is_callback_request_id(request_id):
            raise ApiError(400, "Field 'request_id' is malformed: expected the request id the gateway issued")

    def callback_token_from(self, body_token: str | None) -> str | None:
        """Token from Authorization Bearer, X-Callback-Token or the body."""
        header = self.request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            return header[7:].strip()
        return self.request.headers.get("X-Callback-Token") or body_token

    def verify_callback(self, request_id: str, body_token: str | None, *, known: bool) -> None:
        """``verify_callback_token``, then: once the request's final callback was accepted, nothing more is."""
        self.verify_callback_token(request_id, body_token, known=known)
        self.refuse_spent(self.services.spent_callbacks.is_spent(request_id))

    def verify_callback_token(self, request_id: str, body_token: str | None, *, known: bool) -> None:
        """Required mode: a valid token naming request_id. Legacy: unsigned is fine if known."""
        token = self.callback_token_from(body_token)
        if self.config.gateway_callback_auth == "legacy" and not token:
            if not known:
                raise ApiError(404, "Request not found")
            return
        self.services.signer.verify(token, request_id)  # CallbackTokenError: 401/403

    def refuse_spent(self, spent: bool) -> None:
        """401 for a request whose final callback was already accepted (its token is used up)."""
        if spent:
            raise ApiError(401, SPENT_TOKEN)

    async def spend_callback(self, request_id: str) -> None:
        """Accept this request's final callback, once: a replay (or a race) gets 401."""
        if not await self.services.spent_callbacks.spend(request_id):
            raise ApiError(401, SPENT_TOKEN)


def log_request(handler: RequestHandler) -> None:
    """Access log (level by status, URI scrubbed of tokens) and request metrics."""
    status = handler.get_status()
    duration = handler.request.request_time()
    route = getattr(handler, "route_name", "other")
    services = handler.settings.get("services")
    if services is not None:
        method = handler.request.method or ""
        # The label set stays bounded: a client inventing methods must not create metric series.
        services.metrics.observe_request(route, method if method in _METRIC_METHODS else "other", status, duration)
    if route == "health" and status < 400:
        return
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if not access_log.isEnabledFor(level):
        return
    uri = handler.request.uri or ""
    if "?" in uri:  # tokens travel in query strings; the log filter scrubs the whole line again
        uri = scrub(uri)
    access_log.log(
        level,
        "%d %s %s %.1fms",
        status,
        handler.request.method,
        uri,
        duration * 1000.0,
        extra={"request_id": getattr(handler, "request_id", "-")},
    )
