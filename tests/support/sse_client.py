"""A small SSE client for tests: reads an aiohttp streaming response and parses events.

It parses what a browser's EventSource would (``id:``, ``event:``, ``data:``, ``retry:``,
comments) and keeps every event, so tests wait on *events*, never on time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson


@dataclass
class SseEvent:
    """One dispatched event."""

    id: str | None
    event: str
    data: str
    retry: int | None = None

    @property
    def json(self) -> Any:
        return orjson.loads(self.data) if self.data else None


class SseStream:
    """One open ``GET /events`` connection, read in the background."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: Any = None
        self.events: list[SseEvent] = []
        self.retry: int | None = None
        self.ended = asyncio.Event()
        self._changed = asyncio.Event()
        self._response: aiohttp.ClientResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self.body_text = ""

    @classmethod
    async def open(
        cls,
        client: aiohttp.ClientSession,
        base_url: str,
        token: str | None = None,
        *,
        client_id: str | None = None,
        last_event_id: str | None = None,
        via: str = "query",
        headers: dict[str, str] | None = None,
    ) -> SseStream:
        """Connect; ``via`` says where the token goes: query, bearer, header or cookie."""
        params: dict[str, str] = {}
        send = dict(headers or {})
        if token is not None:
            if via == "query":
                params["session_token"] = token
            elif via == "bearer":
                send["Authorization"] = f"Bearer {token}"
            elif via == "header":
                send["X-Session-Token"] = token
            elif via == "cookie":
                send["Cookie"] = f"session_token={token}"
        if client_id is not None:
            params["client_id"] = client_id
        if last_event_id is not None:
            send["Last-Event-ID"] = last_event_id
        stream = cls()
        response = await client.get(
            f"{base_url}/events", params=params, headers=send, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)
        )
        stream._response = response
        stream.status = response.status
        stream.headers = response.headers
        if response.headers.get("Content-Type", "").startswith("text/event-stream"):
            stream._reader = asyncio.create_task(stream._read(response))
        else:
            stream.body_text = (await response.read()).decode("utf-8", "replace")
            response.release()
            stream.ended.set()
        return stream

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        buffer = b""
        fields: dict[str, str] = {}
        data: list[str] = []
        try:
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    line = raw.rstrip(b"\r").decode("utf-8")
                    if line == "":
                        if data or fields:
                            self._dispatch(fields, data)
                        fields, data = {}, []
                        continue
                    if line.startswith(":"):
                        continue
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "data":
                        data.append(value)
                    else:
                        fields[name] = value
        except (aiohttp.ClientError, asyncio.CancelledError, ConnectionError):
            pass
        finally:
            self.ended.set()
            self._changed.set()

    def _dispatch(self, fields: dict[str, str], data: list[str]) -> None:
        retry = int(fields["retry"]) if fields.get("retry", "").isdigit() else None
        if retry is not None:
            self.retry = retry
        if not data and retry is not None:
            self.events.append(SseEvent(fields.get("id"), "retry", "", retry))
        elif data:
            self.events.append(SseEvent(fields.get("id"), fields.get("event") or "message", "\n".join(data), retry))
        self._changed.set()

    # -- waiting ---------------------------------------------------------------------------

    def named(self, name: str) -> list[SseEvent]:
        """Events with that SSE event name, in arrival order."""
        return [event for event in self.events if event.event == name]

    async def wait_for(self, predicate: Any, timeout: float = 5.0, after: int = 0) -> SseEvent:
        """The first event at index ``after`` or later (already here or still to come) matching ``predicate``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = after
        while True:
            for event in self.events[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events)
            if self.ended.is_set():
                raise AssertionError(f"stream ended without the expected event; got {self.summary()}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"expected event did not arrive in time; got {self.summary()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def next_named(self, name: str, timeout: float = 5.0, after: int = 0) -> SseEvent:
        """The first event called ``name`` at index ``after`` or later."""
        return await self.wait_for(lambda e: e.event == name, timeout, after)

    async def wait_ended(self, timeout: float = 5.0) -> None:
        """Wait until the server closed the stream."""
        await asyncio.wait_for(self.ended.wait(), timeout)

    def summary(self) -> list[tuple[str | None, str]]:
        return [(event.id, event.event) for event in self.events]

    async def close(self) -> None:
        """Drop the connection (like a browser tab going away)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._response is not None:
            self._response.close()
        self.ended.set()


async def open_stream(client: aiohttp.ClientSession, base_url: str, token: str, **kwargs: Any) -> SseStream:
    """Open a stream and wait for its init message (fails if it does not come)."""
    stream = await SseStream.open(client, base_url, token, **kwargs)
    await stream.wait_for(lambda e: e.event in ("message", "error"))
    return stream


@contextlib.asynccontextmanager
async def streaming(
    client: aiohttp.ClientSession, base_url: str, token: str, **kwargs: Any
) -> AsyncIterator[SseStream]:
    """``open_stream``, closed however the test ends (a browser tab going away)."""
    stream = await open_stream(client, base_url, token, **kwargs)
    try:
        yield stream
    finally:
        await stream.close()


def init_of(stream: SseStream) -> dict[str, Any]:
    """The init message's ``result``."""
    first = stream.events[0]
    assert first.event == "message", stream.summary()
    result = first.json["result"]
    assert isinstance(result, dict)
    return result
