"""``/noetl/{path}`` → ``{NOETL_BASE_URL}/api/{path}``: the streaming, authenticated proxy (CONTRACT §4).

The session is checked in ``prepare()``, before a byte of the body is read; the body then
streams to NoETL as it arrives and the answer streams back as it arrives (every flush
awaited), so the gateway's memory stays flat whatever the size. What is forwarded and
what is not: docs/proxy.md.
"""

# layout: over 300 lines, and ProxyHandler over 250: one streaming state machine (prepare, data_received,
# forward, relay) whose steps share the exchange, the body counters and the client-gone state.
from __future__ import annotations

import asyncio
import logging
from http.client import responses
from typing import Any

import aiohttp
from tornado.iostream import StreamClosedError
from tornado.web import stream_request_body

from gateway.access.redaction import (
    REDACTED_ANSWER_DROPS,
    RedactionError,
    StreamRedactor,
    checkable_request_headers,
    sees_credentials,
    uncheckable_answer,
)
from gateway.access.refusals import AccessRefusal
from gateway.config import GatewayConfig
from gateway.noetl.client import UpstreamFailure
from gateway.noetl.exchange import ProxyExchange
from gateway.noetl.headers import client_response_headers, upstream_request_headers
from gateway.noetl.paths import canonical_path, unsafe_path_reason, upstream_url
from gateway.noetl.shards import Route
from handlers.base import AuthenticatedHandler
from handlers.deadlines import stream_of
from handlers.errors import ApiError
from handlers.http_headers import header_value
from handlers.json_body import decode_json_body

log = logging.getLogger("gateway.proxy")

PREFIX = "/noetl/"
# Answers up to this size are read whole and sent in one write (one syscall for headers
# and body); larger or unsized ones are streamed chunk by chunk.
SMALL_BODY_BYTES = 64 * 1024
# Tornado's own body limit sits above ours, so our 413 (JSON) answers first.
_TORNADO_LIMIT_SLACK = 1 << 20


