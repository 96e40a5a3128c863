"""GraphQL subscription fan-out: 1k open graphql-ws subscriptions against the same delivery over /events.

One gateway process (``python -m gateway``, a real nats-server with JetStream, ``GATEWAY_AUTH_BYPASS``
standing in for login: one session per token), in the same run:

* **memory per idle WebSocket subscription**: the gateway's RSS before and after N graphql-ws
  connections (``connection_init`` acknowledged), then after one ``playbookEvents`` subscription
  waiting on each (connection + client record + watch), divided by N. Opened in waves of
  ``--wave`` (50) — each wave acknowledged or counted by the gateway before the next — as clients
  arrive in practice; and, in a gateway of its own, the way the first measurement did it: every
  subscribe sent at once (the allocator keeps part of that burst's transient peak, so RSS counts
  it too). With ``--baseline-rev REV`` the same readings are taken of the gateway at ``REV``
  (``git archive``), before this tree's, in the same run;
* **tracemalloc**: the Python allocations behind those numbers, per connection and per
  subscription (``--traced`` connections in a gateway run under ``tracemalloc``; garbage collected
  before each reading), for both trees;
* **result → Next latency**: a worker-style ``POST /api/internal/callback/async`` (signed callback
  token) for a request whose client is a graphql-ws connection, timed from just before the POST to
  the moment the subscription's ``next`` with the RESULT is read; the **same delivery over /events**
  (a request of an ``/events`` client, until its ``playbook/result`` is read), the two interleaved
  one sample at a time, with all N subscriptions and N idle ``/events`` streams open (their RSS per
  stream is read too). p50/p99 and the ratio; this tree only.

Each gateway gets a fresh nats-server. The clients run in this process (one loop, one clock); the
requests are written to the ``requests`` KV bucket as ``executePlaybook(clientId)`` would.
Loopback only.

Usage: .venv/bin/python bench/subscriptions_bench.py [--connections 1000] [--samples 300] [--wave 50]
       [--traced 300] [--baseline-rev REV] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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
SUBSCRIPTIONS = "gateway_graphql_subscriptions"

# The gateway under tracemalloc: SIGUSR1 appends the traced total (after a collection) to a file.
TRACED_MAIN = """
import gc, os, signal, sys, tracemalloc
tracemalloc.start()
def report(*_):
    gc.collect()
    with open(os.environ["BENCH_TRACED_FILE"], "a") as out:
        out.write(f"{tracemalloc.get_traced_memory()[0]}\\n")
signal.signal(signal.SIGUSR1, report)
from gateway.__main__ import main
sys.exit(main())
"""


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


async def open_subscribers(url: str, count: int, wave: int = 100) -> list[Subscriber]:
    """``count`` acknowledged connections, ``wave`` at a time."""

    async def one(index: int) -> Subscriber:
        token = f"bench-ws-{index}-{uuid.uuid4().hex[:8]}"
        ws = await WsClient.connect(url)
        ack = await ws.init(token, timeout=60)
        assert ack is not None and ack["type"] == "connection_ack", ack
        return Subscriber(ws, token, ack["payload"]["clientId"])

    subscribers: list[Subscriber] = []
    for start in range(0, count, wave):
        subscribers += await asyncio.gather(*(one(i) for i in range(start, min(count, start + wave))))
    return subscribers


async def subscribe_idle(
    http: aiohttp.ClientSession, gateway: Gateway, subscribers: list[Subscriber], wave: int
) -> None:
    """One waiting ``playbookEvents`` subscription per connection, ``wave`` at a time (each wave
    counted by the gateway before the next)."""
    ids = [str(uuid.uuid4()) for _ in subscribers]
    await put_requests(gateway.nats_url, [(r, s.client_id, s.token) for r, s in zip(ids, subscribers, strict=True)])
    for start in range(0, len(subscribers), wave):
        for subscriber, rid in zip(subscribers[start : start + wave], ids[start : start + wave], strict=True):
            subscriber.reader = asyncio.create_task(subscriber.read())
            await subscriber.subscribe(rid)
        await until_gauge(http, gateway.url, SUBSCRIPTIONS, min(len(subscribers), start + wave))


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


class Gateway:
    """``python -m gateway`` of a source tree on a fresh nats-server; optionally under tracemalloc."""

    def __init__(self, tree: Path, nats_url: str, workdir: Path, traced: bool = False) -> None:
        self.tree, self.nats_url, self.traced = tree, nats_url, traced
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.traced_file = workdir / f"traced-{self.port}.txt"
        self.log_path = workdir / f"gateway-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            **gateway_env(
                self.port, NATS_URL=self.nats_url, GATEWAY_AUTH_BYPASS="true", GATEWAY_CALLBACK_SECRET=SECRET
            ),
            "GATEWAY_SSE_MAX_PER_SESSION": "4",
            "GATEWAY_WS_PING_INTERVAL_SECS": "0",
            "PYTHONPATH": str(self.tree),
            "BENCH_TRACED_FILE": str(self.traced_file),
        }
        argv = [sys.executable, "-c", TRACED_MAIN] if self.traced else [sys.executable, "-m", "gateway"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, cwd=self.tree, stdout=log, stderr=log)
        wait_http(f"{self.url}/health", self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)

    async def rss_kib(self) -> float:
        assert self.proc is not None
        return float(rss_kib(self.proc.pid))

    async def traced_kib(self) -> float:
        """Python's traced allocations now (the gateway collects garbage first), in KiB."""
        assert self.proc is not None
        before = len(self.traced_file.read_text().splitlines()) if self.traced_file.exists() else 0
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while True:
            lines = self.traced_file.read_text().splitlines() if self.traced_file.exists() else []
            if len(lines) > before:
                return int(lines[-1]) / 1024
            if time.monotonic() > deadline:
                raise RuntimeError("the traced gateway did not report")
            await asyncio.sleep(0.05)  # poll interval of a file the gateway writes


