"""Fault drills against NoETL: slow beyond timeouts, flapping — bounded errors, no pile-up."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import Standin
from tests.support.gateway import GatewayInstance, call


@pytest.mark.gen_test(timeout=60)
async def test_slow_noetl_gives_bounded_504_and_no_pending_state(
    make_gateway, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw: GatewayInstance = await make_gateway(NOETL_TIMEOUT_SECS="0.3")
    standin.state.execute_delay = 2.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(
        *[call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": f"good{i}"}) for i in range(20)]
    )
    elapsed = loop.time() - started
    assert {status for status, _, _ in results} == {504}
    assert all(body == {"error": "NoETL did not answer in time"} for _, body, _ in results)
    assert elapsed < 1.5  # bounded by NOETL_TIMEOUT_SECS, not by NoETL
    assert gw.services is not None and gw.services.callbacks.pending == 0
    assert gw.services.inflight == 0


@pytest.mark.gen_test(timeout=60)
async def test_flapping_noetl_502_then_recovers(make_gateway, standin: Standin, client: aiohttp.ClientSession) -> None:
    gw: GatewayInstance = await make_gateway()
    url = f"{gw.url}/api/auth/login"
    status, _, _ = await call(client, "POST", url, {"auth0_token": "good-before"})
    assert status == 200
    # NoETL goes away: new requests fail fast with 502, nothing waits.
    await standin.go_down()
    for _ in range(10):
        status, body, _ = await call(client, "POST", url, {"auth0_token": "good-during"})
        assert status == 502 and body == {"error": "NoETL server is unreachable"}
    assert gw.services is not None and gw.services.callbacks.pending == 0
    # NoETL comes back on the same address: the gateway recovers without a restart.
    standin.come_back()
    status, _, _ = await call(client, "POST", url, {"auth0_token": "good-after"})
    assert status == 200
