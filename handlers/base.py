"""Base handlers: CORS, request ids, one JSON error path, body parsing and the session steps.
Every endpoint handler derives from one of these (bounded bodies: handlers/bodies.py; the
callback token: handlers/callbacks.py; the access log: handlers/access_log.py)."""

from __future__ import annotations

import logging
from http.client import responses
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from tornado.web import HTTPError

from gateway.audit import note_caller
from gateway.auth.service import AuthService, ValidationBudgetExceeded
from gateway.auth.sessions import Session
from gateway.auth.tokens import is_wellformed_session_token
from gateway.errors import PublicError
from gateway.logging import request_id_var, scrub
from gateway.noetl.client import UpstreamFailure
from gateway.tracing import begin_request, end_request
from handlers.app_services import AppServices
from handlers.bodies import BoundedBodyHandler, pending_body
from handlers.csrf import cookie_change_from_foreign_origin
from handlers.errors import ApiError
from handlers.http_headers import CheapDefaults, header_value
from handlers.json_body import decode_json_body
from handlers.models import describe_validation_error
from handlers.request_ids import request_id_for
from handlers.request_tracing import span_start, user_id_of

log = logging.getLogger("gateway.http")

BodyT = TypeVar("BodyT", bound=BaseModel)

CORS_ALLOWED_HEADERS = (
    "Content-Type, Authorization, X-Session-Id, X-Session-Token, X-User-Id, X-Request-Id, "
    "X-Callback-Token, Last-Event-ID, Accept"
)
CORS_ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