# How long the gateway is left alone before a memory reading (allocations settle, timers armed);
# --smoke shortens it: its readings only show the script works.
SETTLE_SECS = 1.0


@contextlib.asynccontextmanager
async def running(tree: Path, workdir: Path, traced: bool = False) -> AsyncIterator[Gateway]:
    with nats_server() as nats_url:
        gateway = Gateway(tree, nats_url, workdir, traced)
        gateway.start()
        try:
            await asyncio.sleep(SETTLE_SECS)  # let start-up allocations settle before the first reading
            yield gateway
        finally:
            gateway.stop()


Reading = Callable[[], Awaitable[float]]


async def idle_memory(
    http: aiohttp.ClientSession, gateway: Gateway, count: int, wave: int, read: Reading, burst: bool = False
) -> tuple[dict[str, float], list[Subscriber]]:
    """Per connection and per subscription (``read``'s unit), opened in waves, or the subscriptions at once."""
    base = await read()
    subscribers = await open_subscribers(gateway.url, count, 100 if burst else wave)
    await asyncio.sleep(SETTLE_SECS)  # the loop settles (acks written, timers armed)
    connected = await read()
    await subscribe_idle(http, gateway, subscribers, count if burst else wave)
    await asyncio.sleep(SETTLE_SECS)
    subscribed = await read()
    per = {"connection": (connected - base) / count, "subscription": (subscribed - connected) / count}
    per["total"] = per["connection"] + per["subscription"]
    return per, subscribers


def close_all(subscribers: list[Subscriber]) -> None:
    for subscriber in subscribers:
        subscriber.ws.close()
        if subscriber.reader is not None:
            subscriber.reader.cancel()


