"""``/graphql/stream``: GraphQL over Server-Sent Events, graphql-sse's "distinct connections" mode.

One operation per request — ``POST`` with the GraphQL-over-HTTP JSON body, or ``GET`` with query
parameters (never a mutation: 405) — answered as ``text/event-stream``: ``event: next`` with each
execution result, then ``event: complete`` (with an empty ``data:`` line, for EventSource).
Refusals of the operation (parse, validation, not found, access, limits) are ``next`` events with
``errors`` too, as the protocol asks; a missing or invalid session is the HTTP 401 of every route.
The client ends a subscription by closing the connection.

Like ``/events``: each frame is flushed with Tornado's ``flush()`` and awaited (backpressure; one
result waits at most while the client reads), a comment line every
``GATEWAY_HEARTBEAT_INTERVAL_SECS`` keeps proxies from closing an idle stream, and the stream ends
when the session does (logout on any replica, expiry: a last ``next`` with an ``UNAUTHENTICATED``
error) or the gateway stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import orjson
from graphql import OperationType
from tornado.iostream import StreamClosedError

from gateway.live.stream import EXPIRED, REVOKED
from handlers.base import APIHandler
from handlers.errors import ApiError
from handlers.graphql_http import GraphQLRequest, request_from_json, request_from_params
from handlers.json_body import RequestProblem
from schema.context import RequestContext
from schema.engine import GraphQLEngine
from schema.errors import UNAUTHENTICATED, simple_error
from schema.operations import Refused, Single, Stream, error_body, operation_type, start_operation

log = logging.getLogger("gateway.graphql_sse")

_ENDED = {REVOKED: "Session logged out", EXPIRED: "Session expired"}


class GraphQLStreamHandler(APIHandler):
    """One operation, its results as SSE (see module doc)."""

    route_name = "graphql_stream"
    _pump: asyncio.Task[None] | None = None
    _ended: str | None = None

    @property
    def engine(self) -> GraphQLEngine:
        return cast(GraphQLEngine, self.settings["graphql"])

    async def get(self) -> None:
        """An operation from the URL's query parameters (queries and subscriptions)."""
        await self.require_session()
        request = self._read(lambda: request_from_params(self.request.query_arguments))
        assert request.query is not None  # _read refused a hash-only request
        if operation_type(self.engine, request.query, request.operation_name) is OperationType.MUTATION:
            raise ApiError(405, "Mutations are not allowed over GET; use POST.", headers={"Allow": "POST"})
        await self._serve(request)

    async def post(self) -> None:
        """An operation from a JSON body."""
        self.check_cookie_origin()
        await self.require_session()
        body, content_type = self.request.body or b"", self.request.headers.get("Content-Type")
        await self._serve(self._read(lambda: request_from_json(body, content_type)))

    def _read(self, read: Callable[[], GraphQLRequest]) -> GraphQLRequest:
        try:
            request = read()
        except RequestProblem as exc:
            raise ApiError(exc.status, exc.public) from None
        if request.query is None:  # a persisted query's hash alone is for POST/GET /graphql
            raise ApiError(400, "Field 'query' is required")
        return request

    async def _serve(self, request: GraphQLRequest) -> None:
        assert self.session is not None and self.session_token is not None
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        context = RequestContext(self.services, self.session, self.session_token, self.request_id)
        assert request.query is not None  # _read refused a hash-only request
        started = await start_operation(self.engine, request.query, request.variables, request.operation_name, context)
        try:
            if isinstance(started, Refused):
                await self._event("next", {"errors": started.errors})
            elif isinstance(started, Single):
                await self._event("next", started.body)
            else:
                await self.flush()  # the headers now: the client knows the subscription is accepted
                if not await self._stream(started):
                    return
            await self._event("complete", None)
            self.finish()
        except StreamClosedError:
            return

    async def _stream(self, stream: Stream) -> bool:
        """Results until the stream ends; False when the client left (nothing more to write)."""
        subscribers = self.services.subscriptions.subscribers
        assert self.session is not None
        attachment = subscribers.attach(self.session, self._session_ended)
        self._pump = asyncio.create_task(self._pump_results(stream))
        try:
            await asyncio.wait([self._pump])
        finally:
            attachment.detach()
            await stream.aclose()
        if self._ended is not None:
            message = _ENDED.get(self._ended, "The gateway is restarting; subscribe again")
            code = UNAUTHENTICATED if self._ended in _ENDED else "SUBSCRIPTION_ENDED"
            await self._event("next", {"errors": [simple_error(message, code)]})
            return True
        if self._pump.cancelled():
            return False  # the client went away
        failure = self._pump.exception()
        if isinstance(failure, StreamClosedError):
            return False
        if failure is not None:
            await self._event("next", error_body(failure, self.request_id))
        return True

    async def _pump_results(self, stream: Stream) -> None:
        """Write each result as it comes, and a heartbeat comment while none does."""
        results: asyncio.Queue[Any] = asyncio.Queue(1)  # the reader waits while the client reads

        async def read() -> None:
            try:
                async for body in stream:
                    await results.put(body)
                await results.put(None)
            except Exception as exc:
                await results.put(exc)

        reader = asyncio.create_task(read())
        heartbeat = self.config.gateway_heartbeat_interval_secs
        try:
            while True:
                try:
                    async with asyncio.timeout(heartbeat):
                        item = await results.get()
                except TimeoutError:
                    await self._send(b": ping\n\n")
                    continue
                if item is None:
                    return
                if isinstance(item, Exception):
                    raise item
                await self._event("next", item)
        finally:
            reader.cancel()
            await asyncio.wait([reader])

    def _session_ended(self, reason: str) -> None:
        self._ended = reason
        if self._pump is not None:
            self._pump.cancel()

    async def _event(self, name: str, payload: Any) -> None:
        data = b"" if payload is None else orjson.dumps(payload)
        await self._send(b"event: %s\ndata: %s\n\n" % (name.encode(), data))

    async def _send(self, frame: bytes) -> None:
        """Write one frame and wait until it left (backpressure; StreamClosedError when gone)."""
        self.write(frame)
        await self.flush()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if self._pump is not None:
            self._pump.cancel()


default_handlers = [(r"/graphql/stream", GraphQLStreamHandler)]
