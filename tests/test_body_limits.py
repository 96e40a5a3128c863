"""Bounded cost for anyone not yet authenticated (issue 13, part 1): body limits and slow clients.

Every JSON endpoint refuses a body over its limit before reading it (a declared length at once,
a chunked body as it passes the limit), keeps nothing past the limit, still answers the 413 to
a client that sends its whole body before reading, and a connection that trickles its headers
or its body is closed by the server's timeouts while ``/health`` keeps answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.conftest import GatewayFactory, SignedInFactory, Standin
from tests.standin.proxy_routes import PATTERN, routes_state
from tests.support.anonymous_bodies import BLOCK, JSON_ENDPOINTS, blocks, send_anonymously
from tests.support.gateway import GatewayInstance, GatewayProcess, call
from tests.support.raw_http import closed_by_server, raw_connection
from tests.support.rss import RssSampler, reset_peak
from tests.support.signin import SignedIn
from tests.support.skips import reads_proc

MIB = 1024 * 1024
LIMIT = MIB  # GATEWAY_MAX_BODY_BYTES default
TOO_LARGE = f"Request body too large (limit {LIMIT} bytes)"


class Answer:
    """One HTTP answer read off a raw connection, and whether the server closed it afterwards."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> dict[str, object]:
        decoded = orjson.loads(self.body)
        assert isinstance(decoded, dict)
        return decoded


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """Status line, headers and a Content-Length body (the gateway's JSON answers have one)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
    lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 15)
    return Answer(int(lines[0].split(" ")[1]), headers, body)


def head(path: str, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway.test", "Content-Type: application/json", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- declared lengths --------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("path", JSON_ENDPOINTS)
async def test_declared_body_over_the_limit_is_413_without_reading_it(gateway: GatewayInstance, path: str) -> None:
    """Only the headers are sent: an answer and a close prove the body was never waited for."""
    async with raw_connection(gateway.port) as (reader, writer):
        writer.write(head(path, f"Content-Length: {300 * MIB}"))
        answer = await read_answer(reader)
        assert answer.status == 413
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {"error": TOO_LARGE}
        assert answer.headers["connection"] == "close"
        assert await closed_by_server(reader)


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("path", JSON_ENDPOINTS)
async def test_modest_over_limit_body_sent_whole_gets_the_413_and_keeps_the_connection(
    gateway: GatewayInstance, path: str
) -> None:
    """A client that writes everything before reading (http.client, requests) reads a 413, not a reset."""
    async with raw_connection(gateway.port) as (reader, writer):
        size = LIMIT + 512 * 1024
        writer.write(head(path, f"Content-Length: {size}") + b" " * size)
        await writer.drain()
        answer = await read_answer(reader)
        assert (answer.status, answer.json()) == (413, {"error": TOO_LARGE})
        assert "connection" not in answer.headers
        # The body was read and dropped, so the connection still serves the next request.
        writer.write(b"GET /health HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        again = await read_answer(reader)
        assert (again.status, again.body) == (200, b"ok")


@pytest.mark.gen_test(timeout=60)
async def test_expect_continue_over_the_limit_is_413_before_the_body(gateway: GatewayInstance) -> None:
    """curl sends big bodies only after ``100 Continue``: the 413 comes instead."""
    async with raw_connection(gateway.port) as (reader, writer):
        writer.write(head("/api/auth/login", f"Content-Length: {LIMIT + 1}", "Expect: 100-continue"))
        answer = await read_answer(reader)
        assert (answer.status, answer.json()) == (413, {"error": TOO_LARGE})


@pytest.mark.gen_test(timeout=60)
async def test_invalid_content_length_is_400_json(gateway: GatewayInstance) -> None:
    async with raw_connection(gateway.port) as (reader, writer):
        writer.write(head("/api/auth/validate", "Content-Length: 12abc"))
        answer = await read_answer(reader)
        assert (answer.status, answer.json()) == (400, {"error": "Invalid Content-Length header"})


# -- chunked bodies ----------------------------------------------------------------------------


def chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("path", JSON_ENDPOINTS)
async def test_chunked_body_past_the_limit_is_413_and_keeps_the_connection(gateway: GatewayInstance, path: str) -> None:
    """Counted as it arrives, nothing kept past the limit; a body ending soon after gets a clean 413."""
    async with raw_connection(gateway.port) as (reader, writer):
        pieces = (LIMIT + 512 * 1024) // len(BLOCK)
        writer.write(head(path, "Transfer-Encoding: chunked") + chunked(BLOCK) * pieces + b"0\r\n\r\n")
        await writer.drain()
        answer = await read_answer(reader)
        assert (answer.status, answer.json()) == (413, {"error": TOO_LARGE})
        writer.write(b"GET /health HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        again = await read_answer(reader)
        assert (again.status, again.body) == (200, b"ok")


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("path", ["/api/auth/login", "/graphql"])
async def test_endless_chunked_body_is_cut_off(gateway: GatewayInstance, path: str) -> None:
    """A body that never ends is dropped for at most DISCARD_BODY_BYTES past the limit, then closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    sent = 0
    try:
        writer.write(head(path, "Transfer-Encoding: chunked"))
        gone = asyncio.ensure_future(closed_by_server(reader))
        while not gone.done() and sent < 64 * MIB:
            writer.write(chunked(BLOCK))
            sent += len(BLOCK)
            try:
                await writer.drain()
            except ConnectionError:
                break  # the server closed while we were still sending
        assert await gone
        assert sent < 64 * MIB, "the server read on instead of refusing"
    finally:
        writer.close()


