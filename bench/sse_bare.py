"""Baseline for bench/sse_bench.py: the least a Tornado SSE server can do.

``GET /events`` writes an init event with a fresh client id and keeps the connection;
``POST /push`` ``{"client_id", "data"}`` writes one event to that client and flushes;
``POST /broadcast`` writes one event to every client. No auth,
no NATS, no queue, no heartbeat, no replay: what is left is Tornado's own cost per connection
and per event. Loopback only.

Usage: python bench/sse_bare.py PORT
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import orjson
from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError
from tornado.web import Application, RequestHandler

CLIENTS: dict[str, BareEvents] = {}


class BareEvents(RequestHandler):
    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.client_id = uuid.uuid4().hex
        self.gone = asyncio.Event()
        CLIENTS[self.client_id] = self
        init = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"clientId": self.client_id}})
        try:
            self.write(b"id: 0\nevent: message\ndata: " + init + b"\n\n")
            await self.flush()
            await self.gone.wait()
        except StreamClosedError:
            pass
        finally:
            CLIENTS.pop(self.client_id, None)

    def on_connection_close(self) -> None:
        self.gone.set()


class Push(RequestHandler):
    async def post(self) -> None:
        body = orjson.loads(self.request.body)
        target = CLIENTS.get(body["client_id"])
        if target is None:
            self.set_status(202)
            self.finish(b'{"status":"queued"}')
            return
        data = orjson.dumps({"jsonrpc": "2.0", "method": "playbook/result", "params": body["data"]})
        target.write(b"id: 1\nevent: playbook/result\ndata: " + data + b"\n\n")
        try:
            await target.flush()
        except StreamClosedError:
            pass
        self.finish(b'{"status":"delivered"}')


class Broadcast(RequestHandler):
    """One event to every connected client (``requestId`` = ``<tag>-<client id>``), flushed concurrently."""

    async def post(self) -> None:
        tag = orjson.loads(self.request.body)["tag"]
        targets = list(CLIENTS.values())
        for target in targets:
            data = orjson.dumps(
                {"jsonrpc": "2.0", "method": "playbook/result", "params": {"requestId": f"{tag}-{target.client_id}"}}
            )
            target.write(b"id: 1\nevent: playbook/result\ndata: " + data + b"\n\n")
        await asyncio.gather(*(target.flush() for target in targets), return_exceptions=True)
        self.finish(orjson.dumps({"sent": len(targets)}))


class Health(RequestHandler):
    def get(self) -> None:
        self.finish("ok")


async def main(port: int) -> None:
    app = Application([(r"/events", BareEvents), (r"/push", Push), (r"/broadcast", Broadcast), (r"/health", Health)])
    server = HTTPServer(app)
    server.listen(port, address="127.0.0.1", backlog=4096)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
