"""A real HTTP server in front of the NoETL stand-in that can hold NoETL's answer to ``/api/execute``.

A fast worker may call the gateway back before NoETL has answered the execute call; holding
the answer until the callbacks are done makes that ordering certain instead of lucky.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from tests.support.nats_server import free_port

Hold = Callable[[dict[str, Any]], Awaitable[None]]  # called with the execute request body


class _Forward(RequestHandler):
    async def _forward(self) -> None:
        front: NoetlFront = self.settings["front"]
        method = self.request.method or "GET"
        headers = {k: v for k, v in self.request.headers.items() if k.lower() not in ("host", "content-length")}
        front.seen.append((method, self.request.path, dict(self.request.headers)))
        async with front.http.request(
            method, f"{front.target}{self.request.uri}", data=self.request.body or None, headers=headers
        ) as resp:
            body = await resp.read()
            status, content_type = resp.status, resp.headers.get("Content-Type", "application/json")
        if method == "POST" and self.request.path == "/api/execute" and front.hold is not None:
            await front.hold(orjson.loads(self.request.body or b"{}"))
        self.set_status(status)
        self.set_header("Content-Type", content_type)
        self.finish(body)

    get = post = put = patch = delete = _forward


class NoetlFront:
    """``url`` forwards everything to ``target``; set ``hold`` to delay execute answers; ``seen`` records requests."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.port = free_port()
        self.hold: Hold | None = None
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers) of each request
        self.http = aiohttp.ClientSession()
        self.server = HTTPServer(Application([(r"/.*", _Forward)], front=self))
        self.server.listen(self.port, address="127.0.0.1")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        self.server.stop()
        await self.server.close_all_connections()
        await self.http.close()
