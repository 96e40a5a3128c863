"""Idle SSE streams per process: as many as one gateway process can hold here, and what they cost.

One ``python -m gateway`` (real nats-server, ``GATEWAY_AUTH_BYPASS`` standing in for login, access
log at WARNING) holds ``--streams`` idle streams opened by holder processes, each from its own
loopback source address (127.0.0.2, 127.0.0.3, …: one address has ~28k ephemeral ports; several
keep a 100k run from running out). Every holder timestamps each ``ping`` and result it reads
(CLOCK_MONOTONIC is shared by processes). Measured, on one gateway process:

* **RSS**: the gateway's VmRSS with every stream open, minus before the first (per stream, and
  extrapolated to 100,000 streams when fewer were held);
* **heartbeat spread**: pings read per second over whole heartbeat intervals (max ÷ mean: 1.0 is
  perfectly even; a naive timer per stream opened in a burst gives a spike);
* **/health p99 while heartbeating vs without**: open-loop ``GET /health`` (``--rate`` per second,
  latency from the scheduled send time) classified as in bench/heartbeat_bench.py: requests in a
  100 ms slot with pings vs those ≥ 0.2 s away from any — the baseline is the same process and
  streams between pings. With spread heartbeats most slots have pings, so the pooled p99 over all
  requests is reported too, against ``--baseline-secs`` of requests before any stream opened;
* **one result to a random stream**: pending requests written to the ``requests`` KV bucket as
  ``executePlaybook`` would, one signed ``POST /api/internal/callback/async`` at a time, POST → the
  holder reading the event.

The open-file limit caps the size: the gateway needs one descriptor per stream and the hard
``RLIMIT_NOFILE`` of this machine (see ``ulimit -Hn``) cannot be raised without CAP_SYS_RESOURCE;
``--streams`` is cut to what fits, and the result says so. Loopback only; bounded by ``--timeout``.

Usage: .venv/bin/python bench/streams_bench.py [--streams 19000] [--interval 20] [--samples 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import harness
from harness import Processes
from heartbeat_bench import classify
from sse_streams import ChildProcess, callback, open_gauge, open_streams, serve_commands, store_pending

ROOT = Path(__file__).resolve().parent.parent
TOKEN_PREFIX = "bench-streams-"
PER_HOLDER = 10_000  # streams per holder process (its own descriptors and one source address)
_RESULT = re.compile(rb'"requestId":"([^"]+)"')


# -- a holder process: streams from one source address ----------------------------------------


class Holder:
    """Holds streams, timestamps pings and results; JSON commands on stdin, answers on stdout."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.pings: list[float] = []
        self.results: dict[str, int] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.writers: list[asyncio.StreamWriter] = []

    def held(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.tasks.append(asyncio.create_task(self.read(reader)))

    async def read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while chunk := await reader.read(65536):
                now = time.monotonic_ns()
                if b"event: ping" in chunk:
                    self.pings.append(now / 1e9)
                if b"playbook/result" in chunk:
                    for match in _RESULT.finditer(chunk):
                        self.results[match.group(1).decode()] = now

    async def open(self, command: dict[str, Any]) -> list[str]:
        url, start, count = command["url"], command["start"], command["count"]
        return await open_streams(url, TOKEN_PREFIX, start, count, self.held, source=self.source)

    async def pings_read(self, _command: dict[str, Any]) -> list[float]:
        return self.pings

    async def results_read(self, _command: dict[str, Any]) -> dict[str, int]:
        return self.results

    async def serve(self) -> None:
        await serve_commands({"open": self.open, "pings": self.pings_read, "results": self.results_read})
        for task in self.tasks:
            task.cancel()
        for writer in self.writers:
            writer.close()


class HolderProcess(ChildProcess):
    """The driver's handle on one holder."""

    def __init__(self, source: str) -> None:
        super().__init__("holder", [*harness.taskset(1), harness.PYTHON, __file__, "--holder", source])


# -- the driver --------------------------------------------------------------------------------


def request_window(base: str, rate: float, start: float, seconds: float) -> list[tuple[float, float]]:
    """Open-loop GET /health in its own process on CPU 1 (heartbeat_bench.py's request mode)."""
    done = subprocess.run(
        [
            *harness.taskset(1),
            harness.PYTHON,
            str(Path(__file__).with_name("heartbeat_bench.py")),
            "--requests",
            f"{base}/health",
            str(rate),
            str(start),
            str(seconds),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"request process failed: {done.stderr[-2000:]}")
    return [(float(due), float(latency)) for due, latency in json.loads(done.stdout)]


async def one_at_a_time(base: str, pairs: list[tuple[str, str, int]]) -> dict[str, int]:
    """Signed result callbacks, one at a time; the send time of each."""
    import aiohttp

    from gateway.auth.tokens import CallbackSigner

    signer = CallbackSigner(harness.CALLBACK_SECRET, 3600)
    sent: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        for rid, _, _ in pairs:
            body, headers = callback(signer, rid)
            sent[rid] = time.monotonic_ns()
            async with session.post(f"{base}/api/internal/callback/async", json=body, headers=headers) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"callback answered {resp.status}: {await resp.text()}")
    return sent


def spread(pings: list[float], start: float, seconds: float) -> dict[str, float]:
    """Pings per second over [start, start + seconds): how evenly the heartbeats fall."""
    buckets = [0] * max(1, int(seconds))
    for t in pings:
        if start <= t < start + len(buckets):
            buckets[int(t - start)] += 1
    mean = sum(buckets) / len(buckets)
    return {"per_second_mean": mean, "per_second_max": max(buckets), "max_over_mean": max(buckets) / max(mean, 1e-9)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    limit = harness.raise_fd_limit()
    wanted = 300 if args.smoke else args.streams
    streams = min(wanted, limit - 300)  # the gateway's own descriptors: NATS, the listener, logs
    interval = 3.0 if args.smoke else args.interval
    rate = 100.0 if args.smoke else args.rate
    samples = 20 if args.smoke else args.samples
    result: dict[str, Any] = {"scenario": "streams", "wanted": wanted, "streams": streams, "fd_limit": limit}
    with harness.nats_server() as nats_url, Processes("streams") as procs:
        port = harness.free_port()
        base = f"http://127.0.0.1:{port}"
        env = harness.gateway_env(
            port,
            NATS_URL=nats_url,
            GATEWAY_AUTH_BYPASS="true",
            GATEWAY_HEARTBEAT_INTERVAL_SECS=str(interval),
            GATEWAY_LOG_LEVEL="WARNING",
        )
        gateway = procs.start("gateway", [harness.PYTHON, "-m", "gateway"], env, cpus={0})
        harness.wait_http(f"{base}/health", gateway)
        baseline_rss = harness.rss_kib(gateway.pid)
        # Before any stream: the /health latency of the same process, idle (after a warm-up: the
        # first seconds of a process pay for imports, caches and the NATS mirrors' initial sync).
        # The request process starts from scratch each time (imports ≈ 0.5 s): its first send is
        # scheduled 2 s ahead, or its own start-up would count as the server's latency.
        request_window(base, rate, time.monotonic() + 2.0, 0.5 if args.smoke else 3.0)
        start = time.monotonic() + 2.0
        cpu_idle = harness.cpu_seconds(gateway.pid)
        idle_secs = 1.0 if args.smoke else args.baseline_secs
        idle = request_window(base, rate, start, idle_secs)
        cpu_idle = (harness.cpu_seconds(gateway.pid) - cpu_idle) / (time.monotonic() - start + 2.0)
        holders = [HolderProcess(f"127.0.0.{2 + k}") for k in range(-(-streams // PER_HOLDER))]
        try:
            opened_at = time.monotonic()
            client_ids: list[tuple[str, int]] = []
            for k, holder in enumerate(holders):
                count = min(PER_HOLDER, streams - k * PER_HOLDER)
                ids = holder.call(cmd="open", url=base, start=k * PER_HOLDER, count=count)
                client_ids += [(cid, k * PER_HOLDER + i) for i, cid in enumerate(ids)]
            result["open_secs"] = time.monotonic() - opened_at
            deadline = time.monotonic() + 60
            while open_gauge(base) != streams:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"streams did not all register ({open_gauge(base)} of {streams})")
                time.sleep(0.2)  # polling the gateway's own gauge
            rss = harness.rss_kib(gateway.pid)
            result["rss"] = {
                "baseline_mib": baseline_rss / 1024,
                "with_streams_mib": rss / 1024,
                "per_stream_kib": (rss - baseline_rss) / streams,
                "at_100k_gib_extrapolated": (baseline_rss + (rss - baseline_rss) / streams * 100_000) / 1024 / 1024,
            }
            print(f"{streams} streams open in {result['open_secs']:.1f}s; {result['rss']}", flush=True)
            # Heartbeats: whole intervals starting one interval after the last stream opened.
            start = max(time.monotonic() + 2.0, opened_at + result["open_secs"] + interval)
            seconds = interval * (1 if args.smoke else args.runs)  # --smoke: one heartbeat interval
            cpu_busy = harness.cpu_seconds(gateway.pid)
            busy_from = time.monotonic()
            busy = request_window(base, rate, start, seconds)
            cpu_busy = (harness.cpu_seconds(gateway.pid) - cpu_busy) / (time.monotonic() - busy_from)
            pings = [t for holder in holders for t in holder.call(cmd="pings")]
            during, without = classify(busy, pings, start, start + seconds)
            pooled = [latency * 1000 for due, latency in busy if start <= due < start + seconds]
            idle_ms = [latency * 1000 for _, latency in idle]
            result["heartbeats"] = {
                "interval_s": interval,
                "pings_read": sum(1 for t in pings if start <= t < start + seconds),
                **spread(pings, start, seconds),
                "p99_during_ms": harness.pct(during, 0.99),
                "p99_without_ms": harness.pct(without, 0.99),
                "requests_during": len(during),
                "requests_without": len(without),
                "ratio_slots": (
                    harness.pct(during, 0.99) / harness.pct(without, 0.99) if during and len(without) >= 200 else None
                ),
                "p99_all_ms": harness.pct(pooled, 0.99),
                "p99_before_streams_ms": harness.pct(idle_ms, 0.99),
                "ratio_to_before": harness.pct(pooled, 0.99) / harness.pct(idle_ms, 0.99),
                # Cores the gateway kept busy (same request rate): before the streams, and while heartbeating.
                "cores_before_streams": cpu_idle,
                "cores_heartbeating": cpu_busy,
            }
            beats = result["heartbeats"]
            # The same time between pings when there are quiet gaps; else (pings spread evenly) the
            # same process before its streams opened.
            beats["ratio"] = beats["ratio_slots"] if beats["ratio_slots"] is not None else beats["ratio_to_before"]
            beats["ratio_basis"] = "between pings" if beats["ratio_slots"] is not None else "before the streams"
            pings_per_s = result["heartbeats"]["pings_read"] / seconds
            result["heartbeats"]["cpu_us_per_ping"] = (cpu_busy - cpu_idle) / max(pings_per_s, 1e-9) * 1e6
            print(f"heartbeats: {result['heartbeats']}", flush=True)
            # One result at a time to random streams among them.
            rng = random.Random(7)
            picks = [client_ids[rng.randrange(len(client_ids))] for _ in range(samples)]
            pairs = [(str(uuid.uuid4()), cid, index) for cid, index in picks]
            asyncio.run(store_pending(nats_url, pairs, TOKEN_PREFIX, "bench/streams"))
            sent = asyncio.run(one_at_a_time(base, pairs))
            deadline = time.monotonic() + 30
            received: dict[str, int] = {}
            while len(received) < len(pairs) and time.monotonic() < deadline:
                received = {}
                for holder in holders:
                    received.update(holder.call(cmd="results"))
                if len(received) < len(pairs):
                    time.sleep(0.1)  # polling the holders
            latencies = [(received[rid] - sent[rid]) / 1e6 for rid in sent if rid in received]
            result["result_latency"] = {
                "samples": len(pairs),
                "lost": len(pairs) - len(latencies),
                "p50_ms": harness.pct(latencies, 0.5),
                "p99_ms": harness.pct(latencies, 0.99),
            }
            print(f"one result to a random stream: {result['result_latency']}", flush=True)
            result["rss_after_mib"] = harness.rss_kib(gateway.pid) / 1024
        finally:
            for holder in holders:
                holder.stop()
    result["load_average"] = os.getloadavg()[0]
    beats, latency = result["heartbeats"], result["result_latency"]
    result["met"] = (
        result["rss"]["at_100k_gib_extrapolated"] <= 2.0
        # The before-streams baseline (a process seconds old, NATS mirrors syncing) gave p99 13-72 ms
        # at 200 rps against 3-5 ms while pinging in every run here: not comparable, so only a
        # same-time comparison (quiet gaps between pings) counts toward the goal.
        and (beats["ratio_slots"] is None or beats["ratio_slots"] <= 2.0)
        and latency["p99_ms"] <= 50.0
        and latency["lost"] == 0
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.common_args(parser, runs=2)
    parser.add_argument("--streams", type=int, default=100_000)
    parser.add_argument("--interval", type=float, default=20.0, help="heartbeat interval of the gateway (s)")
    parser.add_argument("--rate", type=float, default=200.0, help="GET /health per second (open loop)")
    parser.add_argument("--samples", type=int, default=200, help="results sent one at a time")
    parser.add_argument("--baseline-secs", type=float, default=10.0, help="GET /health before any stream opened")
    parser.add_argument("--holder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.holder:
        harness.raise_fd_limit()
        os.nice(10)
        asyncio.run(Holder(args.holder).serve())
        return
    harness.write_json(args.json, measure(args))


if __name__ == "__main__":
    main()