class BaseHandler(AppServices, CheapDefaults, BoundedBodyHandler):
    """Common behaviour: typed services, CORS, request id, JSON errors, a bounded request body."""

    request_id: str = "-"
    route_name = "other"
    _trace: Any = None  # the request's server span (gateway/tracing), None when not traced

    @property
    def auth(self) -> AuthService:
        return self.services.auth

    # -- every response --------------------------------------------------------------------

    def set_default_headers(self) -> None:
        """CORS here, not in prepare(): send_error() clears headers and calls this again.

        ``Vary: Origin`` on every answer: whether it carries ``Access-Control-Allow-Origin``
        depends on the Origin, so a cache must never hand one origin's answer to another.
        """
        # Every request runs this: values the gateway wrote itself (constants, a request id of
        # request_id_for's alphabet) go into the headers without Tornado's check of each value.
        headers = self._headers
        headers["Vary"] = "Origin"
        origin = header_value(self.request.headers, "Origin")
        if origin and origin in self.config.cors_allowed_origins:
            self.set_header("Access-Control-Allow-Origin", origin)
            if self.config.cors_allow_credentials:
                self.set_header("Access-Control-Allow-Credentials", "true")
            self.set_header("Access-Control-Expose-Headers", "X-Request-Id, Retry-After")
        headers["X-Content-Type-Options"] = "nosniff"
        if self.request_id != "-":
            headers["X-Request-Id"] = self.request_id

    def _assign_request_id(self) -> None:
        self.request_id = request_id = request_id_for(header_value(self.request.headers, "X-Request-Id") or "")
        request_id_var.set(request_id)
        self._headers["X-Request-Id"] = request_id  # request_id_for's alphabet: nothing to check

    _counted = False

    async def prepare(self) -> None:
        """Request id first, so every log line of the request carries it; then the body's size."""
        self._assign_request_id()
        services = self.services
        self._trace = begin_request(services.tracing, self.request.headers, self._span_start)
        if services.audit.enabled:
            note_caller(ip=self.client_ip())
        services.request_started()
        self._counted = True
        self._expect_body()

    def _span_start(self) -> tuple[str, str, dict[str, Any]]:
        """The request span's name parts and first attributes (asked only when tracing is on)."""
        return span_start(self, self.client_ip(), self.request_id)

    def _answer_error(self, error: BaseException) -> None:
        """Log and answer an error raised outside ``_execute()``'s own handling."""
        self.log_exception(type(error), error, error.__traceback__)
        if isinstance(error, UpstreamFailure):
            self.services.metrics.upstream_errors.labels(type(error).__name__).inc()
            status = error.status
        else:
            status = error.status_code if isinstance(error, HTTPError) else 500
        if not self._finished:
            self.send_error(status, exc_info=(type(error), error, error.__traceback__))

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.services.request_ended()

    def on_finish(self) -> None:
        if self._trace is not None:  # traced: status and user (never a token) end its span
            end_request(self._trace, self.get_status(), user_id_of(self.current_user))
        self._uncount()

    def on_connection_close(self) -> None:
        # super() ends a streamed request body that will never complete (else the handler leaks).
        super().on_connection_close()
        if not self._finished and self._trace is not None:
            end_request(self._trace, 499, user_id_of(self.current_user))  # nginx's: client closed request
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
        if not pending_body(self.request).done():
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
        forwarded = header_value(self.request.headers, "X-Forwarded-For") if hops else None
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
        # Never over body_limit(): BoundedBodyHandler refused it before it was read.
        data = decode_json_body(self.request.body or b"", self.request.headers.get("Content-Type"))
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
        token = header_value(self.request.headers, "X-Session-Token")
        if token:
            return token.strip()
        return self.get_cookie("session_token")

    async def require_session(self, token: str | None = None) -> Session:
        """Resolve the session (cache, then NoETL); 401 when missing or invalid."""
        token = token if token is not None else self.find_session_token()
        if not token:
            self.metrics.reference.session_checked["missing_token"].inc()
            raise ApiError(401, "Missing authentication token")
        if not is_wellformed_session_token(token):
            self.metrics.count_session("malformed")
            self.metrics.reference.session_checked["invalid_or_expired"].inc()
            raise ApiError(401, "Invalid or expired session")
        session = self._cached_session(token)
        if session is None:
            session = await self.validate_token(token)
        if session is None:
            raise ApiError(401, "Invalid or expired session")
        self.session = session
        self.session_token = token
        self.current_user = session.user
        if self.services.audit.enabled:
            note_caller(user_id=session.user.user_id, email=session.user.email)
        return session

    def _cached_session(self, token: str) -> Session | None:
        """A cache hit without a coroutine chain; with tracing on, ``validate`` (its span) decides."""
        services = self.services
        if services.tracing is not None:
            return None
        session = services.auth.cached(token)
        if session is not None:
            services.metrics.reference.session_checked["ok"].inc()  # cached(): never bypass mode
        return session

    async def validate_token(self, token: str) -> Session | None:
        """The session for a token; a cache miss spends from this client's budget (429 beyond it)."""
        checks = self.metrics.reference.session_checked
        try:
            session = await self.auth.validate(token, client=self.client_ip())
        except ValidationBudgetExceeded as exc:
            self.metrics.count_session("over_budget")
            self.services.audit.record("rate_limited", limit="session check misses", route=self.request.path)
            raise ApiError(exc.status, exc.public, headers={"Retry-After": str(exc.retry_after)}) from None
        except Exception:
            checks["validation_error"].inc()  # NoETL could not say: neither valid nor invalid
            raise
        if session is None:
            checks["invalid_or_expired"].inc()
        else:
            checks["bypass" if self.config.gateway_auth_bypass else "ok"].inc()
        return session

    def check_cookie_origin(self) -> None:
        """A cookie-authenticated state change must come from an allowed origin (CSRF): handlers/csrf.py."""
        if cookie_change_from_foreign_origin(self.request, self.get_cookie("session_token"), self.config):
            raise ApiError(403, "Origin not allowed for cookie-authenticated requests")


class AuthenticatedHandler(APIHandler):
    """Endpoints that need a session before anything else runs."""

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method == "OPTIONS":
            return
        self.check_cookie_origin()
        await self.require_session()
