"""Heartbeats to 10k SSE streams while serving requests: request latency during heartbeats vs without.

Goal (issue 8): request p99 while heartbeats go out ≤ 2× the p99 without (a naive loop over all
streams stalls a process for 0.3–1 s). Same process, same 10k open streams, so the only
difference between the two samples is the heartbeat traffic:

* the gateway (``python -m gateway``, ``GATEWAY_AUTH_BYPASS`` standing in for login, no NATS:
  streams then open as fast as the gateway accepts them, which packs the heartbeats — each
  stream's timer runs from its own start — as densely as they can ever be) with
  ``GATEWAY_HEARTBEAT_INTERVAL_SECS`` = ``--interval``;
* a holder process opens ``--streams`` streams in ``--waves`` waves (each as fast as the gateway
  accepts, the waves ``interval / (waves + 1)`` apart) and timestamps every ``ping`` it reads, so
  within every interval bursts of heartbeats alternate with quiet gaps: other load on a shared
  machine, which comes and goes over seconds, then falls on both samples alike;
* a request process sends ``GET /health`` open-loop at ``--rate`` per second over 8 keep-alive
  connections, each request's latency counted from its *scheduled* send time (a stall delays
  everything behind it, and is counted, unlike a closed-loop generator's).

Each heartbeat cycle of the interval is one run: requests scheduled in a 100 ms slot in which
pings arrived are "during heartbeats", those at least 0.2 s away from any ping "without". The
ratio of the two p99s is reported per cycle (median and spread over ``--runs`` cycles) and over
all cycles pooled. Since the gateway spreads each stream's first ping over the whole interval
(gateway/live/streams.py), the waves no longer leave quiet gaps at 10k streams: a cycle with
fewer than ``MIN_WITHOUT`` requests away from pings is compared with the same process's requests
before any stream opened (``without_source`` says which baseline each cycle used).

Usage: .venv/bin/python bench/heartbeat_bench.py [--streams 10000] [--runs 3] [--smoke] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from typing import Any

import harness
from harness import HttpConnection, Processes

GOAL = 2.0
SLOT = 0.1  # seconds: the resolution at which pings and requests are matched
QUIET = 0.2  # "without heartbeats": no ping this close (a ping write delays others by ≪ 0.2 s)
MIN_WITHOUT = 200  # fewer requests away from pings than this: the before-streams sample is the baseline


# -- the holder process: keeps the streams open, timestamps pings --------------------------------


async def hold(url: str, count: int, waves: int, gap: float) -> dict[str, Any]:
    host, port, _ = harness.split_url(url)
    pings: list[float] = []
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.Task[None]] = []
    gate = asyncio.Semaphore(256)

    async def read(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while chunk := await reader.read(65536):
                if b"event: ping" in chunk:
                    pings.append(time.monotonic())

    async def one(index: int) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection(host, port)
            path = f"/events?session_token=bench-heartbeat-{index}"
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"stream refused: {head[:100]!r}")
            writers.append(writer)
            readers.append(asyncio.create_task(read(reader)))

    opened_at = time.monotonic()
    spans = []
    per_wave = -(-count // waves)
    for wave in range(waves):  # waves ``gap`` apart: heartbeat bursts and quiet gaps alternate
        await asyncio.sleep(max(0.0, opened_at + wave * gap - time.monotonic()))
        began = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(wave * per_wave, min(count, (wave + 1) * per_wave))))
        spans.append((began, time.monotonic()))
    open_done = time.monotonic()
    opened = {"opened": len(writers), "opened_at": opened_at, "open_secs": open_done - opened_at, "waves": spans}
    print(json.dumps(opened), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # held until the driver is done
    for task in readers:
        task.cancel()
    for writer in writers:
        writer.close()
    return {"opened_at": opened_at, "open_done": open_done, "pings": pings}


# -- the request process: open-loop GETs ----------------------------------------------------------


async def requests(url: str, rate: float, start: float, seconds: float) -> list[tuple[float, float]]:
    host, port, path = harness.split_url(url)
    total = int(rate * seconds)
    samples: list[tuple[float, float]] = []
    connections = 8

    async def worker(k: int) -> None:
        conn = HttpConnection(host, port, path, {})
        for i in range(k, total, connections):
            due = start + i / rate
            sent = due
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
                sent = time.monotonic()  # our own timer's lateness is not the server's
            # else: the previous answer came late, so this one starts late: counted from ``due``
            status = await conn.get()
            if status != 200:
                raise RuntimeError(f"GET {path}: {status}")
            samples.append((due, time.monotonic() - sent))
        conn.close()

    await asyncio.gather(*(worker(k) for k in range(connections)))
    return samples


# -- the driver ------------------------------------------------------------------------------


def ping_count(base: str) -> int:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    match = re.search(r'^gateway_sse_events_total\{method="ping"\} (\S+)$', text, re.M)
    return int(float(match.group(1))) if match else 0


def sse_streams(base: str) -> int:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    match = re.search(r"^gateway_sse_clients (\S+)$", text, re.M)
    return int(float(match.group(1))) if match else -1


def classify(
    samples: list[tuple[float, float]], pings: list[float], start: float, end: float
) -> tuple[list[float], list[float]]:
    """Latencies (ms) of requests scheduled in a slot with pings, and of those far from any ping."""
    slots = {int((t - start) / SLOT) for t in pings}
    quiet_reach = int(QUIET / SLOT)
    during: list[float] = []
    without: list[float] = []
    for due, latency in samples:
        if not start <= due < end:
            continue
        slot = int((due - start) / SLOT)
        if slot in slots:
            during.append(latency * 1000)
        elif not any(s in slots for s in range(slot - quiet_reach, slot + quiet_reach + 1)):
            without.append(latency * 1000)
    return during, without


def measure(args: argparse.Namespace) -> dict[str, Any]:
    streams = 200 if args.smoke else args.streams
    runs = 1 if args.smoke else args.runs
    interval = 2.0 if args.smoke else args.interval
    rate = 100.0 if args.smoke else args.rate
    waves = 2 if args.smoke else args.waves
    gap = interval / (waves + 1)
    harness.raise_fd_limit()
    with Processes("heartbeat") as procs:
        port = harness.free_port()
        base = f"http://127.0.0.1:{port}"
        env = harness.gateway_env(
            port,
            GATEWAY_AUTH_BYPASS="true",
            GATEWAY_HEARTBEAT_INTERVAL_SECS=str(interval),
            GATEWAY_LOG_LEVEL="WARNING",
        )
        # The gateway alone on CPU 0; the holder (busy reading pings during a burst) and the
        # request process on CPU 1, so that neither takes CPU from the gateway it measures.
        gateway = procs.start("gateway", [harness.PYTHON, "-m", "gateway"], env, cpus={0})
        harness.wait_http(f"{base}/health", gateway)
        # The same process before any stream: the baseline when pings leave no quiet gaps.
        idle_start = time.monotonic() + 2.0  # the request process's own start-up (≈ 0.5 s) must not count
        idle_seconds = min(interval, 10.0)
        idle_run = subprocess.run(
            [
                *harness.taskset(1),
                harness.PYTHON,
                __file__,
                "--requests",
                f"{base}/health",
                *map(str, (rate, idle_start, idle_seconds)),
            ],
            capture_output=True,
            text=True,
            timeout=idle_seconds + 60,
        )
        if idle_run.returncode != 0:
            raise RuntimeError(f"request process failed: {idle_run.stderr[-2000:]}")
        before = [latency * 1000 for _, latency in json.loads(idle_run.stdout)]
        holder = subprocess.Popen(
            [*harness.taskset(1), harness.PYTHON, __file__, "--hold", base, str(streams), str(waves), str(gap)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            opened = json.loads(holder.stdout.readline() or "{}")
            if opened.get("opened") != streams:
                raise RuntimeError(f"holder failed: {opened}")
            deadline = time.monotonic() + 30
            while sse_streams(base) != streams:
                if time.monotonic() > deadline:
                    raise RuntimeError("streams did not all register")
                time.sleep(0.1)  # polling the gateway's own gauge
            # ``runs`` whole cycles, each from just before one heartbeat round (every stream's
            # first ping is due about one interval after it opened; CLOCK_MONOTONIC is shared).
            start = max(time.monotonic() + 0.5, opened["opened_at"] + interval - gap / 2)
            seconds = interval * runs
            window = (rate, start, seconds)
            pings_before = ping_count(base)
            done = subprocess.run(
                [*harness.taskset(1), harness.PYTHON, __file__, "--requests", f"{base}/health", *map(str, window)],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
            )
            if done.returncode != 0:
                raise RuntimeError(f"request process failed: {done.stderr[-2000:]}")
            samples = [tuple(s) for s in json.loads(done.stdout)]
            pings_sent = ping_count(base) - pings_before
            held = json.loads(holder.communicate("done\n", timeout=60)[0].strip().splitlines()[-1])
        finally:
            if holder.poll() is None:
                holder.kill()
    pings = held["pings"]
    cycles = []
    for index in range(runs):
        lo, hi = start + index * interval, start + (index + 1) * interval
        during, without = classify(samples, pings, lo, hi)
        source = "between pings"
        if len(without) < MIN_WITHOUT:
            during = [latency * 1000 for due, latency in samples if lo <= due < hi]
            without, source = before, "before the streams opened"
        cycle_pings = sum(1 for t in pings if lo <= t < hi)
        cycles.append(
            {
                "pings": cycle_pings,
                "requests_during": len(during),
                "requests_without": len(without),
                "p50_during_ms": harness.pct(during, 0.5),
                "p99_during_ms": harness.pct(during, 0.99),
                "max_during_ms": max(during, default=float("nan")),
                "without_source": source,
                "p50_without_ms": harness.pct(without, 0.5),
                "p99_without_ms": harness.pct(without, 0.99),
                "ratio": harness.pct(during, 0.99) / harness.pct(without, 0.99) if during and without else float("nan"),
            }
        )
        print(f"cycle {index + 1}: {json.dumps(cycles[-1])}", flush=True)
    valid = [c["ratio"] for c in cycles if c["ratio"] == c["ratio"]]
    during, without = classify(samples, pings, start, start + runs * interval)
    if len(without) < MIN_WITHOUT:
        during = [latency * 1000 for due, latency in samples if start <= due < start + runs * interval]
        without = before
    pooled = {
        "requests_during": len(during),
        "requests_without": len(without),
        "p99_during_ms": harness.pct(during, 0.99),
        "p99_without_ms": harness.pct(without, 0.99),
        "ratio": harness.pct(during, 0.99) / harness.pct(without, 0.99) if during and without else float("nan"),
    }
    ratio = (
        harness.median_spread(valid) if valid else {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    )
    return {
        "scenario": "heartbeat",
        "streams": streams,
        "interval_s": interval,
        "rate": rate,
        "open_secs": held["open_done"] - held["opened_at"],
        "pings_sent": pings_sent,
        "pings_read": len(pings),
        "waves": waves,
        "cycles": cycles,
        "pooled": pooled,
        "p99_during_ms": harness.median_spread([c["p99_during_ms"] for c in cycles]),
        "p99_without_ms": harness.median_spread([c["p99_without_ms"] for c in cycles]),
        "ratio": ratio,
        "goal": GOAL,
        "met": ratio["median"] <= GOAL,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.common_args(parser)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=20.0, help="heartbeat interval of the gateway (s)")
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second (open loop)")
    parser.add_argument("--waves", type=int, default=5, help="streams open in this many waves")
    parser.add_argument("--hold", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--requests", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hold:
        harness.raise_fd_limit()
        # Lowest priority: the holder shares CPU 1 with the request process, whose timing must
        # not wait behind the holder reading a burst of pings.
        os.nice(19)
        url, count, waves, gap = args.hold
        print(json.dumps(asyncio.run(hold(url, int(count), int(waves), float(gap)))))
        return
    if args.requests:
        url, rate, start, seconds = args.requests
        print(json.dumps(asyncio.run(requests(url, float(rate), float(start), float(seconds)))))
        return
    harness.write_json(args.json, measure(args))


if __name__ == "__main__":
    main()
