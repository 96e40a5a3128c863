"""A bare Tornado reverse proxy, the baseline of bench/proxy_bench.py (no auth, no hygiene).

``/noetl/{path}`` → ``{upstream}/api/{path}``, streaming the answer back chunk by chunk, with
one of several HTTP clients so the client choice is measured, not assumed:

* ``aiohttp``  — one shared ClientSession, built as the gateway builds its own
  (gateway/noetl/client.py ``make_http_session``); the baseline the gateway is held to.
* ``simple``   — Tornado's ``simple_httpclient`` (a new upstream connection per request).
* ``curl``     — Tornado's ``curl_httpclient`` (needs pycurl; skipped when missing).
* ``httpx``    — one shared ``httpx.AsyncClient`` (skipped when missing).

Usage: ``python bench/proxy_bare.py --port 9001 --upstream http://127.0.0.1:9000 --client aiohttp``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.web import Application, RequestHandler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


class AiohttpProxy(RequestHandler):
    """Same client settings as the gateway; status, headers, then the body as it arrives."""

    async def get(self, path: str) -> None:
        http: aiohttp.ClientSession = self.settings["http"]
        url = f"{self.settings['upstream']}/api/{path}"
        headers = [(k, v) for k, v in self.request.headers.get_all() if k.lower() not in HOP_BY_HOP]
        async with http.get(url, headers=headers, allow_redirects=False) as resp:
            self.set_status(resp.status, resp.reason or "Unknown")
            for name, value in resp.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    self.set_header(name, value)
            if resp.content_length is not None and resp.content_length <= 65536:
                self.finish(await resp.read())
                return
            await self.flush()
            while chunk := await resp.content.readany():
                self.write(chunk)
                await self.flush()
            self.finish()


class TornadoClientProxy(RequestHandler):
    """Tornado's AsyncHTTPClient (simple or curl), streaming_callback for the body."""

    async def get(self, path: str) -> None:
        client: AsyncHTTPClient = self.settings["tornado_client"]
        headers = {k: v for k, v in self.request.headers.get_all() if k.lower() not in HOP_BY_HOP}

        def on_headers(line: str) -> None:
            pass

        chunks: list[bytes] = []
        request = HTTPRequest(
            f"{self.settings['upstream']}/api/{path}",
            headers=headers,
            follow_redirects=False,
            decompress_response=False,
            streaming_callback=chunks.append,
            request_timeout=30,
        )
        response = await client.fetch(request, raise_error=False)
        self.set_status(response.code if response.code != 599 else 502)
        for name, value in response.headers.get_all():
            if name.lower() not in HOP_BY_HOP:
                self.set_header(name, value)
        self.finish(b"".join(chunks))


class HttpxProxy(RequestHandler):
    """One shared httpx.AsyncClient, streamed."""

    async def get(self, path: str) -> None:
        client: Any = self.settings["httpx"]
        headers = [(k, v) for k, v in self.request.headers.get_all() if k.lower() not in HOP_BY_HOP]
        async with client.stream("GET", f"{self.settings['upstream']}/api/{path}", headers=headers) as resp:
            self.set_status(resp.status_code)
            for name, value in resp.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    self.set_header(name, value)
            async for chunk in resp.aiter_raw():
                self.write(chunk)
            self.finish()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--client", choices=["aiohttp", "simple", "curl", "httpx"], default="aiohttp")
    args = parser.parse_args()
    settings: dict[str, Any] = {"upstream": args.upstream.rstrip("/"), "compress_response": False}
    handler: type[RequestHandler]
    if args.client == "aiohttp":
        from gateway.noetl.client import make_http_session

        settings["http"] = make_http_session(5.0)
        handler = AiohttpProxy
    elif args.client == "httpx":
        import httpx

        settings["httpx"] = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=200))
        handler = HttpxProxy
    else:
        if args.client == "curl":
            AsyncHTTPClient.configure("tornado.curl_httpclient.CurlAsyncHTTPClient", max_clients=200)
        else:
            AsyncHTTPClient.configure(None, max_clients=200)
        settings["tornado_client"] = AsyncHTTPClient()
        handler = TornadoClientProxy
    app = Application([(r"/noetl/(.*)", handler)], **settings)
    app.listen(args.port, address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
