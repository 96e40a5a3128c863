"""NATS comes and goes: cached sessions keep working, readiness says so, reconnect is automatic."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import Standin
from tests.support.gateway import GatewayInstance, call
from tests.support.nats_server import NatsServer, free_port
from tests.support.waiting import wait_for


async def readiness(client: aiohttp.ClientSession, gw: GatewayInstance) -> str:
    _, body, _ = await call(client, "GET", f"{gw.url}/health/ready")
    return str(body["status"])


@pytest.mark.gen_test(timeout=60)
async def test_nats_stop_and_restart(
    make_gateway, own_nats: NatsServer, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(NATS_URL=own_nats.url)
    assert await readiness(client, gw) == "ready"
    _, login, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "good-outage"})
    token = login["session_token"]

    await asyncio.get_running_loop().run_in_executor(None, own_nats.stop)
    await wait_for(lambda: _is(client, gw, "degraded"), timeout=10)
    # The cached session is still served, without asking NoETL.
    _, body, _ = await call(client, "POST", f"{gw.url}/api/auth/validate", {"session_token": token})
    assert body["valid"] is True
    assert not standin.state.calls_to("/api/auth/session/validate")
    # A miss goes to NoETL while NATS is away.
    _, body, _ = await call(client, "POST", f"{gw.url}/api/auth/validate", {"session_token": "tok-outage-miss"})
    assert body["valid"] is False
    assert len(standin.state.calls_to("/api/auth/session/validate")) == 1
    # A login during the outage works (callback over HTTP, waiter in this process).
    status, _, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "good-during"})
    assert status == 200

    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, own_nats.start)
    restarted = loop.time()
    await wait_for(lambda: _is(client, gw, "ready"), timeout=5)
    assert loop.time() - restarted < 5.0
    _, body, _ = await call(client, "POST", f"{gw.url}/api/auth/validate", {"session_token": token})
    assert body["valid"] is True


async def _is(client: aiohttp.ClientSession, gw: GatewayInstance, state: str) -> bool:
    return await readiness(client, gw) == state


@pytest.mark.gen_test
async def test_starts_without_nats_and_picks_it_up(
    make_gateway, nats_binary: str, client: aiohttp.ClientSession
) -> None:
    server = NatsServer(nats_binary)
    gw = await make_gateway(NATS_URL=server.url)
    try:
        assert await readiness(client, gw) == "degraded"
        _, body, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "good-no-nats"})
        assert body["status"] == "authenticated"
        await asyncio.get_running_loop().run_in_executor(None, server.start)
        await wait_for(lambda: _is(client, gw, "ready"), timeout=10)
    finally:
        server.close()


@pytest.mark.gen_test
async def test_nats_disabled_by_empty_url(make_gateway, client: aiohttp.ClientSession) -> None:
    gw = await make_gateway(NATS_URL="")
    _, body, _ = await call(client, "GET", f"{gw.url}/health/ready")
    assert body["nats"] == "disabled" and body["status"] == "degraded"


@pytest.mark.gen_test
async def test_ready_is_503_when_noetl_unreachable(make_gateway, client: aiohttp.ClientSession) -> None:
    gw = await make_gateway(NOETL_BASE_URL=f"http://127.0.0.1:{free_port()}")
    status, body, _ = await call(client, "GET", f"{gw.url}/health/ready")
    assert status == 503
    assert body["status"] == "unavailable" and body["noetl"] == "unreachable" and body["version"]
    status, text, _ = await call(client, "GET", f"{gw.url}/health")
    assert status == 200 and text == "ok"
