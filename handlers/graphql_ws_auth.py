"""Who is on a graphql-ws connection: the handshake's Origin, its session token, the session check.

The rules are the HTTP handlers' own (handlers/base.py: where a token may come from, the caller's
IP for the session-check budget; handlers/csrf.py: which origins are ours), called, not copied;
only the answers differ — close codes instead of statuses (handlers/graphql_ws_protocol.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

import orjson
from tornado.websocket import WebSocketHandler

from gateway.auth.service import ValidationBudgetExceeded
from gateway.auth.sessions import Session
from gateway.auth.tokens import is_wellformed_session_token
from gateway.logging import request_id_var
from gateway.services import Services
from handlers import graphql_ws_protocol as wire
from handlers.base import APIHandler, BaseHandler
from handlers.csrf import is_own_origin
from handlers.request_ids import request_id_for

log = logging.getLogger("gateway.graphql_ws")

INVALID = "Forbidden: invalid or expired session"


def origin_allowed(handler: WebSocketHandler, services: Services) -> bool:
    """No Origin (not a browser), one of CORS_ALLOWED_ORIGINS, or a page of this gateway (GraphiQL)."""
    origin = handler.request.headers.get("Origin")
    if origin is None:
        return True
    config = services.config
    return origin in config.cors_allowed_origins or is_own_origin(origin, handler.request.host, config.public_url)


def check_handshake(handler: WebSocketHandler, services: Services) -> str:
    """The connection's request id (set for its log lines); a foreign Origin is answered 403 JSON."""
    request_id = request_id_for(handler.request.headers.get("X-Request-Id", ""))
    request_id_var.set(request_id)
    if not origin_allowed(handler, services):
        log.info("graphql-ws handshake refused: origin not allowed")
        handler.set_status(403)
        handler.set_header("Content-Type", "application/json")
        handler.set_header("X-Request-Id", request_id)
        handler.finish(orjson.dumps({"error": "Origin not allowed for WebSocket connections"}))
    return request_id


def find_handshake_token(handler: WebSocketHandler) -> str | None:
    """The handshake's token: Authorization, X-Session-Token, the cookie, or ``session_token`` in the URL
    (a browser's WebSocket cannot set headers)."""
    token = APIHandler.find_session_token(cast(APIHandler, handler))
    return token or handler.get_query_argument("session_token", None)


def client_ip(handler: Any) -> str:
    """The caller's address, by the HTTP handlers' rule (trusted proxy hops); ``handler`` has ``config``."""
    return BaseHandler.client_ip(cast(BaseHandler, handler))


@dataclass(frozen=True, slots=True)
class SessionCheck:
    """A session, or the close code and reason that refuse the connection."""

    session: Session | None
    close_code: int = 0
    reason: str = ""

    @classmethod
    async def run(cls, services: Services, token: str | None, ip: str) -> SessionCheck:
        """The session check of every protected route, answered in close codes."""
        checked = services.metrics.reference.session_checked
        if not token:
            checked["missing_token"].inc()
            return cls(None, wire.FORBIDDEN, "Forbidden: missing authentication token")
        if not is_wellformed_session_token(token):
            services.metrics.session_cache.labels("malformed").inc()
            checked["invalid_or_expired"].inc()
            return cls(None, wire.FORBIDDEN, INVALID)
        try:
            session = await services.auth.validate(token, client=ip)
        except ValidationBudgetExceeded:
            services.metrics.session_cache.labels("over_budget").inc()
            return cls(None, wire.TOO_MANY_INITS, "Too many initialisation requests")
        except Exception as exc:  # NoETL could not say: neither valid nor invalid
            checked["validation_error"].inc()
            log.warning("graphql-ws session not checked: %s", type(exc).__name__)
            return cls(None, wire.TRY_AGAIN_LATER, "The session could not be checked; try again later")
        if session is None or session.expired:
            checked["invalid_or_expired"].inc()
            return cls(None, wire.FORBIDDEN, INVALID)
        checked["bypass" if services.config.gateway_auth_bypass else "ok"].inc()
        return cls(session)
