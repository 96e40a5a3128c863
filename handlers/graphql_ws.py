"""GraphQL over WebSocket on ``/graphql`` (protocol ``graphql-transport-ws``, the npm ``graphql-ws`` client).

The route is the HTTP handler's path; :class:`WebSocketUpgrade` (registered before it,
handlers/__init__.py) sends only ``Upgrade: websocket`` requests here.

* Handshake: the ``Origin`` a browser sends must be one of ``CORS_ALLOWED_ORIGINS`` or this
  gateway's own (GraphiQL), else 403 — a page elsewhere cannot ride on the session cookie
  (cross-site WebSocket hijacking). The subprotocol must be ``graphql-transport-ws`` (else 4406).
* ``connection_init`` within ``GATEWAY_WS_INIT_TIMEOUT_SECS`` (4408), once (4429): the session token
  from its payload, else the handshake's ``Authorization``/``X-Session-Token``, cookie or
  ``session_token`` query parameter. Missing, invalid or expired → 4403; NoETL unreachable → 1013.
  ``connection_ack`` carries ``{"clientId"}``: the connection is a live client of its session
  (``executePlaybook`` over the socket defaults its ``clientId`` to it).
* ``subscribe``: queries and mutations (one ``next``, ``complete``), subscriptions (``next`` per
  event, ``complete`` at the end), refusals as ``error``; before the ack → 4401, a running id →
  4409; more than ``GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION`` → an ``error`` for that one.
* The session ends (logout on any replica, expiry): 4403 at once; every pong re-checks revocation.
  Dead peers: WebSocket pings every ``GATEWAY_WS_PING_INTERVAL_SECS``. The gateway stops: 1001.

Memory: most sockets sit idle with one subscription, so once upgraded a connection keeps only what
it uses later — the handshake's token and client address, not its request headers or HTTP/1
connection objects (``_shed_handshake``) — and one ``RequestContext`` shared by its operations.
No permessage-deflate: ``get_compression_options`` stays Tornado's ``None``, so no zlib state is
allocated per socket whatever the client offers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from tornado.httputil import HTTPHeaders
from tornado.routing import PathMatches
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from gateway.auth.sessions import Session
from gateway.errors import TooManySubscriptions
from gateway.live.stream import EXPIRED, REVOKED
from gateway.live.subscribers import Attachment
from gateway.logging import request_id_var
from handlers import graphql_ws_protocol as wire
from handlers.app_services import AppServices
from handlers.graphql_http import GraphQLRequest
from handlers.graphql_ws_auth import SessionCheck, check_handshake, client_ip, find_handshake_token
from handlers.graphql_ws_protocol import ProtocolViolation
from schema.context import RequestContext
from schema.engine import GraphQLEngine
from schema.errors import RATE_LIMITED, simple_error
from schema.operations import Refused, Single, error_body, start_operation

log = logging.getLogger("gateway.graphql_ws")


class WebSocketUpgrade(PathMatches):
    """The path, for ``Upgrade: websocket`` requests only: plain HTTP falls through to the next rule."""

    def match(self, request: Any) -> dict[str, Any] | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None
        return super().match(request)


class GraphQLWebSocketHandler(AppServices, WebSocketHandler):
    """One graphql-ws connection (see module doc)."""

    route_name = "graphql_ws"

    def initialize(self) -> None:
        self.session: Session | None = None
        self.client_id: str | None = None
        self.request_id = "-"
        self._init_seen = False
        self._init_timer: asyncio.TimerHandle | None = None
        self._handshake: tuple[str | None, str] = (None, "")  # its token and client address, for connection_init
        self._context: RequestContext | None = None  # every operation's, from the ack on
        self._attachment: Attachment | None = None
        self._operations: dict[str, asyncio.Task[None]] = {}

    @property
    def engine(self) -> GraphQLEngine:
        return cast(GraphQLEngine, self.settings["graphql"])

    # -- handshake -------------------------------------------------------------------------

    @property
    def ping_interval(self) -> float | None:
        return self.services.config.gateway_ws_ping_interval_secs or None

    @property
    def ping_timeout(self) -> float | None:
        return self.ping_interval

    @property
    def max_message_size(self) -> int:
        return self.services.config.gateway_ws_max_message_bytes

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Refuse a foreign Origin with a JSON 403 before upgrading."""
        self.request_id = check_handshake(self, self.services)
        if self._finished:
            return
        await super().get(*args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        return True  # decided in get() (check_handshake), with the gateway's own rule

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return wire.PROTOCOL if wire.PROTOCOL in subprotocols else None

    def open(self, *args: str, **kwargs: str) -> None:
        if self.selected_subprotocol != wire.PROTOCOL:
            self.close(wire.SUBPROTOCOL_NOT_ACCEPTABLE, "Subprotocol not acceptable")
            return
        # Each message is small and wanted now (events): no Nagle delay (measured: +40 ms per event without).
        self.set_nodelay(True)
        self._handshake = (find_handshake_token(self), client_ip(self))
        self._shed_handshake()
        timeout = self.services.config.gateway_ws_init_timeout_secs
        self._init_timer = asyncio.get_running_loop().call_later(timeout, self._init_timed_out)

    def _shed_handshake(self) -> None:
        """Let go of the upgrade's request and response headers and HTTP/1 connection objects.

        ≈ 4 KB a socket (bench/subscriptions_bench.py). After the upgrade Tornado reads none of them:
        the socket is detached, and log lines use the request's method, URI and address, which stay.
        The request headers are emptied in place (Tornado's ``get`` still holds that object while
        the socket lives); ``server_connection`` would keep the finished HTTP/1 serving task.
        """
        request = self.request
        request.headers.clear()
        request.connection = None
        request.server_connection = None
        self._headers = HTTPHeaders()  # the 101 response's, sent: Tornado's attribute, reset as clear() does

    def _init_timed_out(self) -> None:
        self._init_timer = None
        if self.session is None:
            self.close(wire.INIT_TIMEOUT, "Connection initialisation timeout")

    # -- messages --------------------------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        try:
            await self._handle(wire.parse_message(message))
        except ProtocolViolation as exc:
            self.close(exc.code, exc.reason)

    async def _handle(self, message: wire.Message) -> None:
        if message.type == "connection_init":
            await self._connection_init(message.payload)
        elif message.type == "ping":
            await self._send(wire.encode("pong", payload=message.payload))
        elif message.type == "pong":
            return
        elif message.type == "subscribe":
            self._subscribe(message)
        elif message.type == "complete":
            assert message.id is not None
            task = self._operations.pop(message.id, None)
            if task is not None:
                task.cancel()
        else:
            raise ProtocolViolation(wire.INVALID_MESSAGE, f'Invalid message received: unknown type "{message.type}"')

    async def _connection_init(self, payload: Any) -> None:
        if self._init_seen:
            raise ProtocolViolation(wire.TOO_MANY_INITS, "Too many initialisation requests")
        self._init_seen = True
        handshake_token, ip = self._handshake
        self._handshake = (None, "")
        token = wire.token_of_init(payload) or handshake_token
        check = await SessionCheck.run(self.services, token, ip)
        if check.session is None or token is None:
            raise ProtocolViolation(check.close_code, check.reason)
        if self.ws_connection is None:  # the peer left while the session was checked
            return
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None
        self.session = check.session
        subscribers = self.services.subscriptions.subscribers
        self._attachment = subscribers.attach(check.session, self._session_ended)
        self.client_id = subscribers.lease_client(check.session)
        self._context = RequestContext(self.services, check.session, token, self.request_id, self.client_id)
        log.info("graphql-ws open: client %s (user %s)", self.client_id[:8], check.session.user.user_id)
        await self._send(wire.encode("connection_ack", payload={"clientId": self.client_id}))

    def _subscribe(self, message: wire.Message) -> None:
        if self.session is None:
            raise ProtocolViolation(wire.UNAUTHORIZED, "Unauthorized")
        assert message.id is not None
        if message.id in self._operations:
            raise ProtocolViolation(wire.SUBSCRIBER_EXISTS, f"Subscriber for {message.id} already exists")
        request = wire.subscribe_request(message.payload)
        self._operations[message.id] = asyncio.create_task(self._run(message.id, request))

    async def _run(self, op_id: str, request: GraphQLRequest) -> None:
        """One operation to its end; removed from the running ones however it ends."""
        try:
            limit = self.config.gateway_max_subscriptions_per_connection
            if len(self._operations) > limit:  # this one included
                refusal = TooManySubscriptions(limit, "connection")
                await self._send(wire.encode("error", op_id, [simple_error(refusal.public, RATE_LIMITED)]))
                return
            assert self._context is not None and request.query is not None  # acked; subscribe_request checked
            started = await start_operation(
                self.engine, request.query, request.variables, request.operation_name, self._context
            )
            del request  # the text and variables stay only where the operation needs them
            if isinstance(started, Refused):
                await self._send(wire.encode("error", op_id, started.errors))
                return
            if isinstance(started, Single):
                await self._send(wire.encode("next", op_id, started.body))
                await self._send(wire.encode("complete", op_id))
                return
            try:
                async for body in started:
                    await self._send(wire.encode("next", op_id, body))
            except WebSocketClosedError:
                return
            except Exception as exc:
                await self._send(wire.encode("next", op_id, error_body(exc, self.request_id)))
            finally:
                await started.aclose()
            await self._send(wire.encode("complete", op_id))
        except WebSocketClosedError:
            pass
        finally:
            if self._operations.get(op_id) is asyncio.current_task():
                del self._operations[op_id]

    async def _send(self, frame: bytes) -> None:
        """One message, awaited until written (backpressure); WebSocketClosedError when gone."""
        await self.write_message(frame)

    # -- the end ---------------------------------------------------------------------------

    def on_pong(self, data: bytes) -> None:
        if self.session is not None and self.services.subscriptions.subscribers.is_revoked(self.session.token_hash):
            self._session_ended(REVOKED)  # a logout made while NATS was away

    def _session_ended(self, reason: str) -> None:
        if reason == REVOKED:
            self.close(wire.FORBIDDEN, "Forbidden: session logged out")
        elif reason == EXPIRED:
            self.close(wire.FORBIDDEN, "Forbidden: session expired")
        else:
            self.close(wire.GOING_AWAY, "The gateway is stopping")

    def on_close(self) -> None:
        token = request_id_var.set(self.request_id)
        try:
            if self._init_timer is not None:
                self._init_timer.cancel()
            for task in self._operations.values():
                task.cancel()
            self._operations.clear()
            if self._attachment is not None:
                self._attachment.detach()
            if self.client_id is not None:
                self.services.subscriptions.subscribers.return_client(self.client_id)
                log.info("graphql-ws closed: client %s (%s)", self.client_id[:8], self.close_code)
        finally:
            request_id_var.reset(token)


default_handlers = [(WebSocketUpgrade(r"/graphql/?"), GraphQLWebSocketHandler)]