@stream_request_body
class ProxyHandler(AuthenticatedHandler):
    """Every method except OPTIONS (the gateway's CORS preflight) is forwarded."""

    route_name = "proxy"

    # Per-request state starts as these class defaults (one instance attribute each, set when it
    # changes: cheaper than assigning all of them in initialize() on every request).
    _exchange: ProxyExchange | None = None
    _redacted = True  # decided once the session is known; until then, the safe side
    _buffer: bytearray | None = None
    _upstream_target: tuple[Any, list[tuple[str, str]]] | None = None
    _buffer_limit = 0
    _check_start = False  # the buffered body names a playbook to check (access.needs_body_check)
    _route = Route("")  # the NoETL server this call goes to (gateway.noetl.shards)
    _route_by_body = False  # sharded event post: the buffered body names the shard
    _received = 0
    _relayed = 0
    _client_gone = False
    _body_done = False
    _waiting_task: asyncio.Task[Any] | None = None
    _answer_started = False

    def compute_etag(self) -> str | None:
        """NoETL's ETag passes through; Tornado must not invent one (or answer 304 itself)."""
        return None

    def check_etag_header(self) -> bool:
        """False, as Tornado's own check is here: ``finish()`` asks only when NoETL sent no ETag,
        and with no ETag of ours there is nothing to match (saves parsing ``If-None-Match``)."""
        return False

    # -- before the body -------------------------------------------------------------------

    async def prepare(self) -> None:
        """Session, path safety and size first; then the upstream call starts.

        A refusal raised here is answered by BaseHandler once a small body is read and dropped
        (``_defer_until_body_read``); ``data_received`` below drops it.
        """
        await super().prepare()
        method = self.request.method or "GET"
        if method == "OPTIONS":
            return
        raw_path = self.request.path[len(PREFIX) :]
        reason = unsafe_path_reason(raw_path)
        if reason is not None:
            raise ApiError(400, reason)
        assert self.session is not None and self.session_token is not None
        canonical = canonical_path(raw_path)
        access = self.services.access
        try:
            access.check_route(method, canonical, self.session.user.roles)
            await access.check_url_start(self.session_token, method, canonical, raw_path)
        except AccessRefusal as exc:
            raise ApiError(exc.status, exc.public) from None
        self._start_upstream(method, raw_path, canonical)

    def _start_upstream(self, method: str, raw_path: str, canonical: str) -> None:
        """Headers, URL and the exchange of a call the access checks let through (no await here:
        one coroutine less on every proxied call)."""
        request = self.request
        session = self.session
        assert session is not None
        services = self.services
        config = services.config
        access = services.access
        # Non-admins never read the credentials the gateway put into workloads (docs/proxy.md).
        self._redacted = redacted = not sees_credentials(session.user.roles, config.gateway_admin_roles)
        declared = self.declared_body_length()  # over body_limit(): refused in BaseHandler.prepare already
        chunked = "chunked" in (header_value(request.headers, "Transfer-Encoding") or "").lower()
        connection = request.connection
        set_limit = getattr(connection, "set_max_body_size", None)
        if set_limit is not None:
            set_limit(self.body_limit() + _TORNADO_LIMIT_SLACK)
        stream = stream_of(connection)
        if stream is not None:  # a big upload may take longer than a JSON body may
            self.connection_deadlines.extend_body(stream, config.gateway_proxy_body_timeout_secs)
        user = session.user
        headers = upstream_request_headers(
            request.headers.get_all(),
            user_id=str(user.user_id),
            user_email=user.email,
            request_id=self.request_id,
            peer_ip=request.remote_ip or "",
            scheme=request.protocol,
            host=request.host,
            trust_forwarded=config.gateway_trusted_proxy_hops > 0,
        )
        if declared is not None and not chunked:
            headers.append(("Content-Length", str(declared)))
        router = services.noetl.router
        self._route = route = router.for_path(canonical)
        url = upstream_url(route.base_url, raw_path, request.query)
        check_start = access.needs_body_check(method, canonical)
        route_by_body = router.needs_body(method, canonical)
        if check_start or route_by_body:
            self._check_start = check_start
            self._route_by_body = route_by_body
            # Read whole (bounded) before anything is sent: the body decides whether or where it goes.
            limit = config.gateway_max_body_bytes
            if not check_start:
                limit = config.gateway_shard_body_max_bytes
            if declared is not None and declared > limit:
                raise self.body_too_large(limit)
            self._buffer_limit = limit
            self._buffer = bytearray()
            self._upstream_target = (url, headers)
            return
        self._exchange = exchange = self._new_exchange(
            url, headers, streamed_body=chunked or bool(declared), redacted=redacted, config=config
        )
        if exchange.pipe is not None:
            # The body streams to NoETL while it arrives, so the call starts now, in the background.
            exchange.start()
            exchange.add_done_callback(self._upstream_settled)

    def body_limit(self) -> int:
        """The proxy's own limit; Tornado's is raised to it only once the session is valid."""
        return self.config.gateway_proxy_max_body_bytes

    def _new_exchange(
        self,
        url: Any,
        headers: list[tuple[str, str]],
        *,
        streamed_body: bool,
        redacted: bool,
        config: GatewayConfig,
    ) -> ProxyExchange:
        if redacted:
            headers = checkable_request_headers(headers)
        return ProxyExchange(
            self.services.http,
            self.request.method or "GET",
            url,
            headers,
            connect_timeout=config.noetl_connect_timeout_secs,
            idle_timeout=config.gateway_proxy_timeout_secs,
            streamed_body=streamed_body,
            route=self._route,
        )

    # -- while the body arrives ------------------------------------------------------------

    async def data_received(self, chunk: bytes) -> None:
        """Count, bound, and pass each chunk on; awaiting here is the backpressure."""
        if self._finished or self._client_gone:
            return
        self._received += len(chunk)
        if self._deferred_error is not None:  # refused before the body (BaseHandler): drop it
            if self._received > self._drop_allowance:
                self._answer_during_body(self._deferred_error)
            return
        if self._received > self.body_limit():
            self._answer_early(self.body_too_large())
            return
        if self._buffer is not None:
            if self._received > self._buffer_limit:
                self._answer_early(self.body_too_large(self._buffer_limit))
                return
            self._buffer += chunk
            return
        if self._exchange is None or self._exchange.pipe is None:
            return
        try:
            await self._exchange.feed(chunk)
        except UpstreamFailure as exc:
            self._answer_early(exc)

    def _upstream_settled(self, exchange: ProxyExchange) -> None:
        """NoETL failed while the client was still sending: answer now, not after the whole body."""
        failure = exchange.failure()
        if failure is not None and not self._body_done and not self._finished and not self._client_gone:
            self._answer_early(failure)

    def _answer_early(self, error: ApiError | UpstreamFailure) -> None:
        """Stop the upstream call, then answer before the body is complete (BaseHandler's way)."""
        if self._exchange is not None:
            self._exchange.abort("request refused by the gateway")
        self._answer_during_body(error)

    def on_connection_close(self) -> None:
        """The client left: cancel the upstream request at once."""
        self._client_gone = True
        if self._exchange is not None:
            self._exchange.abort("client disconnected")
        if self._waiting_task is not None:
            self._waiting_task.cancel()  # it may be waiting for NoETL's first byte
        if not self._finished:
            log.info("client left during %s %s; upstream request cancelled", self.request.method, self.request.path)
        super().on_connection_close()

    # -- after the body --------------------------------------------------------------------

    async def get(self, *_args: str) -> None:
        """Forward (every method shares this; no coroutine of its own in between: one frame less
        for every resumption while NoETL's answer arrives)."""
        if self._finished or self._client_gone:
            return
        self._body_done = True
        body: bytes | None = None
        if self._buffer is not None:
            body = bytes(self._buffer)
            self._buffer = None
            if self._check_start:
                await self._check_execute_access(body)
            assert self._upstream_target is not None
            url, headers = self._upstream_target
            if self._route_by_body:
                raw_path = self.request.path[len(PREFIX) :]
                self._route = self.services.noetl.router.for_call(canonical_path(raw_path), body)
                url = upstream_url(self._route.base_url, raw_path, self.request.query)
            self._exchange = self._new_exchange(
                url, headers, streamed_body=False, redacted=self._redacted, config=self.config
            )
        assert self._exchange is not None
        self._exchange.body_complete()
        self._waiting_task = asyncio.current_task()
        try:
            await self._relay_response(self._exchange, body)
        except asyncio.CancelledError:
            # on_connection_close() cancelled this task (or the background call it awaited):
            # the client is gone, which is not an error of this request.
            task = asyncio.current_task()
            if not self._client_gone:
                raise
            if task is not None and task.cancelling():
                task.uncancel()
        finally:
            self._waiting_task = None
        if self._client_gone and not self._answer_started:
            self.set_status(499, "Client Closed Request")  # what the access log shows (nginx's code)

    head = post = put = patch = delete = get

    async def _check_execute_access(self, body: bytes) -> None:
        """A start (POST /noetl/execute …) is checked on the playbook it will really run."""
        data = decode_json_body(body, None)  # NoETL reads JSON whatever the Content-Type says
        assert self.session_token is not None
        try:
            await self.services.access.check_body_start(self.session_token, data)
        except AccessRefusal as exc:
            raise ApiError(exc.status, exc.public) from None

    async def _relay_response(self, exchange: ProxyExchange, body: bytes | None) -> None:
        """Status, headers, then the body as it arrives; a broken body aborts the connection.

        For a non-admin the body passes through a ``StreamRedactor`` (credential values hidden,
        a small carry-over between chunks), so its length is not known up front: it goes out
        chunked, or with its new length when it is small enough to be read whole.
        """
        try:
            response = await exchange.response(body)
            redactor = StreamRedactor() if self._redacted else None
            if redactor is not None:
                refusal = uncheckable_answer(response.status, response.headers.get("Content-Encoding"))
                if refusal is not None:
                    raise ApiError(502, refusal)
            self._copy_status_and_headers(response, redacted=redactor is not None)
            self._answer_started = True  # NoETL's status is the answer's now (the access log keeps it)
            if self.request.method == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200:
                await self.flush()
                self.finish()
                return
            length = response.content_length
            if length is not None and length <= SMALL_BODY_BYTES:
                content = await response.read()
                self._relayed += len(content)
                self.finish(content if redactor is None else redactor.feed(content) + redactor.finish())
                return
            await self.flush()  # headers now: a live stream must not wait for its first chunk
            while chunk := await response.content.readany():
                self._relayed += len(chunk)
                self.write(chunk if redactor is None else redactor.feed(chunk))
                await self.flush()
            if redactor is not None:
                self.write(redactor.finish())
            self.finish()
        except (aiohttp.ClientError, TimeoutError) as exc:
            if self._client_gone:
                return  # abort() closed the upstream response under us
            # Headers are out; a clean end would present a truncated body as complete.
            log.warning(
                "NoETL response broke off after %d bytes (%s); closing the client connection",
                self._relayed,
                type(exc).__name__,
            )
            self.services.metrics.upstream_errors.labels("ProxyBodyBroken").inc()
            self._drop_client_connection()
        except RedactionError as exc:
            # Headers are out: the client sees a transfer error, never an unchecked remainder.
            log.warning("NoETL answer could not be checked for credentials (%s); closing the client connection", exc)
            self._drop_client_connection()
        except StreamClosedError:
            self._client_gone = True  # on_connection_close() cancels the upstream side
        finally:
            exchange.close()

    def _drop_client_connection(self) -> None:
        self._client_gone = True
        close = getattr(self.request.connection, "close", None)
        if close is not None:
            close()

    def _copy_status_and_headers(self, response: aiohttp.ClientResponse, *, redacted: bool = False) -> None:
        status, reason = response.status, response.reason
        if reason == responses.get(status) or not (reason and reason.isascii()):
            reason = None  # Tornado's own phrase for the status (and no check of a standard one)
        self.set_status(status, reason)
        self.clear_header("Content-Type")  # Tornado's default; NoETL's own (if any) follows
        seen: set[str] = set()
        for name, lower, value in client_response_headers(response.raw_headers, self._route.base_url):
            if redacted and lower in REDACTED_ANSWER_DROPS:
                continue  # they describe NoETL's bytes, not the redacted ones
            try:
                if lower in seen or lower == "vary":  # added to the gateway's own Vary: Origin
                    self.add_header(name, value)
                else:
                    seen.add(lower)
                    self.set_header(name, value)
            except ValueError:  # Tornado refuses control characters (a tab) in a value
                log.warning("dropped response header %s from NoETL: value not sendable", name)

    def on_finish(self) -> None:
        """Count what was relayed."""
        metrics = self.services.metrics
        if self._received:
            metrics.proxy_bytes_up.inc(self._received)
        if self._relayed:
            metrics.proxy_bytes_down.inc(self._relayed)
        super().on_finish()


default_handlers: list[tuple[str, Any]] = [(r"/noetl/(.*)", ProxyHandler)]
