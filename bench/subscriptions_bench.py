"""GraphQL subscription fan-out: 1k open graphql-ws subscriptions against the same delivery over /events.

One gateway process (``python -m gateway``, a real nats-server with JetStream, ``GATEWAY_AUTH_BYPASS``
standing in for login: one session per token), in the same run:

* **memory per idle WebSocket subscription**: the gateway's RSS before and after N graphql-ws
  connections, each with one ``playbookEvents`` subscription waiting (connection + client record +
  watch), divided by N; the same for N idle ``/events`` streams, opened next;
* **result → Next latency**: a worker-style ``POST /api/internal/callback/async`` (signed callback
  token) for a request whose client is a graphql-ws connection, timed from just before the POST to
  the moment the subscription's ``next`` with the RESULT is read; the **same delivery over /events**
  (a request of an ``/events`` client, until its ``playbook/result`` is read), the two interleaved
  one sample at a time, with all N subscriptions and N streams open. p50/p99 and the ratio.

The clients run in this process (one loop, one clock); the requests are written to the
``requests`` KV bucket as ``executePlaybook(clientId)`` would. Loopback only.

Usage: .venv/bin/python bench/subscriptions_bench.py [--connections 1000] [--samples 300] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import free_port, gateway_env, nats_server, pct, raise_fd_limit, wait_http, write_json  # noqa: E402

from gateway.auth.tokens import CallbackSigner  # noqa: E402
from tests.support.graphql_ws import WsClient  # noqa: E402
from tests.support.sse_client import SseStream, init_of  # noqa: E402

SECRET = "bench-callback-secret-0123456789abcdefghijkl"
EVENTS = "subscription($rid: ID) { playbookEvents(requestId: $rid) { kind status } }"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def session_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Listener:
    """One /events stream, its token and client id."""

    def __init__(self, stream: SseStream, token: str) -> None:
        self.stream, self.token = stream, token
        self.client_id = str(init_of(stream)["clientId"])

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str) -> Listener:
        token = f"bench-sse-{uuid.uuid4().hex}"
        stream = await SseStream.open(http, url, token)
        await stream.wait_for(lambda e: e.event == "message", timeout=60)
        return cls(stream, token)


class Subscriber:
    """One graphql-ws connection and its subscription; arrival times of RESULTs by request id."""

    def __init__(self, ws: WsClient, token: str, client_id: str) -> None:
        self.ws, self.token, self.client_id = ws, token, client_id
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.reader: asyncio.Task[None] | None = None

    async def subscribe(self, request_id: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        await self.ws.send("subscribe", request_id, {"query": EVENTS, "variables": {"rid": request_id}})
        return future

    async def read(self) -> None:
        while True:
            message = await self.ws.receive(timeout=3600)
            if message is None:
                return
            if message.get("type") == "next" and message["payload"]["data"]["playbookEvents"]["kind"] == "RESULT":
                future = self.waiting.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(time.perf_counter())


async def put_requests(nats_url: str, records: list[tuple[str, str, str]]) -> None:
    """(request id, client id, token) → pending requests in the ``requests`` bucket."""
    import nats

    nc = await nats.connect(nats_url)
    kv = await nc.jetstream().key_value("requests")
    for start in range(0, len(records), 256):
        await asyncio.gather(
            *(
                kv.put(
                    rid,
                    json.dumps(
                        {
                            "client_id": client_id,
                            "session": session_hash(token),
                            "execution_id": "1",
                            "playbook_path": "bench/subscriptions",
                            "created_at": int(time.time()),
                        }
                    ).encode(),
                )
                for rid, client_id, token in records[start : start + 256]
            )
        )
    await nc.close()


async def open_subscribers(url: str, count: int) -> list[Subscriber]:
    async def one(index: int) -> Subscriber:
        token = f"bench-ws-{index}-{uuid.uuid4().hex[:8]}"
        ws = await WsClient.connect(url)
        ack = await ws.init(token, timeout=60)
        assert ack is not None and ack["type"] == "connection_ack", ack
        return Subscriber(ws, token, ack["payload"]["clientId"])

    subscribers: list[Subscriber] = []
    for start in range(0, count, 100):
        subscribers += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 100))))
    return subscribers


async def gauge(session: aiohttp.ClientSession, url: str, name: str) -> float:
    async with session.get(f"{url}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def until_gauge(
    session: aiohttp.ClientSession, url: str, name: str, value: float, timeout: float = 120, below: bool = False
) -> None:
    deadline = time.monotonic() + timeout
    while (await gauge(session, url, name) > value) if below else (await gauge(session, url, name) < value):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not reach {value}")
        await asyncio.sleep(0.1)  # poll interval of a readiness check


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    count, samples = args.connections, args.samples
    signer = CallbackSigner(SECRET, 3600)
    with nats_server() as nats_url, tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            **gateway_env(port, NATS_URL=nats_url, GATEWAY_AUTH_BYPASS="true", GATEWAY_CALLBACK_SECRET=SECRET),
            "GATEWAY_SSE_MAX_PER_SESSION": "4",
            "GATEWAY_WS_PING_INTERVAL_SECS": "0",
        }
        log = open(Path(workdir) / "gateway.log", "wb")  # noqa: ASYNC230 (set-up, before any load)
        argv = [sys.executable, "-m", "gateway"]
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)  # noqa: ASYNC220
        try:
            wait_http(f"{url}/health")
            unbounded = aiohttp.TCPConnector(limit=0)  # aiohttp's default pool stops at 100 connections
            timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
            async with aiohttp.ClientSession(connector=unbounded, timeout=timeout) as http:
                await asyncio.sleep(1.0)  # let start-up allocations settle before the first reading
                rss0 = rss_kib(proc.pid)
                subscribers = await open_subscribers(url, count)
                idle_ids = [str(uuid.uuid4()) for _ in subscribers]
                await put_requests(
                    nats_url, [(r, s.client_id, s.token) for r, s in zip(idle_ids, subscribers, strict=True)]
                )
                for subscriber, rid in zip(subscribers, idle_ids, strict=True):
                    subscriber.reader = asyncio.create_task(subscriber.read())
                    await subscriber.subscribe(rid)
                await until_gauge(http, url, "gateway_graphql_subscriptions", count)
                await asyncio.sleep(1.0)
                rss1 = rss_kib(proc.pid)
                streams: list[Listener] = []
                for start in range(0, count, 100):
                    streams += await asyncio.gather(
                        *(Listener.open(http, url) for _ in range(start, min(count, start + 100)))
                    )
                await until_gauge(http, url, "gateway_sse_clients", count)
                await asyncio.sleep(1.0)
                rss2 = rss_kib(proc.pid)
                ws_ms, sse_ms = await latencies(http, url, nats_url, signer, subscribers, streams, samples, count)
                for subscriber in subscribers:
                    subscriber.ws.close()
                for listener in streams:
                    await listener.stream.close()
        finally:
            proc.terminate()
            proc.wait(15)
            log.close()
    result = {
        "connections": count,
        "samples": samples,
        "ws_subscription_kib": (rss1 - rss0) / count,
        "sse_stream_kib": (rss2 - rss1) / count,
        "ws_next_p50_ms": pct(ws_ms, 0.5),
        "ws_next_p99_ms": pct(ws_ms, 0.99),
        "sse_event_p50_ms": pct(sse_ms, 0.5),
        "sse_event_p99_ms": pct(sse_ms, 0.99),
    }
    result["p50_ratio"] = result["ws_next_p50_ms"] / result["sse_event_p50_ms"]
    result["p99_ratio"] = result["ws_next_p99_ms"] / result["sse_event_p99_ms"]
    return result


async def latencies(
    http: aiohttp.ClientSession,
    url: str,
    nats_url: str,
    signer: CallbackSigner,
    subscribers: list[Subscriber],
    streams: list[Listener],
    samples: int,
    idle: int,
) -> tuple[list[float], list[float]]:
    """Interleaved: one result to a subscription, one to an /events stream, each timed to its arrival."""
    ws_ms: list[float] = []
    sse_ms: list[float] = []
    plan = []
    for n in range(samples):
        subscriber = subscribers[n % len(subscribers)]
        stream = streams[n % len(streams)]
        plan.append((str(uuid.uuid4()), subscriber, str(uuid.uuid4()), stream))
    await put_requests(
        nats_url,
        [(rid, s.client_id, s.token) for rid, s, _, _ in plan]
        + [(rid, listener.client_id, listener.token) for _, _, rid, listener in plan],
    )
    for ws_rid, subscriber, sse_rid, listener in plan:
        arrived = await subscriber.subscribe(ws_rid)
        await until_gauge(http, url, "gateway_graphql_subscriptions", idle + 1)
        began = time.perf_counter()
        await post_result(http, url, signer, ws_rid)
        ws_ms.append((await asyncio.wait_for(arrived, 10) - began) * 1000)
        began = time.perf_counter()
        await post_result(http, url, signer, sse_rid)
        await listener.stream.wait_for(
            lambda e, rid=sse_rid: e.event == "playbook/result" and e.json["params"]["requestId"] == rid, timeout=10
        )
        sse_ms.append((time.perf_counter() - began) * 1000)
        await until_gauge(http, url, "gateway_graphql_subscriptions", idle, below=True)
    return ws_ms, sse_ms


async def post_result(http: aiohttp.ClientSession, url: str, signer: CallbackSigner, request_id: str) -> None:
    body = {"request_id": request_id, "execution_id": "1", "status": "COMPLETED", "data": {"n": 1}}
    headers = {"Authorization": f"Bearer {signer.issue(request_id)}"}
    async with http.post(f"{url}/api/internal/callback/async", json=body, headers=headers) as resp:
        await resp.read()
        assert resp.status in (200, 202), resp.status


def table(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"| measure ({result['connections']} open) | graphql-ws subscription | /events stream | ratio |",
            "|---|---|---|---|",
            f"| result → event p50 (ms) | {result['ws_next_p50_ms']:.2f} | {result['sse_event_p50_ms']:.2f} "
            f"| {result['p50_ratio']:.2f}× |",
            f"| result → event p99 (ms) | {result['ws_next_p99_ms']:.2f} | {result['sse_event_p99_ms']:.2f} "
            f"| {result['p99_ratio']:.2f}× |",
            f"| RSS per idle connection (KiB) | {result['ws_subscription_kib']:.1f} "
            f"| {result['sse_stream_kib']:.1f} | |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--smoke", action="store_true", help="20 connections, 10 samples")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.smoke:
        args.connections, args.samples = 20, 10
    result = asyncio.run(drive(args))
    print(table(result))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
