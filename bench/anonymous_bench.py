"""What an anonymous client can cost the gateway: 300 MB bodies and slow-loris connections.

A real gateway process (``python -m gateway``, NATS off, NoETL unreachable: nothing here gets
past the body or header stage); this process is the client, on 127.0.0.1 only.

* **bodies**: per JSON endpoint, one POST of ``--mb`` MB with ``Content-Length`` and one chunked,
  no credentials. Growth = max(VmRSS sampled every 10 ms, VmHWM after a reset) − VmRSS before
  (goal ≤ 16 MB). Also counted: how many got the 413 (the rest saw the close as a reset, which a
  client still pushing hundreds of MB may).
* **slow-loris**: ``--connections`` connections each send a request line, then one header line
  every 200 ms, never the blank line. With ``GATEWAY_IDLE_CONNECTION_TIMEOUT_SECS=--timeout`` each
  must be closed by the gateway; meanwhile ``GET /health`` every 20 ms, latency recorded, compared
  with the same probe before the attack.

Usage: .venv/bin/python bench/anonymous_bench.py [--mb 300] [--connections 500] [--timeout 5] [--smoke] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp
import harness
from harness import Processes

from tests.support.anonymous_bodies import JSON_ENDPOINTS, send_anonymously
from tests.support.rss import RssSampler, reset_peak

MB = 1_000_000
MIB = 1024 * 1024
GOAL_MB = 16.0


async def bodies(base: str, pid: int, size: int) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        for path in JSON_ENDPOINTS:  # warm-up: every path and the 413 once
            await send_anonymously(http, base + path, 4 * MIB, declared=False)
        hwm = reset_peak(pid)
        per_endpoint: dict[str, list[int | None]] = {}
        started = time.monotonic()
        with RssSampler(pid, hwm_counts=hwm) as sampler:
            for path in JSON_ENDPOINTS:
                per_endpoint[path] = [
                    await send_anonymously(http, base + path, size, declared=declared) for declared in (True, False)
                ]
        secs = time.monotonic() - started
    answers = [status for pair in per_endpoint.values() for status in pair]
    return {
        "mb_per_request": size / MB,
        "requests": len(answers),
        "answered_413": answers.count(413),
        "cut_off": answers.count(None),
        "other": [a for a in answers if a not in (413, None)],
        "baseline_rss_mib": sampler.baseline_kib / 1024,
        "growth_mb": sampler.growth_bytes / MB,
        "seconds": secs,
        "per_endpoint": per_endpoint,
    }


async def probe(base: str, stop: asyncio.Event, latencies: list[float], errors: list[str]) -> None:
    """GET /health every 20 ms on fresh connections (what a kubelet probe does)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                async with http.get(f"{base}/health", headers={"Connection": "close"}) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors.append(str(resp.status))
                latencies.append((time.perf_counter() - started) * 1000)
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(type(exc).__name__)
            try:
                await asyncio.wait_for(stop.wait(), 0.02)
            except TimeoutError:
                pass


async def trickle(port: int, closed_after: list[float]) -> None:
    """One slow-loris connection: header lines forever, until the gateway closes it."""
    opened = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: bench\r\n")
    line = 0
    try:
        while True:
            writer.write(f"X-Trickle-{line}: x\r\n".encode())
            line += 1
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), 0.2) == b"":
                    break
            except TimeoutError:
                continue
    except ConnectionError:
        pass
    finally:
        writer.close()
    closed_after.append(time.monotonic() - opened)


async def slow_loris(base: str, port: int, connections: int, timeout: float) -> dict[str, Any]:
    before: list[float] = []
    errors_before: list[str] = []
    stop = asyncio.Event()
    task = asyncio.ensure_future(probe(base, stop, before, errors_before))
    await asyncio.sleep(2.0)  # the probe's quiet baseline: a measuring period, not synchronisation
    stop.set()
    await task

    during: list[float] = []
    errors: list[str] = []
    closed_after: list[float] = []
    stop = asyncio.Event()
    task = asyncio.ensure_future(probe(base, stop, during, errors))
    attackers = [asyncio.ensure_future(trickle(port, closed_after)) for _ in range(connections)]
    done, pending = await asyncio.wait(attackers, timeout=timeout * 4 + 30)
    stop.set()
    await task
    for attacker in pending:
        attacker.cancel()
    return {
        "connections": connections,
        "timeout_s": timeout,
        "closed_by_gateway": len(closed_after),
        "still_open_at_end": len(pending),
        "closed_after_s": harness.median_spread(closed_after) if closed_after else None,
        "health_before_ms": {"p50": harness.pct(before, 0.5), "p99": harness.pct(before, 0.99), "n": len(before)},
        "health_during_ms": {"p50": harness.pct(during, 0.5), "p99": harness.pct(during, 0.99), "n": len(during)},
        "health_errors": errors_before + errors,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    size = (8 if args.smoke else args.mb) * MB
    connections = 50 if args.smoke else args.connections
    timeout = 2.0 if args.smoke else args.timeout
    harness.raise_fd_limit()
    with Processes("anonymous") as procs:
        port = harness.free_port()
        env = harness.gateway_env(port, GATEWAY_IDLE_CONNECTION_TIMEOUT_SECS=str(timeout))
        gateway = procs.start("gateway", [harness.PYTHON, "-m", "gateway"], env)
        base = f"http://127.0.0.1:{port}"
        harness.wait_http(f"{base}/health", gateway)
        body_result = asyncio.run(bodies(base, gateway.pid, size))
        loris = asyncio.run(slow_loris(base, port, connections, timeout))
    return {
        "scenario": "anonymous",
        "bodies": body_result,
        "slow_loris": loris,
        "goal_mb": GOAL_MB,
        "met": body_result["growth_mb"] <= GOAL_MB
        and not body_result["other"]
        and loris["closed_by_gateway"] == connections
        and not loris["health_errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.common_args(parser)
    parser.add_argument("--mb", type=int, default=300, help="MB per anonymous request")
    parser.add_argument("--connections", type=int, default=500, help="slow-loris connections")
    parser.add_argument("--timeout", type=float, default=5.0, help="GATEWAY_IDLE_CONNECTION_TIMEOUT_SECS for the run")
    args = parser.parse_args()
    harness.write_json(args.json, measure(args))


if __name__ == "__main__":
    main()
