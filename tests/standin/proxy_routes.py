"""Extra stand-in routes for the proxy's tests (streams, large bodies, statuses).

All live under ``/api/standin/``. Each records what it saw in ``routes_state(state)``:
bytes received without buffering, whether the gateway hung up, when a stream started.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler, stream_request_body

from tests.standin.per_standin import PerStandin
from tests.standin.server import RecordedCall, StandinState

CHUNK = 64 * 1024
PATTERN = bytes(range(256)) * (CHUNK // 256)


@dataclass
class Upload:
    """One streamed upload as the stand-in saw it."""

    size: int = 0
    crc32: int = 0
    chunks: int = 0
    largest_chunk: int = 0
    completed: bool = False


@dataclass
class ProxyRoutesState:
    """What the proxy routes observed, per stand-in."""

    uploads: list[Upload] = field(default_factory=list)
    started: dict[str, asyncio.Event] = field(default_factory=dict)
    disconnected: dict[str, asyncio.Event] = field(default_factory=dict)
    downloads_finished: int = 0

    def event(self, kind: str, name: str) -> asyncio.Event:
        table = self.started if kind == "started" else self.disconnected
        return table.setdefault(name, asyncio.Event())


routes_state: PerStandin[ProxyRoutesState] = PerStandin(ProxyRoutesState)  # the records for one stand-in


def pattern_crc(size: int) -> int:
    """CRC-32 of ``size`` bytes of PATTERN repeated (what /download sends, what tests upload)."""
    crc = 0
    full, rest = divmod(size, CHUNK)
    for _ in range(full):
        crc = zlib.crc32(PATTERN, crc)
    return zlib.crc32(PATTERN[:rest], crc)


class _Route(RequestHandler):
    """Records the call (headers, no body) and notices a hang-up."""

    name = "route"

    @property
    def state(self) -> StandinState:
        state: StandinState = self.settings["state"]
        return state

    @property
    def routes(self) -> ProxyRoutesState:
        return routes_state(self.state)

    def prepare(self) -> None:
        self.state.calls.append(
            RecordedCall(
                self.request.method or "", self.request.path, self.request.query, dict(self.request.headers), None, 0
            )
        )
        self.gone = asyncio.Event()
        self.routes.event("started", self.name).set()

    def on_connection_close(self) -> None:
        self.gone.set()
        self.routes.event("disconnected", self.name).set()
        super().on_connection_close()

    async def wait_or_gone(self, event: asyncio.Event) -> bool:
        """Wait for ``event``; False if the gateway hung up first."""
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self.gone.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        return not self.gone.is_set()

    def reply(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(payload))


@stream_request_body
class UploadRoute(_Route):
    """Counts a streamed body (CRC-32 + size) without keeping it."""

    name = "upload"

    def prepare(self) -> None:
        super().prepare()
        self.upload = Upload()
        self.routes.uploads.append(self.upload)

    def data_received(self, chunk: bytes) -> None:
        upload = self.upload
        upload.size += len(chunk)
        upload.chunks += 1
        upload.largest_chunk = max(upload.largest_chunk, len(chunk))
        upload.crc32 = zlib.crc32(chunk, upload.crc32)

    def _done(self) -> None:
        self.upload.completed = True
        self.reply({"size": self.upload.size, "crc32": self.upload.crc32, "chunks": self.upload.chunks})

    post = put = patch = _done


class DownloadRoute(_Route):
    """``?size=N`` bytes of PATTERN, streamed in 64 KiB chunks; ``&chunked=1`` omits Content-Length."""

    name = "download"

    async def get(self) -> None:
        size = int(self.get_argument("size", str(CHUNK)))
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", 'attachment; filename="blob.bin"')
        if self.get_argument("chunked", "0") != "1":
            self.set_header("Content-Length", str(size))
        left = size
        try:
            while left > 0:
                piece = PATTERN if left >= CHUNK else PATTERN[:left]
                self.write(piece)
                await self.flush()
                left -= len(piece)
        except StreamClosedError:
            return
        self.routes.downloads_finished += 1
        self.finish()


class StatusRoute(_Route):
    """Answers ``/status/{code}`` with a JSON body and headers a client relies on."""

    name = "status"

    def _answer(self, code: str) -> None:
        status = int(code)
        self.set_status(status)
        self.set_header("ETag", '"v-' + code + '"')
        self.set_header("Cache-Control", "no-store")
        location = f"/api/standin/status/{code}?moved=1"
        where = self.get_query_argument("location", "")
        if where == "absolute":  # NoETL naming its own internal address
            location = f"{self.request.protocol}://{self.request.host}{location}"
        elif where == "internal":
            location = f"{self.request.protocol}://{self.request.host}/internal/admin"
        self.set_header("Location", location)
        self.set_header("Content-Disposition", "inline")
        self.set_header("X-Standin-Status", code)
        self.add_header("X-Repeated", "one")
        self.add_header("X-Repeated", "two")
        self.set_header("Set-Cookie", "noetl_internal=1; Path=/")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.set_header("Keep-Alive", "timeout=5")
        self.set_header("Connection", "X-Private-Hop")
        self.set_header("X-Private-Hop", "hop")
        if status in (204, 304):
            self.finish()
            return
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"detail": f"scripted {status}", "status": status}))

    get = post = put = patch = delete = _answer

    def head(self, code: str) -> None:
        self.set_status(int(code))
        self.set_header("Content-Type", "application/json")
        self.set_header("Content-Length", "1234")
        self.set_header("X-Standin-Status", code)
        self.finish()


class Html503Route(_Route):
    """What an ingress in front of NoETL answers while it restarts."""

    name = "html503"

    def get(self) -> None:
        self.set_status(503)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Retry-After", "7")
        self.finish("<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>")


class SlowRoute(_Route):
    """Sends ``first``, waits at gate ``standin/slow`` (in state.gates), then ``second``."""

    name = "slow"

    async def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.write("first\n")
        await self.flush()
        gate = self.state.gates.setdefault("standin/slow", asyncio.Event())
        if not await self.wait_or_gone(gate):
            return
        self.finish("second\n")


class HangRoute(_Route):
    """Never answers; ends when the gateway hangs up (records that it did)."""

    name = "hang"

    async def _hang(self) -> None:
        await self.gone.wait()

    get = post = _hang


class TruncateRoute(_Route):
    """Promises 100 000 bytes, sends 10, then drops the connection."""

    name = "truncate"

    async def get(self) -> None:
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", "100000")
        self.write(b"0123456789")
        await self.flush()
        self.request.connection.close()  # type: ignore[union-attr]


class DropRoute(_Route):
    """Closes the connection without a status line (NoETL crashing mid-request)."""

    name = "drop"

    def get(self) -> None:
        self.request.connection.close()  # type: ignore[union-attr]


PROXY_ROUTES: list[Any] = [
    (r"/api/standin/upload", UploadRoute),
    (r"/api/standin/download", DownloadRoute),
    (r"/api/standin/status/(\d{3})", StatusRoute),
    (r"/api/standin/html503", Html503Route),
    (r"/api/standin/slow", SlowRoute),
    (r"/api/standin/hang", HangRoute),
    (r"/api/standin/truncate", TruncateRoute),
    (r"/api/standin/drop", DropRoute),
]
