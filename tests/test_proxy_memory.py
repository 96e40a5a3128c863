"""256 MB up and 256 MB down through a real gateway process: its memory must stay flat.

The gateway runs as ``python -m gateway`` (its own process, so its resident memory is
its own); a sampler thread reads ``VmRSS`` from /proc every 10 ms and ``VmHWM`` (the
kernel's own peak) is read at the end, so a spike between samples cannot hide.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.conftest import Standin
from tests.standin.proxy_routes import PATTERN, pattern_crc, routes_state
from tests.support.gateway import GatewayProcess
from tests.support.rss import RssSampler
from tests.support.signin import bearer, login
from tests.support.skips import reads_proc

SIZE = 256 * 1024 * 1024
MIB = 1024 * 1024
BLOCK = PATTERN * 16  # 1 MiB, reused: the client side holds no copy of the body either
GROWTH_BOUND = 64 * MIB

pytestmark = reads_proc


async def blocks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // len(BLOCK)):
        yield BLOCK


@pytest.mark.gen_test(timeout=90)
async def test_256_mb_each_way_keeps_gateway_memory_flat(
    gateway_process: GatewayProcess, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = gateway_process
    pid = gw.pid
    token = await login(client, gw)
    # Warm up every code path once (imports, pools, buffers) before the baseline.
    async with client.put(f"{gw.url}/noetl/standin/upload", data=blocks(4 * MIB), headers=bearer(token)) as resp:
        assert resp.status == 200
    async with client.get(f"{gw.url}/noetl/standin/download?size={4 * MIB}", headers=bearer(token)) as resp:
        assert len(await resp.read()) == 4 * MIB
    started = time.monotonic()
    with RssSampler(pid) as sampler:
        headers = {**bearer(token), "Content-Length": str(SIZE)}
        async with client.put(f"{gw.url}/noetl/standin/upload", data=blocks(SIZE), headers=headers) as resp:
            assert resp.status == 200
            answer = await resp.json()
        upload_secs = time.monotonic() - started
        download_started = time.monotonic()
        crc, received = 0, 0
        url = f"{gw.url}/noetl/standin/download?size={SIZE}"
        async with client.get(url, headers=bearer(token), timeout=aiohttp.ClientTimeout(total=60)) as resp:
            assert resp.status == 200 and resp.headers["Content-Length"] == str(SIZE)
            async for piece in resp.content.iter_chunked(MIB):
                crc, received = zlib.crc32(piece, crc), received + len(piece)
        download_secs = time.monotonic() - download_started

    assert answer["size"] == SIZE and answer["crc32"] == pattern_crc(SIZE)
    assert routes_state(standin.state).uploads[-1].largest_chunk <= 1 * MIB
    assert (received, crc) == (SIZE, pattern_crc(SIZE))
    growth = sampler.growth_bytes
    print(
        f"\nproxy memory: baseline {sampler.baseline_kib / 1024:.1f} MiB, peak {sampler.peak_kib / 1024:.1f} MiB, "
        f"growth {growth / MIB:.1f} MiB; upload {SIZE / MIB / upload_secs:.0f} MiB/s, "
        f"download {SIZE / MIB / download_secs:.0f} MiB/s"
    )
    assert growth < GROWTH_BOUND, f"gateway grew by {growth / MIB:.1f} MiB moving 2 x 256 MiB"