@pytest.mark.gen_test(timeout=60)
async def test_chunked_over_limit_through_aiohttp_gets_the_413(
    gateway: GatewayInstance, client: aiohttp.ClientSession
) -> None:
    headers = {"Content-Type": "application/json"}
    async with client.post(f"{gateway.url}/api/auth/validate", data=blocks(8 * MIB), headers=headers) as resp:
        assert resp.status == 413
        assert await resp.json() == {"error": TOO_LARGE}


# -- bodies within the limit -------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_body_of_exactly_the_limit_is_read_whole(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    document = orjson.dumps({"session_token": "no-such-session"})
    padded = document + b" " * (LIMIT - len(document))
    status, body, _ = await call(
        client, "POST", f"{gateway.url}/api/auth/validate", raw=padded, headers={"Content-Type": "application/json"}
    )
    assert status == 200 and body["valid"] is False


@pytest.mark.gen_test(timeout=60)
async def test_chunked_body_within_the_limit_is_read_whole(
    gateway: GatewayInstance, client: aiohttp.ClientSession
) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        yield b'{"session_token": '
        for _ in range(8):
            yield BLOCK
        yield b'"no-such-session"}'

    headers = {"Content-Type": "application/json"}
    async with client.post(f"{gateway.url}/api/auth/validate", data=pieces(), headers=headers) as resp:
        assert resp.status == 200
        assert (await resp.json())["valid"] is False


@pytest.mark.gen_test(timeout=60)
async def test_route_limit_follows_the_setting(make_gateway: GatewayFactory, client: aiohttp.ClientSession) -> None:
    gw = await make_gateway(GATEWAY_MAX_BODY_BYTES="2048")
    status, body, _ = await call(client, "POST", f"{gw.url}/graphql", raw=b" " * 2049)
    assert (status, body) == (413, {"error": "Request body too large (limit 2048 bytes)"})
    status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/validate", {"session_token": "x" * 100})
    assert status == 200, body


# -- the proxy ---------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_anonymous_proxy_upload_is_401_without_reading_the_body(gateway: GatewayInstance) -> None:
    async with raw_connection(gateway.port) as (reader, writer):
        writer.write(
            f"PUT /noetl/standin/upload HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: {300 * MIB}\r\n\r\n".encode()
        )
        answer = await read_answer(reader)
        assert (answer.status, answer.json()) == (401, {"error": "Missing authentication token"})
        assert await closed_by_server(reader)


@pytest.mark.gen_test(timeout=60)
async def test_signed_in_proxy_upload_goes_past_the_json_ceiling(alice: SignedIn, standin: Standin) -> None:
    """The proxy raises its limit per request once the session is valid (here 8 MiB > 2 MiB)."""
    size = 8 * MIB
    data = PATTERN * (size // len(PATTERN))
    async with alice.request("PUT", "/noetl/standin/upload", data=data) as resp:
        assert resp.status == 200
        assert (await resp.json())["size"] == size
    assert routes_state(standin.state).uploads[-1].completed


# -- slow clients ------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=90)
async def test_slow_loris_connections_are_closed_and_health_still_answers(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """200 connections trickle header lines; each is closed at the header deadline."""
    gw = await make_gateway(GATEWAY_IDLE_CONNECTION_TIMEOUT_SECS="3")
    opened = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(200)]
    closed = [asyncio.Event() for _ in opened]

    async def trickle(index: int) -> None:
        reader, writer = opened[index]
        writer.write(b"GET /health HTTP/1.1\r\nHost: gateway.test\r\n")
        line = 0
        while not reader.at_eof():
            writer.write(f"X-Trickle-{line}: x\r\n".encode())  # never the blank line that ends headers
            line += 1
            try:
                await writer.drain()
                # The attack's pace, not synchronisation: a header line every 0.2 s keeps a
                # per-byte inactivity timer from ever firing; only a deadline closes this.
                if await asyncio.wait_for(reader.read(1), 0.2) == b"":
                    break
            except TimeoutError:
                continue
            except ConnectionError:
                break
        closed[index].set()
        writer.close()

    tasks = [asyncio.ensure_future(trickle(index)) for index in range(len(opened))]
    try:
        status, body, _ = await call(client, "GET", f"{gw.url}/health")
        open_during_health = sum(not event.is_set() for event in closed)
        assert (status, body) == (200, "ok")
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in closed)), 60)
        assert open_during_health > 0, "every attack connection was gone before /health was asked"
        status, body, _ = await call(client, "GET", f"{gw.url}/health")
        assert (status, body) == (200, "ok")
    finally:
        for task in tasks:
            task.cancel()


