"""One proxied exchange with NoETL: the upstream call, its streamed body, its failures.

The upstream request starts as soon as the client's headers are in, with a body that is
fed chunk by chunk while the client is still sending (``BodyPipe``: bounded, so a slow
NoETL slows the client down instead of filling the gateway's memory). Failures are
mapped once, here: unreachable → ``UpstreamUnavailable`` (502), no answer in time →
``UpstreamTimeout`` (504). The shared aiohttp session is the one of ``Services``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from yarl import URL

from gateway.noetl.client import UpstreamFailure, UpstreamTimeout, UpstreamUnavailable, proxy_session
from gateway.noetl.shards import Route

log = logging.getLogger("gateway.proxy")

# How often a blocked producer checks whether NoETL still reads the body at all.
_STALL_POLL_SECS = 0.5


class ProxyAborted(Exception):
    """The exchange was given up (client gone, body refused); the upstream body must not end cleanly."""


class BodyPipe:
    """Bounded hand-off of request-body chunks from Tornado (producer) to aiohttp (consumer)."""

    def __init__(self, max_chunks: int = 16) -> None:
        self._chunks: deque[bytes] = deque()
        self._max_chunks = max_chunks
        self._eof = False
        self._error: BaseException | None = None
        self._closed = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    @property
    def closed(self) -> bool:
        """True once the consumer stopped reading (body sent, or the upstream call ended)."""
        return self._closed

    async def put(self, chunk: bytes, *, stall_timeout: float, consumer_alive: Callable[[], bool]) -> bool:
        """Queue a chunk, waiting while the pipe is full; False if the consumer is gone."""
        waited = 0.0
        while len(self._chunks) >= self._max_chunks and not self._closed:
            self._writable.clear()
            try:
                await asyncio.wait_for(self._writable.wait(), _STALL_POLL_SECS)
            except TimeoutError:
                waited += _STALL_POLL_SECS
                if not consumer_alive():
                    self.close()
                elif waited >= stall_timeout:
                    raise UpstreamTimeout("NoETL stopped reading the request body") from None
        if self._closed:
            return False
        self._chunks.append(chunk)
        self._readable.set()
        return True

    def finish(self) -> None:
        """The client's body is complete."""
        self._eof = True
        self._readable.set()

    def fail(self, error: BaseException) -> None:
        """Make the consumer raise: a truncated body must never look complete upstream."""
        self._error = error
        self._readable.set()

    def close(self) -> None:
        """The consumer is gone: drop what is queued and unblock the producer."""
        self._closed = True
        self._chunks.clear()
        self._writable.set()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as aiohttp pulls it."""
        try:
            while True:
                if self._error is not None:
                    raise self._error
                if self._chunks:
                    chunk = self._chunks.popleft()
                    self._writable.set()
                    yield chunk
                elif self._eof:
                    return
                else:
                    self._readable.clear()
                    await self._readable.wait()
        finally:
            self.close()


def _retrieve(task: asyncio.Task[aiohttp.ClientResponse]) -> None:
    """Mark a failure as seen: a client that left never awaits it."""
    if not task.cancelled():
        task.exception()


class ProxyExchange:
    """The upstream side of one proxied request."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        method: str,
        url: URL,
        headers: list[tuple[str, str]],
        *,
        connect_timeout: float,
        idle_timeout: float,
        streamed_body: bool,
        route: Route | None = None,
    ) -> None:
        # Its defaults carry the idle timeout (sock_read) and the headers aiohttp must not invent.
        self._http = proxy_session(http, connect_timeout, idle_timeout)
        self._route = route or Route(str(url))
        self._method = method
        self._url = url
        self._headers = headers
        self.idle_timeout = idle_timeout
        self.pipe = BodyPipe() if streamed_body else None
        self._task: asyncio.Task[aiohttp.ClientResponse] | None = None
        self._response: aiohttp.ClientResponse | None = None
        self.sent_bytes = 0

    def start(self) -> None:
        """Send the request now, in the background: the streamed body follows through ``feed``."""
        assert self.pipe is not None
        self._task = asyncio.ensure_future(self._open(self.pipe.chunks()))
        self._task.add_done_callback(_retrieve)

    @property
    def started(self) -> bool:
        """True once the request went out in the background (``start``)."""
        return self._task is not None

    def add_done_callback(self, callback: Callable[[ProxyExchange], None]) -> None:
        """Call ``callback(self)`` once NoETL answered or the call failed."""
        assert self._task is not None
        self._task.add_done_callback(lambda _task: callback(self))

    def failure(self) -> UpstreamFailure | None:
        """The mapped failure if the call has already failed."""
        task = self._task
        if task is None or not task.done() or task.cancelled():
            return None
        exc = task.exception()
        return exc if isinstance(exc, UpstreamFailure) else None

    async def _open(self, data: AsyncIterator[bytes] | bytes | None) -> aiohttp.ClientResponse:
        try:
            response = await self._http.request(
                self._method, self._url, headers=self._headers, data=data, allow_redirects=False
            )
        except TimeoutError:
            server = self._route.server("NoETL")
            log.warning("%s did not answer %s /api/... within %gs", server, self._method, self.idle_timeout)
            raise UpstreamTimeout(f"{server} did not answer in time") from None
        except ProxyAborted:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            if isinstance(exc.__cause__, ProxyAborted) or isinstance(exc.__context__, ProxyAborted):
                raise ProxyAborted("request body aborted") from None
            log.warning("%s unreachable for the proxy: %s", self._route.server(), type(exc).__name__)
            raise UpstreamUnavailable(f"{self._route.server()} is unreachable") from None
        self._response = response
        return response

    async def feed(self, chunk: bytes) -> None:
        """Pass one chunk of the client's body on (waits while NoETL is slower than the client)."""
        assert self.pipe is not None
        if await self.pipe.put(chunk, stall_timeout=self.idle_timeout, consumer_alive=self._consumer_alive):
            self.sent_bytes += len(chunk)

    def _consumer_alive(self) -> bool:
        task = self._task
        if task is None or not task.done():
            return True
        if task.cancelled() or task.exception() is not None:
            return False
        return task.result().content.exception() is None

    def body_complete(self) -> None:
        """The client's body ended; let the upstream body end too."""
        if self.pipe is not None:
            self.pipe.finish()

    def response(self, body: bytes | None = None) -> Awaitable[aiohttp.ClientResponse]:
        """NoETL's answer (status and headers), to await; raises the mapped UpstreamFailure.

        A request without a streamed body is sent when awaited, in the caller's task (no extra
        task on the hot path, and no coroutine of its own: one frame less on every resumption);
        the caller cancels its own task to give up.
        """
        if self._task is None:
            return self._open(body)
        return self._task

    def abort(self, reason: str) -> None:
        """Give up: the upstream connection is closed, never reused, its body never completed."""
        if self.pipe is not None:
            self.pipe.fail(ProxyAborted(reason))
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self.close()

    def close(self) -> None:
        """Drop the upstream connection unless the body was fully read (then it is pooled)."""
        response = self._response
        if response is None and self._task is not None and self._task.done() and not self._task.cancelled():
            if self._task.exception() is None:
                response = self._task.result()
        if response is not None:
            if response.content.is_eof():
                response.release()
            else:
                response.close()
