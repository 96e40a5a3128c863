"""A slow client never holds up a fast one, never grows memory without bound, is told, and can resume."""

from __future__ import annotations

import asyncio
import re
import socket

import aiohttp
import pytest

from gateway.live.stream import SLOW
from tests.conftest import GatewayFactory
from tests.support.gateway import GatewayInstance
from tests.support.live import callback_headers, pending_request, post_progress, services_of
from tests.support.signin import login
from tests.support.sse_client import init_of, open_stream, streaming
from tests.support.waiting import wait_for

BUFFER = 8
BIG = "x" * 200_000  # per event; a few dozen fill every socket buffer between us and a client that stops reading


class StalledClient:
    """A raw HTTP client with a tiny receive window that reads the init message and then stops reading."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)
        self.data = b""

    async def open(self, gw: GatewayInstance, token: str) -> str:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, ("127.0.0.1", gw.port))
        request = f"GET /events?session_token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        await loop.sock_sendall(self.sock, request.encode())
        while not re.search(rb'"clientId":"([^"]+)"', self.data):
            chunk = await loop.sock_recv(self.sock, 4096)
            assert chunk, "server closed before the init message"
            self.data += chunk
        match = re.search(rb'"clientId":"([^"]+)"', self.data)
        assert match is not None
        return match.group(1).decode()

    async def read_to_end(self, timeout: float = 10.0) -> bytes:
        """Read until the response ends (last chunk) or the server closes the connection."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not self.data.endswith(b"\r\n0\r\n\r\n"):
                chunk = await loop.sock_recv(self.sock, 1 << 20)
                if not chunk:
                    break
                self.data += chunk
        return self.data

    def close(self) -> None:
        self.sock.close()


async def fill_until(gw: GatewayInstance, client: aiohttp.ClientSession, request_id: str, done: object) -> int:
    """Post big progress events for the stalled client until ``done()``; returns how many were posted."""
    headers = callback_headers(request_id)
    for step in range(400):
        status, _ = await post_progress(client, gw, request_id, {"step": str(step), "message": BIG}, headers=headers)
        assert status in (200, 202)  # a callback is never held up by the client
        if done():  # type: ignore[operator]
            return step + 1
    raise AssertionError("the stalled client never fell behind")


def stream_of(gw: GatewayInstance, client_id: str):  # type: ignore[no-untyped-def]
    streams = services_of(gw).live.streams.of_client(client_id)
    return next(iter(streams)) if streams else None


async def with_a_stalled_client(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> tuple[GatewayInstance, str, StalledClient, str]:
    """A gateway with a small per-client buffer, a session, and a client that stopped reading."""
    gw = await make_gateway(GATEWAY_SSE_CLIENT_BUFFER=str(BUFFER))
    token = await login(client, gw)
    stalled = StalledClient()
    return gw, token, stalled, await stalled.open(gw, token)


@pytest.mark.gen_test(timeout=60)
async def test_stalled_client_does_not_delay_others_and_is_dropped(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw, token, stalled, slow_id = await with_a_stalled_client(make_gateway, client)
    fast = await open_stream(client, gw.url, token)
    try:
        fast_id = init_of(fast)["clientId"]
        slow_request = await pending_request(gw, token, slow_id)
        fast_request = await pending_request(gw, token, fast_id)

        # Back the stalled client up: its writer is stuck in flush() and events queue behind it.
        def backed_up() -> bool:
            stream = stream_of(gw, slow_id)
            return stream is not None and len(stream.queue) >= 2

        await fill_until(gw, client, slow_request, backed_up)
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, _ = await post_progress(
            client, gw, fast_request, {"step": "fast"}, headers=callback_headers(fast_request)
        )
        assert status == 200
        await fast.wait_for(lambda e: e.event == "playbook/progress", timeout=2)
        assert loop.time() - started < 0.5

        # Falling more than BUFFER events behind ends the stream; its queue never exceeds the bound.
        def overflowed() -> bool:
            stream = stream_of(gw, slow_id)
            assert stream is None or len(stream.queue) <= BUFFER
            return stream is None or stream.reason == SLOW

        await fill_until(gw, client, slow_request, overflowed)
        # It does not read, so it is dropped after a short grace, without our reading a byte.
        await wait_for(lambda: stream_of(gw, slow_id) is None, timeout=5)
        assert not fast.ended.is_set()
        data = await stalled.read_to_end()
        assert data.startswith(b"HTTP/1.1 200") and not data.endswith(b"\r\n0\r\n\r\n")  # cut off, not ended
    finally:
        stalled.close()
        await fast.close()


@pytest.mark.gen_test(timeout=60)
async def test_slow_client_is_told_and_resumes_from_last_event_id(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw, token, stalled, slow_id = await with_a_stalled_client(make_gateway, client)
    try:
        request_id = await pending_request(gw, token, slow_id)

        def overflowed() -> bool:
            stream = stream_of(gw, slow_id)
            return stream is None or stream.reason == SLOW

        posted = await fill_until(gw, client, request_id, overflowed)
        data = await stalled.read_to_end()  # reading again in time: the writer finishes politely
        assert data.endswith(b"\r\n0\r\n\r\n")
    finally:
        stalled.close()
    frames = re.findall(rb"id: ([0-9.]+)\nevent: ([a-z/]+)\ndata: (.{0,300})", data)
    assert frames[-1][1] == b"error"
    assert b'"code":-32603' in frames[-1][2] and b"slow_consumer" in frames[-1][2]
    received = [frame for frame in frames if frame[1] == b"playbook/progress"]
    last_id = received[-1][0].decode() if received else frames[0][0].decode()
    assert frames[-1][0].decode() == last_id  # the notice carries the id to resume from
    assert len(received) < posted

    async with streaming(client, gw.url, token, client_id=slow_id, last_event_id=last_id) as resumed:
        await resumed.wait_for(
            lambda e: e.event == "playbook/progress" and e.json["params"]["step"] == str(posted - 1), timeout=10
        )
        steps = [int(re.search(rb'"step":"(\d+)"', f[2]).group(1)) for f in received]  # type: ignore[union-attr]
        steps += [int(e.json["params"]["step"]) for e in resumed.named("playbook/progress")]
        assert steps == list(range(posted))  # nothing lost, nothing twice
