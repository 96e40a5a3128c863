"""GET /events: auth, the init message, ids, heartbeat, limits, logout and expiry (CONTRACT §4, §8)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.auth.sessions import Session, User
from gateway.auth.tokens import token_hash
from gateway.version import __version__
from tests.conftest import GatewayFactory
from tests.support.gateway import GatewayInstance, GatewayProcess, call
from tests.support.live import services_of
from tests.support.signin import login
from tests.support.sse_client import SseStream, init_of, open_stream, streaming
from tests.support.waiting import wait_for


@pytest.mark.gen_test
async def test_init_message_headers_and_id(gateway: GatewayInstance, client: aiohttp.ClientSession, token: str) -> None:
    async with streaming(client, gateway.url, token) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["Cache-Control"] == "no-cache"
        assert stream.headers["X-Accel-Buffering"] == "no"
        first = stream.events[0]
        assert first.event == "message" and first.id is not None
        message = first.json
        client_id = message["result"]["clientId"]
        assert message == {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {
                "protocolVersion": "2024-11-05",
                "serverInfo": {"name": "noetl-gateway", "version": __version__},
                "clientId": client_id,
                "capabilities": {"playbooks": True, "callbacks": True, "subscriptions": True, "playbookState": True},
            },
        }
        # The client is registered to this session in NATS KV (CONTRACT §7).
        record = await services_of(gateway).live.clients.bucket.get(client_id)
        assert record is not None and record["session"] == token_hash(token) and record["created_at"]


@pytest.mark.gen_test
@pytest.mark.parametrize("via", ["bearer", "header", "cookie"])
async def test_token_sources(gateway: GatewayInstance, client: aiohttp.ClientSession, via: str, token: str) -> None:
    async with streaming(client, gateway.url, token, via=via) as stream:
        assert init_of(stream)["clientId"]


@pytest.mark.gen_test
@pytest.mark.parametrize("token", [None, "sess_unknown_token", "bad token!"])
async def test_bad_session_is_one_error_event_then_close(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str | None
) -> None:
    stream = await SseStream.open(client, gateway.url, token)
    await stream.wait_ended()
    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert [e.event for e in stream.events] == ["error"]
    error = stream.events[0]
    assert error.id is not None
    assert error.json["jsonrpc"] == "2.0"
    assert error.json["error"]["code"] == -32002
    assert error.json["error"]["message"] in ("Missing authentication token", "Invalid or expired session")


@pytest.mark.gen_test
async def test_heartbeat_carries_the_last_event_id(make_gateway: GatewayFactory, client: aiohttp.ClientSession) -> None:
    gw = await make_gateway(GATEWAY_HEARTBEAT_INTERVAL_SECS="0.2")
    token = await login(client, gw)
    async with streaming(client, gw.url, token) as stream:
        first = await stream.next_named("ping", timeout=3)
        second = await stream.next_named("ping", timeout=3, after=stream.events.index(first) + 1)
        assert first.json == {"jsonrpc": "2.0", "method": "ping", "params": {}}
        assert first.id == stream.events[0].id and second.id == first.id  # nothing delivered in between


@pytest.mark.gen_test
async def test_streams_per_session_are_limited(make_gateway: GatewayFactory, client: aiohttp.ClientSession) -> None:
    gw = await make_gateway(GATEWAY_SSE_MAX_PER_SESSION="2")
    token = await login(client, gw)
    streams = [await open_stream(client, gw.url, token) for _ in range(2)]
    try:
        status, body, headers = await call(client, "GET", f"{gw.url}/events?session_token={token}")
        assert status == 429
        assert headers["Content-Type"] == "application/json"
        assert body == {"error": "Too many event streams for this session (limit 2)"}
        assert headers["Retry-After"]
        other = await open_stream(client, gw.url, await login(client, gw))  # another session is not affected
        await other.close()
        await streams[0].close()
        live = services_of(gw).live
        await wait_for(lambda: live.streams_of_session(token_hash(token)) == 1)
        again = await open_stream(client, gw.url, token)
        assert init_of(again)["clientId"]
        await again.close()
    finally:
        for stream in streams:
            await stream.close()


@pytest.mark.gen_test
async def test_logout_closes_the_stream(gateway: GatewayInstance, client: aiohttp.ClientSession, token: str) -> None:
    keep = await login(client, gateway)
    stream = await open_stream(client, gateway.url, token)
    other = await open_stream(client, gateway.url, keep)
    try:
        status, _, _ = await call(client, "POST", f"{gateway.url}/api/auth/logout", {"session_token": token})
        assert status == 200
        await stream.wait_ended(timeout=5)
        assert stream.events[-1].event == "error"
        assert stream.events[-1].json["error"] == {"code": -32002, "message": "Session logged out"}
        assert not other.ended.is_set()  # only that session's streams
        again = await SseStream.open(client, gateway.url, token)
        await again.wait_ended()
        assert [e.event for e in again.events] == ["error"]
    finally:
        await stream.close()
        await other.close()


@pytest.mark.gen_test
async def test_session_expiry_closes_the_stream(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    token = "sess_expiring_" + str(time.time_ns())
    expires = time.time() + 1.0
    user = User(user_id=7, email="short@example.com", display_name="Short")
    expires_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(expires)) + f".{int(expires * 1000) % 1000:03d}Z"
    await services_of(gateway).sessions.store(Session(user, expires_at, token_hash(token), expires))
    async with streaming(client, gateway.url, token) as stream:
        assert init_of(stream)["clientId"]
        await stream.wait_ended(timeout=5)
        assert stream.events[-1].json["error"] == {"code": -32002, "message": "Session expired"}


@pytest.mark.gen_test
async def test_query_token_is_not_logged(
    gateway: GatewayInstance, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    token = await login(client, gateway)
    stream = await open_stream(client, gateway.url, token)
    await stream.close()
    await wait_for(lambda: services_of(gateway).live.stream_count == 0)
    await wait_for(lambda: any("/events" in record.getMessage() for record in caplog.records))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "session_token=[redacted]" in text
    assert token not in text


@pytest.mark.gen_test(timeout=60)
async def test_sigterm_sends_retry_and_closes_cleanly(
    gateway: GatewayInstance, gateway_env: dict[str, str], client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    process = GatewayProcess(gateway_env)
    await loop.run_in_executor(None, process.start, str(tmp_path / "gateway.log"))
    try:
        token = await login(client, gateway)
        streams = [await open_stream(client, process.url, token) for _ in range(3)]
        stopping = loop.run_in_executor(None, process.stop)
        for stream in streams:
            await stream.wait_ended(timeout=10)
            assert stream.events[-1].event == "retry"
            assert stream.retry is not None and 1000 <= stream.retry <= 5000
        assert await stopping == 0  # exit code of a graceful stop
    finally:
        await loop.run_in_executor(None, process.stop)
