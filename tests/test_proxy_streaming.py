"""The proxy streams both ways, bounds bodies, and cancels NoETL's side when the client leaves."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from tests.conftest import Standin
from tests.standin.proxy_routes import CHUNK, PATTERN, pattern_crc, routes_state
from tests.support.gateway import GatewayInstance
from tests.support.raw_http import raw_request, request_head
from tests.support.signin import bearer, login
from tests.support.waiting import wait_for


async def pattern_body(size: int) -> AsyncIterator[bytes]:
    left = size
    while left > 0:
        piece = PATTERN if left >= CHUNK else PATTERN[:left]
        left -= len(piece)
        yield piece


@pytest.mark.gen_test
async def test_streamed_response_reaches_client_before_upstream_finishes(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    gate = standin.state.gates.setdefault("standin/slow", asyncio.Event())
    async with client.get(f"{gateway.url}/noetl/standin/slow", headers=bearer(token)) as resp:
        assert resp.status == 200
        first = await asyncio.wait_for(resp.content.readline(), 5)
        assert first == b"first\n"
        assert not gate.is_set()  # NoETL is still holding the rest back
        gate.set()
        assert await asyncio.wait_for(resp.content.read(), 5) == b"second\n"


@pytest.mark.gen_test
async def test_request_body_reaches_upstream_while_client_still_sends(
    gateway: GatewayInstance, standin: Standin, token: str
) -> None:
    half = 512 * 1024
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    head = request_head("PUT", "/noetl/standin/upload", token, f"Content-Length: {2 * half}")
    writer.write(head.encode() + PATTERN * (half // CHUNK))
    await writer.drain()
    routes = routes_state(standin.state)
    # The first half is at NoETL before the second half exists at all.
    await wait_for(lambda: routes.uploads and routes.uploads[-1].size == half, timeout=5)
    assert not routes.uploads[-1].completed
    writer.write(PATTERN * (half // CHUNK))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    body = orjson.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["size"] == 2 * half and body["crc32"] == pattern_crc(2 * half)
    (call,) = standin.state.calls_to("/api/standin/upload")
    assert call.headers["Content-Length"] == str(2 * half)


@pytest.mark.gen_test
async def test_chunked_upload_and_download_stream_through(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    size = 5 * 1024 * 1024 + 123
    async with client.post(
        f"{gateway.url}/noetl/standin/upload", data=pattern_body(size), headers=bearer(token)
    ) as resp:
        assert resp.status == 200
        answer = await resp.json()
        assert (answer["size"], answer["crc32"]) == (size, pattern_crc(size))
    (call,) = standin.state.calls_to("/api/standin/upload")
    assert call.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in call.headers
    url = f"{gateway.url}/noetl/standin/download?size={size}&chunked=1"
    async with client.get(url, headers=bearer(token)) as resp:
        assert resp.status == 200 and "Content-Length" not in resp.headers
        assert resp.headers["Content-Disposition"] == 'attachment; filename="blob.bin"'
        crc, received = 0, 0
        async for piece in resp.content.iter_any():
            crc, received = zlib.crc32(piece, crc), received + len(piece)
    assert (received, crc) == (size, pattern_crc(size))


@pytest.mark.gen_test
async def test_client_abort_while_upstream_is_silent_cancels_upstream(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    routes = routes_state(standin.state)
    request = asyncio.ensure_future(client.get(f"{gateway.url}/noetl/standin/hang", headers=bearer(token)))
    await asyncio.wait_for(routes.event("started", "hang").wait(), 5)
    assert not routes.event("disconnected", "hang").is_set()
    request.cancel()  # the client gives up and closes its connection
    await asyncio.wait_for(routes.event("disconnected", "hang").wait(), 5)
    assert gateway.services is not None
    metrics = gateway.services.metrics.registry
    labels = {"route": "proxy", "method": "GET", "status": "499"}  # logged as "client closed request"
    await wait_for(lambda: metrics.get_sample_value("gateway_http_requests_total", labels) == 1, timeout=5)
    assert gateway.services.inflight == 0


@pytest.mark.gen_test
async def test_client_abort_mid_download_cancels_upstream(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    routes = routes_state(standin.state)
    url = f"{gateway.url}/noetl/standin/download?size={1 << 30}"
    resp = await client.get(url, headers=bearer(token))
    assert resp.status == 200
    await resp.content.readexactly(1024 * 1024)
    resp.close()  # drops the connection mid-body
    await asyncio.wait_for(routes.event("disconnected", "download").wait(), 10)
    assert routes.downloads_finished == 0


@pytest.mark.gen_test
async def test_client_abort_mid_upload_cancels_upstream(gateway: GatewayInstance, standin: Standin, token: str) -> None:
    routes = routes_state(standin.state)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    head = request_head("POST", "/noetl/standin/upload", token, f"Content-Length: {10 * 1024 * 1024}")
    writer.write(head.encode() + PATTERN * 8)
    await writer.drain()
    await wait_for(lambda: routes.uploads and routes.uploads[-1].size == 8 * CHUNK, timeout=5)
    writer.close()
    await asyncio.wait_for(routes.event("disconnected", "upload").wait(), 5)
    assert not routes.uploads[-1].completed
    del reader


@pytest.mark.gen_test
async def test_declared_body_over_the_limit_is_413_before_any_byte_moves(
    make_gateway: object, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(GATEWAY_PROXY_MAX_BODY_BYTES=str(4 * 1024 * 1024))  # type: ignore[operator]
    token = await login(client, gw)
    head = request_head("PUT", "/noetl/standin/upload", token, f"Content-Length: {4 * 1024 * 1024 + 1}")
    status, headers, payload = await raw_request(gw.port, head)
    assert status == 413 and headers["content-type"] == "application/json"
    assert orjson.loads(payload) == {"error": f"Request body too large (limit {4 * 1024 * 1024} bytes)"}
    assert standin.state.calls_to("/api/standin/upload") == []
    # At the limit exactly it goes through.
    async with client.put(f"{gw.url}/noetl/standin/upload", data=PATTERN * 64, headers=bearer(token)) as resp:
        assert resp.status == 200 and (await resp.json())["size"] == 64 * CHUNK


@pytest.mark.gen_test
async def test_chunked_body_over_the_limit_is_413_and_upstream_never_completes(
    make_gateway: object, standin: Standin, client: aiohttp.ClientSession
) -> None:
    limit = 4 * 1024 * 1024
    gw = await make_gateway(GATEWAY_PROXY_MAX_BODY_BYTES=str(limit))  # type: ignore[operator]
    token = await login(client, gw)
    routes = routes_state(standin.state)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(request_head("POST", "/noetl/standin/upload", token, "Transfer-Encoding: chunked").encode())
    chunk = b"%x\r\n" % CHUNK + PATTERN + b"\r\n"
    for _ in range(limit // CHUNK + 1):
        writer.write(chunk)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 413")
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2]) == {"error": f"Request body too large (limit {limit} bytes)"}
    await asyncio.wait_for(routes.event("disconnected", "upload").wait(), 5)
    assert routes.uploads and not any(upload.completed for upload in routes.uploads)
