"""Header and body deadlines kept by one sweep (handlers/deadlines.py) instead of Tornado's timer per read.

What an anonymous caller can hold is unchanged: a kept-alive connection that sends nothing more, and
a body that never ends on a route that does not even read one, are closed at their deadline. What
a signed-in user holds on purpose is untouched: an event stream and a WebSocket outlive both
deadlines. And the bookkeeping itself costs nothing once nobody owes anything.
"""

from __future__ import annotations

import asyncio
from typing import cast

import aiohttp
import pytest

from handlers.deadlines import ConnectionDeadlines
from tests.conftest import GatewayFactory
from tests.support.gateway import GatewayInstance
from tests.support.graphql_ws import WsClient
from tests.support.live import callback_headers, pending_request, post_result
from tests.support.raw_http import closed_by_server, raw_connection
from tests.support.signin import login
from tests.support.sse_client import init_of, streaming
from tests.support.waiting import wait_for

QUICK = {"GATEWAY_IDLE_CONNECTION_TIMEOUT_SECS": "1", "GATEWAY_BODY_TIMEOUT_SECS": "1"}


def deadlines_of(gw: GatewayInstance) -> ConnectionDeadlines:
    assert gw.app is not None
    return cast(ConnectionDeadlines, gw.app.settings["connection_deadlines"])


async def slow_loris_closed(gw: GatewayInstance) -> None:
    """A connection that never ends its headers, opened now: returns once the gateway closed it."""
    async with raw_connection(gw.port) as (reader, writer):
        writer.write(b"GET /health HTTP/1.1\r\nHost: gateway.test\r\n")
        assert await closed_by_server(reader)


@pytest.mark.gen_test(timeout=30)
async def test_a_kept_alive_connection_that_sends_nothing_more_is_closed(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(**QUICK)
    async with raw_connection(gw.port) as (reader, writer):
        writer.write(b"GET /health HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        assert b"ok" == await asyncio.wait_for(reader.readexactly(2), 5)
        assert await closed_by_server(reader)  # the next request's headers were due within 1 s
    assert deadlines_of(gw).closed_late >= 1


@pytest.mark.parametrize(
    "head",
    [
        "GET /graphql/assets/graphiql.min.css HTTP/1.1",  # a static file: Tornado reads its body, no handler does
        "POST /api/auth/validate HTTP/1.1",  # a JSON route: its body is bounded in size and in time
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_body_that_never_ends_is_closed_on_every_route(make_gateway: GatewayFactory, head: str) -> None:
    gw = await make_gateway(**QUICK)
    async with raw_connection(gw.port) as (reader, writer):
        writer.write(f"{head}\r\nHost: gateway.test\r\nContent-Length: 100\r\n\r\n{{".encode())
        assert await closed_by_server(reader)


@pytest.mark.gen_test(timeout=60)
async def test_event_streams_and_websockets_outlive_both_deadlines(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Both are opened first; a slow-loris connection opened after them is closed, so a sweep past
    their deadlines has run; then both still carry messages."""
    gw = await make_gateway(**QUICK)
    token = await login(client, gw)
    socket = await WsClient.connect(gw.url)
    try:
        assert (await socket.init(token) or {}).get("type") == "connection_ack"
        async with streaming(client, gw.url, token) as stream:
            request_id = await pending_request(gw, token, init_of(stream)["clientId"])
            await slow_loris_closed(gw)
            await slow_loris_closed(gw)  # a second sweep, later still
            await socket.send("ping")
            assert (await socket.receive()) == {"type": "pong"}
            status, _ = await post_result(client, gw, request_id, headers=callback_headers(request_id))
            assert status == 200
            result = await stream.next_named("playbook/result")
            assert result.json["params"]["requestId"] == request_id
    finally:
        socket.close()


@pytest.mark.gen_test(timeout=30)
async def test_connections_closed_by_their_clients_are_forgotten_and_the_sweep_stops(
    make_gateway: GatewayFactory,
) -> None:
    """Nothing stays held for a connection that went away (long before its deadline: a client opening
    and dropping connections cannot pile them up), and nothing runs once nobody owes anything."""
    gw = await make_gateway(GATEWAY_IDLE_CONNECTION_TIMEOUT_SECS="60")
    deadlines = deadlines_of(gw)
    opened = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(100)]
    await wait_for(lambda: len(deadlines) >= 100)
    for _, writer in opened:
        writer.write(b"GET /health HTTP/1.1\r\n")  # half a request, then gone
        writer.close()
    await wait_for(lambda: len(deadlines) == 0, timeout=10)
    await wait_for(lambda: not deadlines.armed, timeout=20)  # the next sweep finds nothing owed
    assert deadlines.closed_late == 0  # they were closed by their clients, not by a deadline
