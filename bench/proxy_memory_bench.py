"""256 MiB up and 256 MiB down through the gateway's /noetl proxy: resident-memory growth (goal ≤ 16 MB).

The approach of ``tests/test_proxy_memory.py``, as a benchmark: the NoETL stand-in
(``python -m tests.standin``: ``/api/standin/upload`` counts a streamed body without keeping it,
``/api/standin/download?size=N`` streams N bytes) behind a real gateway process
(``python -m gateway``); this process is the client. Per run: warm-up (4 MiB each way), then
the gateway's ``VmRSS`` as the baseline, its peak reset (``/proc/PID/clear_refs``), one upload
and one download of ``--mib`` MiB, and the growth = max(sampled ``VmRSS`` every 10 ms, the
kernel's ``VmHWM`` peak) − baseline. ``--runs`` runs on the same process; median and spread.

Usage: .venv/bin/python bench/proxy_memory_bench.py [--mib 256] [--runs 3] [--smoke] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import harness
from harness import Processes

from tests.support.rss import RssSampler, reset_peak

MIB = 1024 * 1024
GOAL_MB = 16.0
BLOCK = bytes(range(256)) * (MIB // 256)  # 1 MiB, reused: the client holds no copy of the body


async def blocks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // MIB):
        yield BLOCK


async def one_run(http: aiohttp.ClientSession, base: str, token: str, pid: int, size: int) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    with RssSampler(pid, hwm_counts=reset_peak(pid)) as sampler:
        started = time.monotonic()
        headers = {**auth, "Content-Length": str(size)}
        async with http.put(f"{base}/noetl/standin/upload", data=blocks(size), headers=headers) as resp:
            answer = await resp.json()
        up_secs = time.monotonic() - started
        if resp.status != 200 or answer.get("size") != size:
            raise RuntimeError(f"upload: {resp.status} {answer}")
        started = time.monotonic()
        received, crc = 0, 0
        async with http.get(f"{base}/noetl/standin/download?size={size}", headers=auth) as resp:
            if resp.status != 200:
                raise RuntimeError(f"download: {resp.status}")
            async for piece in resp.content.iter_chunked(MIB):
                received += len(piece)
                crc = zlib.crc32(piece, crc)
        down_secs = time.monotonic() - started
        if received != size:
            raise RuntimeError(f"download: {received} of {size} bytes")
    return {
        "baseline_rss_mib": sampler.baseline_kib / 1024,
        "peak_rss_mib": sampler.peak_kib / 1024,
        "growth_mb": sampler.growth_bytes / 1e6,
        "growth_mib": sampler.growth_bytes / MIB,
        "upload_mib_s": size / MIB / up_secs,
        "download_mib_s": size / MIB / down_secs,
        "peak_from_vmhwm": sampler.hwm_counts,
    }


async def drive(base: str, pid: int, size: int, runs: int) -> list[dict[str, Any]]:
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(f"{base}/api/auth/login", json={"auth0_token": "good-bench"}) as resp:
            login = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"login failed: {resp.status} {login}")
        token = login["session_token"]
        auth = {"Authorization": f"Bearer {token}"}
        # Warm-up: imports, pools and buffers exist before the baseline is read.
        async with http.put(f"{base}/noetl/standin/upload", data=blocks(4 * MIB), headers=auth) as resp:
            await resp.read()
        async with http.get(f"{base}/noetl/standin/download?size={4 * MIB}", headers=auth) as resp:
            await resp.read()
        results = []
        for index in range(runs):
            results.append(await one_run(http, base, token, pid, size))
            print(f"run {index + 1}: {json.dumps(results[-1])}", flush=True)
        return results


def measure(args: argparse.Namespace) -> dict[str, Any]:
    runs = 1 if args.smoke else args.runs
    size = (8 if args.smoke else args.mib) * MIB
    with Processes("proxy-memory") as procs:
        standin_port, port = harness.free_port(), harness.free_port()
        standin = procs.start("standin", [harness.PYTHON, "-m", "tests.standin", "--port", str(standin_port)])
        harness.wait_http(f"http://127.0.0.1:{standin_port}/api/standin/status/200", standin)
        env = harness.gateway_env(port, NOETL_BASE_URL=f"http://127.0.0.1:{standin_port}")
        gateway = procs.start("gateway", [harness.PYTHON, "-m", "gateway"], env)
        base = f"http://127.0.0.1:{port}"
        harness.wait_http(f"{base}/health", gateway)
        results = asyncio.run(drive(base, gateway.pid, size, runs))
    growth = harness.median_spread([r["growth_mb"] for r in results])
    return {
        "scenario": "proxy_memory",
        "mib_each_way": size // MIB,
        "runs": results,
        "growth_mb": growth,
        "upload_mib_s": harness.median_spread([r["upload_mib_s"] for r in results]),
        "download_mib_s": harness.median_spread([r["download_mib_s"] for r in results]),
        "goal_mb": GOAL_MB,
        "met": growth["max"] <= GOAL_MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.common_args(parser)
    parser.add_argument("--mib", type=int, default=256, help="MiB each way per run")
    args = parser.parse_args()
    harness.write_json(args.json, measure(args))


if __name__ == "__main__":
    main()