def checkout(rev: str, into: Path) -> Path:
    """The source tree of ``rev`` (git archive), to run the gateway as it was."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], check=True, capture_output=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


async def measure_tree(
    http: aiohttp.ClientSession, tree: Path, workdir: Path, args: argparse.Namespace, latency: bool
) -> dict[str, Any]:
    """Memory readings of one tree (and, for this tree, the latencies)."""
    count = args.connections
    out: dict[str, Any] = {}
    async with running(tree, workdir) as gateway:
        per, subscribers = await idle_memory(http, gateway, count, args.wave, gateway.rss_kib)
        out["rss_kib"] = per
        if latency:
            streams: list[Listener] = []
            before = await gateway.rss_kib()
            for start in range(0, count, 100):
                streams += await asyncio.gather(
                    *(Listener.open(http, gateway.url) for _ in range(start, min(count, start + 100)))
                )
            await until_gauge(http, gateway.url, "gateway_sse_clients", count)
            await asyncio.sleep(SETTLE_SECS)
            out["sse_stream_kib"] = (await gateway.rss_kib() - before) / count
            signer = CallbackSigner(SECRET, 3600)
            ws_ms, sse_ms = await latencies(http, gateway, signer, subscribers, streams, args.samples, count)
            out["latency"] = latency_figures(ws_ms, sse_ms)
            for listener in streams:
                await listener.stream.close()
        close_all(subscribers)
    async with running(tree, workdir) as gateway:
        per, subscribers = await idle_memory(http, gateway, count, args.wave, gateway.rss_kib, burst=True)
        out["rss_burst_kib"] = per
        close_all(subscribers)
    async with running(tree, workdir, traced=True) as gateway:
        per, subscribers = await idle_memory(http, gateway, args.traced, args.wave, gateway.traced_kib)
        out["traced_kib"] = per
        close_all(subscribers)
    return out


def latency_figures(ws_ms: list[float], sse_ms: list[float]) -> dict[str, float]:
    figures = {
        "ws_next_p50_ms": pct(ws_ms, 0.5),
        "ws_next_p99_ms": pct(ws_ms, 0.99),
        "sse_event_p50_ms": pct(sse_ms, 0.5),
        "sse_event_p99_ms": pct(sse_ms, 0.99),
    }
    figures["p50_ratio"] = figures["ws_next_p50_ms"] / figures["sse_event_p50_ms"]
    figures["p99_ratio"] = figures["ws_next_p99_ms"] / figures["sse_event_p99_ms"]
    return figures


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    unbounded = aiohttp.TCPConnector(limit=0)  # aiohttp's default pool stops at 100 connections
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    result: dict[str, Any] = {"connections": args.connections, "samples": args.samples, "wave": args.wave}
    result["traced_connections"] = args.traced
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        async with aiohttp.ClientSession(connector=unbounded, timeout=timeout) as http:
            if args.baseline_rev:
                base = checkout(args.baseline_rev, workdir / "baseline")
                result["baseline_rev"] = args.baseline_rev
                result["before"] = await measure_tree(http, base, workdir, args, latency=False)
            result["after"] = await measure_tree(http, ROOT, workdir, args, latency=True)
    return result


async def latencies(
    http: aiohttp.ClientSession,
    gateway: Gateway,
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
    url = gateway.url
    await put_requests(
        gateway.nats_url,
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
    after = result["after"]
    before = result.get("before")
    rev = result.get("baseline_rev", "—")
    lines = [
        f"| per idle graphql-ws connection with one subscription ({result['connections']} open) "
        f"| before ({rev}) | after |",
        "|---|---|---|",
    ]

    def row(label: str, key: str, part: str, unit: str) -> None:
        old = f"{before[key][part]:.1f} {unit}" if before else "—"
        lines.append(f"| {label} | {old} | {after[key][part]:.1f} {unit} |")

    wave = result["wave"]
    row(f"RSS, opened {wave} at a time", "rss_kib", "total", "KiB")
    row("… of which the connection", "rss_kib", "connection", "KiB")
    row("… of which the subscription", "rss_kib", "subscription", "KiB")
    row("RSS, every subscribe sent at once", "rss_burst_kib", "total", "KiB")
    row(f"tracemalloc, connection ({result['traced_connections']} open)", "traced_kib", "connection", "KiB")
    row("tracemalloc, subscription", "traced_kib", "subscription", "KiB")
    figures = after["latency"]
    lines += [
        "",
        f"| measure ({result['connections']} open) | graphql-ws subscription | /events stream | ratio |",
        "|---|---|---|---|",
        f"| result → event p50 (ms) | {figures['ws_next_p50_ms']:.2f} | {figures['sse_event_p50_ms']:.2f} "
        f"| {figures['p50_ratio']:.2f}× |",
        f"| result → event p99 (ms) | {figures['ws_next_p99_ms']:.2f} | {figures['sse_event_p99_ms']:.2f} "
        f"| {figures['p99_ratio']:.2f}× |",
        f"| RSS per idle connection (KiB) | {after['rss_kib']['total']:.1f} | {after['sse_stream_kib']:.1f} | |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--wave", type=int, default=50, help="connections/subscriptions opened at a time")
    parser.add_argument("--traced", type=int, default=300, help="connections of the tracemalloc run")
    parser.add_argument("--baseline-rev", default=None, help="also measure the gateway at this git revision")
    parser.add_argument("--smoke", action="store_true", help="20 connections, 10 samples")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.smoke:
        args.connections, args.samples, args.traced, args.wave = 20, 10, 20, 10
        global SETTLE_SECS
        SETTLE_SECS = 0.1
    result = asyncio.run(drive(args))
    print(table(result))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