@pytest.mark.gen_test(timeout=60)
async def test_slow_json_body_is_cut_off_but_a_signed_in_upload_may_take_longer(
    make_signed_in: SignedInFactory, standin: Standin
) -> None:
    """GATEWAY_BODY_TIMEOUT_SECS ends a stalled JSON body; the proxy's upload outlives it."""
    alice = await make_signed_in(GATEWAY_BODY_TIMEOUT_SECS="1", GATEWAY_PROXY_BODY_TIMEOUT_SECS="60")
    started = routes_state(standin.state).event("started", "upload")
    started.clear()
    port = alice.gateway.port
    upload_reader, upload_writer = await asyncio.open_connection("127.0.0.1", port)
    json_reader, json_writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        upload_writer.write(
            f"PUT /noetl/standin/upload HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {alice.token}\r\n"
            "Content-Length: 10\r\n\r\nhello".encode()
        )
        await asyncio.wait_for(started.wait(), 15)  # the upload's body timer runs from here
        json_writer.write(head("/api/auth/validate", "Content-Length: 100") + b'{"session')
        assert await closed_by_server(json_reader)  # after GATEWAY_BODY_TIMEOUT_SECS, unanswered
        upload_writer.write(b"world")  # older than the JSON body, still alive
        answer = await read_answer(upload_reader)
        assert answer.status == 200 and answer.json()["size"] == 10
    finally:
        upload_writer.close()
        json_writer.close()


# -- memory ------------------------------------------------------------------------------------


@pytest.fixture
def gateway_process(gateway_env: dict[str, str], tmp_path: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess({**gateway_env, "GATEWAY_LOG_LEVEL": "ERROR"}).start(str(tmp_path / "gateway.log"))
    yield process
    process.stop()


@reads_proc
@pytest.mark.gen_test(timeout=300)
async def test_300_mb_sent_anonymously_to_every_json_endpoint_keeps_memory_flat(
    gateway_process: GatewayProcess, client: aiohttp.ClientSession
) -> None:
    gw = gateway_process
    pid = gw.pid
    for path in JSON_ENDPOINTS:  # warm-up: imports, buffers, the 413 path once each
        await send_anonymously(client, f"{gw.url}{path}", 4 * MIB, declared=False)
    reset_peak(pid)
    statuses = []
    with RssSampler(pid) as sampler:
        for path in JSON_ENDPOINTS:
            for declared in (True, False):
                statuses.append(await send_anonymously(client, f"{gw.url}{path}", 300 * MIB, declared=declared))
    growth = sampler.growth_bytes
    print(f"\nanonymous 300 MB x {len(statuses)}: growth {growth / MIB:.1f} MiB; answers {statuses}")
    # A client still pushing 300 MB when the 413 comes may see the close as a reset instead (on a busy
    # machine every one of them may): that the 413 itself reaches a client is proven by the tests above
    # that send the headers first. Here: never any other answer, and the memory stays flat.
    assert set(statuses) <= {413, None}, statuses
    assert growth <= 16 * MIB, f"gateway grew by {growth / MIB:.1f} MiB"


@pytest.mark.gen_test
async def test_tornado_still_keeps_the_streamed_body_future_where_the_gateway_reads_it() -> None:
    """handlers/bodies.py reaches Tornado's private ``request._body_future`` (no public API): this
    fails, naming the reason, the day a Tornado release moves it."""
    import asyncio

    from tornado.httpclient import AsyncHTTPClient
    from tornado.httpserver import HTTPServer
    from tornado.web import Application, RequestHandler, stream_request_body

    from handlers.bodies import pending_body, replace_pending_body
    from tests.support.nats_server import free_port

    seen: dict[str, object] = {}

    @stream_request_body
    class Probe(RequestHandler):
        def prepare(self) -> None:
            future = pending_body(self.request)
            seen["pending"] = isinstance(future, asyncio.Future) and not future.done()
            old = replace_pending_body(self.request)
            seen["replaced"] = pending_body(self.request) is not old
            old.set_result(None)  # nothing waits on the old one once it is replaced

        def data_received(self, chunk: bytes) -> None:
            seen["chunk"] = len(chunk)

        def post(self) -> None:
            seen["ended"] = pending_body(self.request).done()
            self.finish("ok")

    port = free_port()
    server = HTTPServer(Application([(r"/", Probe)]))
    server.listen(port, "127.0.0.1")
    try:
        answer = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/", method="POST", body=b"x" * 10)
    finally:
        server.stop()
    assert answer.body == b"ok"
    assert seen == {"pending": True, "replaced": True, "chunk": 10, "ended": True}, (
        "Tornado no longer keeps a streamed body's future in request._body_future: handlers/bodies.py "
        f"pending_body()/replace_pending_body() must follow it ({seen})"
    )
