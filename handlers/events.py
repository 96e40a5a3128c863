"""``GET /events``: the SSE stream of live results (CONTRACT §8). The logic lives in gateway/live/hub.py."""

from __future__ import annotations

import logging
import random
from contextlib import aclosing

from tornado.http1connection import HTTP1Connection
from tornado.iostream import StreamClosedError

from gateway.auth.tokens import is_wellformed_session_token
from gateway.live.events import (
    INTERNAL_ERROR,
    PING,
    RATE_LIMITED,
    UNAUTHORIZED,
    error_message,
    format_pos,
    init_message,
    retry_frame,
    sse_frame,
)
from gateway.live.stream import EXPIRED, GONE, REVOKED, SHUTDOWN, SLOW, LiveStream
from handlers.base import APIHandler
from handlers.errors import ApiError

log = logging.getLogger("gateway.events")
_BATCH = 64  # events written with one flush, at most

# After a shutdown, clients come back spread over this window (no reconnect stampede).
RETRY_MIN_MS, RETRY_MAX_MS = 1000, 5000


class EventsHandler(APIHandler):
    """One SSE connection: authenticate, init, replay what was missed, then live events and pings."""

    route_name = "events"
    _stream: LiveStream | None = None

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    async def get(self) -> None:
        token = self.find_session_token() or self.get_query_argument("session_token", None)
        if not token:
            await self._refuse("Missing authentication token")
            return
        if not is_wellformed_session_token(token):
            self.metrics.session_cache.labels("malformed").inc()
            await self._refuse("Invalid or expired session")
            return
        try:
            session = await self.validate_token(token)  # NoETL unreachable: 502/504 JSON (CONTRACT §4)
        except ApiError as exc:
            if exc.status_code != 429:
                raise
            await self._refuse_for_now(exc)
            return
        if session is None or session.expired:
            await self._refuse("Invalid or expired session")
            return
        live = self.services.live
        limit = self.config.gateway_sse_max_per_session
        if live.streams_of_session(session.token_hash) >= limit:
            # A status, not an event: EventSource then stops instead of retrying in a loop.
            self.clear()
            self.set_header("Retry-After", "30")
            self.write_json({"error": f"Too many event streams for this session (limit {limit})"}, status=429)
            return

        client_id = self.get_query_argument("client_id", None) or self.get_query_argument("clientId", None)
        last_event_id = self.request.headers.get("Last-Event-ID") or self.get_query_argument("last_event_id", None)
        opened = await live.open(session, client_id, last_event_id)
        stream = self._stream = opened.stream
        stream.set_force_close(self._drop_connection)
        connection = self._connection()
        if connection is None or connection.stream.closed():
            stream.end(GONE)
        log.info("event stream open: client %s (user %s)", opened.client_id[:8], session.user.user_id)
        try:
            await self._send(
                sse_frame(format_pos(opened.start), "message", init_message(opened.client_id, opened.pending))
            )
            async with aclosing(live.replay(opened)) as missed:
                async for event in missed:
                    if stream.reason is not None:
                        break
                    await self._send(event.frame())
                    live.sent(stream, event)
            stream.go_live()
            await self._pump(stream)
            await self._goodbye(stream)
        except StreamClosedError:
            stream.end(GONE)
        finally:
            live.close_stream(stream)
            log.info("event stream closed: client %s (%s)", opened.client_id[:8], stream.reason)

    async def _pump(self, stream: LiveStream) -> None:
        """Write queued events and pings until the stream ends."""
        live = self.services.live
        while True:
            event = stream.take()
            if event is not None:
                # What is queued goes out in one write (a result and the state frame before it
                # arrive together): one flush, one send, then each is marked sent.
                batch = [event]
                while len(batch) < _BATCH and (more := stream.take()) is not None:
                    batch.append(more)
                await self._send(b"".join(queued.frame() for queued in batch))
                for queued in batch:
                    live.sent(stream, queued)
            elif stream.reason is not None:
                return
            elif stream.ping_due:
                stream.ping_due = False
                await self._send(sse_frame(format_pos(stream.sent_pos), "ping", PING))
                self.metrics.sse_events.labels("ping").inc()
            else:
                await stream.wait()

    async def _goodbye(self, stream: LiveStream) -> None:
        """Last words by reason, then a clean end of the response."""
        last = format_pos(stream.sent_pos)
        if stream.reason == SLOW:
            message = error_message(
                INTERNAL_ERROR,
                "Client too slow: events were not read in time; reconnect with Last-Event-ID to resume",
                {"reason": "slow_consumer", "lastEventId": last, "dropped": stream.dropped},
            )
            await self._send(sse_frame(last, "error", message))
        elif stream.reason == REVOKED:
            await self._send(sse_frame(last, "error", error_message(UNAUTHORIZED, "Session logged out")))
        elif stream.reason == EXPIRED:
            await self._send(sse_frame(last, "error", error_message(UNAUTHORIZED, "Session expired")))
        elif stream.reason == SHUTDOWN:
            await self._send(retry_frame(random.randint(RETRY_MIN_MS, RETRY_MAX_MS)))
        else:
            return  # gone: nobody to talk to
        self.finish()

    async def _send(self, frame: bytes) -> None:
        """Write one frame and wait until it left (backpressure; StreamClosedError when gone)."""
        self.write(frame)
        await self.flush()

    async def _refuse(self, message: str) -> None:
        """Bad session: HTTP 200, one ``event: error`` (-32002), close (CONTRACT §8.3)."""
        self.write(sse_frame("0", "error", error_message(UNAUTHORIZED, message)))
        self.finish()

    async def _refuse_for_now(self, exc: ApiError) -> None:
        """Over the session-check budget: HTTP 200 like every refusal (§8.3), a ``retry:`` hint so
        EventSource comes back no sooner than ``Retry-After``, one ``event: error`` (-32004), close."""
        retry_after = int(exc.headers.get("Retry-After", "1"))
        self.set_header("Retry-After", str(retry_after))
        self.write(retry_frame(retry_after * 1000))
        data = {"reason": "rate_limited", "retryAfter": retry_after}
        self.write(sse_frame("0", "error", error_message(RATE_LIMITED, exc.public, data)))
        self.finish()

    def _drop_connection(self) -> None:
        """A slow client that stopped reading does not get to keep the socket."""
        connection = self._connection()
        if connection is not None:
            # The IOStream, not HTTP1Connection.close(): that one forgets the pending flush's
            # future, which would leave the writer waiting forever.
            connection.stream.close()

    def _connection(self) -> HTTP1Connection | None:
        connection = self.request.connection
        return connection if isinstance(connection, HTTP1Connection) else None

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if self._stream is not None:
            self._stream.end(GONE)


default_handlers = [
    (r"/events", EventsHandler),
]
