"""Nothing anonymous or garbage grows state or costs upstream calls (issue 13 §4).

* Logout writes a tombstone only for a session that validates; junk answers 401 and writes nothing.
* The revocation mirror is bounded, and a full one still refuses every logged-out session.
* Session checks that miss the cache are budgeted per client IP (429 + ``Retry-After``, no NoETL
  call beyond the budget); invalid tokens are remembered briefly; a cached session is never blocked.
* ``Vary: Origin`` on every answer.

NoETL calls are counted on the stand-in (``standin.state.calls``); what lands in NATS is read back
with nats-py. Every test uses a revocation bucket of its own: the nats-server is shared by the run.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid

import aiohttp
import pytest

from gateway.auth.sessions import tombstone_obsolete
from gateway.config import load_config
from gateway.nats.kv import KvBucket
from gateway.nats.link import NatsLink
from tests.conftest import GatewayFactory, ReplicasFactory, Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance, call
from tests.support.live import services_of
from tests.support.nats_server import NatsServer, live_keys
from tests.support.signin import login
from tests.support.sse_client import SseStream
from tests.support.waiting import wait_for

VALIDATE_API = "/api/auth/session/validate"
BURST = 60  # GATEWAY_VALIDATE_MISS_BURST default
PER_MINUTE = 60  # GATEWAY_VALIDATE_MISS_PER_MINUTE default


def junk_token() -> str:
    """Well-formed (passes the shape check) and unknown to NoETL."""
    return "junk-" + secrets.token_urlsafe(24)


def validate_api_calls(standin: Standin) -> int:
    return len(standin.state.calls_to(VALIDATE_API))


def validate_playbook_runs(standin: Standin) -> int:
    return sum(1 for c in standin.state.calls_to("/api/execute") if c.body.get("path") == playbooks.VALIDATE)


def budget_allows(elapsed: float, burst: int = BURST, per_minute: int = PER_MINUTE) -> int:
    """The most cache misses one client can spend in ``elapsed`` seconds (bucket + refill)."""
    return burst + int(elapsed * per_minute / 60.0) + 1


async def revoked_keys(nats_server: NatsServer, bucket: str) -> list[str]:
    return await live_keys(nats_server.url, bucket)


async def is_valid(client: aiohttp.ClientSession, gw: GatewayInstance, token: str, **headers: str) -> bool:
    status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/validate", {"session_token": token}, headers)
    assert status == 200, body
    return bool(body["valid"])


# -- logout ---------------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=90)
async def test_junk_logouts_write_no_tombstone_and_a_real_logout_still_revokes_everywhere(
    make_gateway: GatewayFactory, standin: Standin, nats_server: NatsServer, client: aiohttp.ClientSession
) -> None:
    bucket = f"revoked_{uuid.uuid4().hex[:12]}"
    # The logout playbook is configured: junk must not start it either.
    a = await make_gateway(NATS_REVOKED_BUCKET=bucket, AUTH_PLAYBOOK_LOGOUT=playbooks.LOGOUT)
    b = await make_gateway(NATS_REVOKED_BUCKET=bucket)
    token = await login(client, a, "good-real-logout")
    assert await is_valid(client, b, token)
    before = len(standin.state.calls)

    loop = asyncio.get_running_loop()
    started = loop.time()
    statuses: dict[int, int] = {}
    for i in range(1000):
        headers = {"Authorization": f"Bearer {junk_token()}"} if i % 2 else {"X-Session-Token": junk_token()}
        status, body, answer_headers = await call(client, "POST", f"{a.url}/api/auth/logout", headers=headers)
        statuses[status] = statuses.get(status, 0) + 1
        assert status in (401, 429), body
        if status == 401:
            assert body == {"error": "Invalid or expired session"}
        else:
            assert body["error"] and int(answer_headers["Retry-After"]) >= 1
    elapsed = loop.time() - started

    assert await revoked_keys(nats_server, bucket) == []
    assert len(services_of(a).sessions.revoked) == 0 and len(services_of(b).sessions.revoked) == 0
    new_calls = standin.state.calls[before:]
    assert {c.path for c in new_calls} <= {VALIDATE_API}  # no logout playbook, nothing but validation
    assert 0 < len(new_calls) <= budget_allows(elapsed)
    assert statuses[429] >= 1000 - budget_allows(elapsed)
    print(f"\n1000 junk logouts: {statuses}, {len(new_calls)} NoETL calls, 0 tombstones")

    # A real logout still reaches every replica, and is the bucket's only key.
    status, body, _ = await call(client, "POST", f"{a.url}/api/auth/logout", headers={"X-Session-Token": token})
    assert status == 200 and body == {"status": "logged_out"}

    async def refused_on_b() -> bool:
        return not await is_valid(client, b, token)

    await wait_for(refused_on_b, timeout=5)
    assert len(await revoked_keys(nats_server, bucket)) == 1
    # Logging out again: the same answer, nothing more written.
    status, body, _ = await call(client, "POST", f"{b.url}/api/auth/logout", headers={"X-Session-Token": token})
    assert status == 200 and body == {"status": "logged_out"}
    assert len(await revoked_keys(nats_server, bucket)) == 1


@pytest.mark.gen_test(timeout=60)
async def test_full_revocation_mirror_still_refuses_every_logged_out_session(
    make_replicas: ReplicasFactory, standin: Standin, nats_server: NatsServer, client: aiohttp.ClientSession
) -> None:
    bucket = f"revoked_{uuid.uuid4().hex[:12]}"
    a, b = await make_replicas(NATS_REVOKED_BUCKET=bucket, GATEWAY_REVOCATION_MIRROR_MAX="3")
    tokens = [await login(client, a, f"good-mirror-{i}") for i in range(8)]
    for token in tokens:
        assert await is_valid(client, b, token)
    for token in tokens:
        status, _, _ = await call(client, "POST", f"{a.url}/api/auth/logout", {"session_token": token})
        assert status == 200
    assert len(await revoked_keys(nats_server, bucket)) == 8
    mirror = services_of(b).sessions.revoked
    await wait_for(lambda: not mirror.complete, timeout=5)  # it had to drop live tombstones
    assert len(mirror) <= 3
    # NoETL itself still says "valid" (no logout playbook here): only the tombstones refuse them.
    assert all(standin.state.sessions[token]["valid"] for token in tokens)
    for gw in (a, b):
        for token in tokens:
            assert not await is_valid(client, gw, token), (gw.url, tokens.index(token))
            status, _, _ = await call(client, "GET", f"{gw.url}/noetl/catalog/list", headers={"X-Session-Token": token})
            assert status == 401


@pytest.mark.gen_test
async def test_logout_with_cookie_from_a_foreign_origin_writes_nothing(
    make_gateway: GatewayFactory, standin: Standin, nats_server: NatsServer, client: aiohttp.ClientSession
) -> None:
    bucket = f"revoked_{uuid.uuid4().hex[:12]}"
    gw = await make_gateway(NATS_REVOKED_BUCKET=bucket)
    token = await login(client, gw, "good-csrf")
    for origin in ("https://evil.example", "http://["):
        headers = {"Cookie": f"session_token={token}", "Origin": origin}
        status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/logout", headers=headers)
        assert status == 403 and body == {"error": "Origin not allowed for cookie-authenticated requests"}
    assert await revoked_keys(nats_server, bucket) == []
    assert await is_valid(client, gw, token)


# -- the session-check budget -----------------------------------------------------------------------


async def flood(client: aiohttp.ClientSession, gw: GatewayInstance, count: int) -> dict[str, list[int]]:
    """``count`` requests, each with a new random token, spread over every route that takes a session."""
    seen: dict[str, list[int]] = {}
    for i in range(count):
        token = junk_token()
        bearer = {"Authorization": f"Bearer {token}"}
        route = ("proxy", "graphql", "events", "validate", "check_access", "logout")[i % 6]
        if route == "proxy":
            status, body, headers = await call(client, "GET", f"{gw.url}/noetl/catalog/list", headers=bearer)
        elif route == "graphql":
            status, body, headers = await call(client, "POST", f"{gw.url}/graphql", {"query": "{ health }"}, bearer)
        elif route == "validate":
            status, body, headers = await call(client, "POST", f"{gw.url}/api/auth/validate", {"session_token": token})
        elif route == "check_access":
            payload = {"session_token": token, "playbook_path": "team/report"}
            status, body, headers = await call(client, "POST", f"{gw.url}/api/auth/check-access", payload)
        elif route == "logout":
            status, body, headers = await call(client, "POST", f"{gw.url}/api/auth/logout", headers=bearer)
        else:
            stream = await SseStream.open(client, gw.url, token)
            await stream.wait_ended()
            assert stream.status == 200 and len(stream.named("error")) == 1, stream.summary()
            error = stream.named("error")[0].json["error"]
            if error["code"] == -32004:
                assert error["data"]["reason"] == "rate_limited" and error["data"]["retryAfter"] >= 1
                assert stream.retry == error["data"]["retryAfter"] * 1000  # EventSource waits that long
                assert stream.headers["Retry-After"] == str(error["data"]["retryAfter"])
                status = 429
            else:
                assert error["code"] == -32002, error
                status = 401
            seen.setdefault(route, []).append(status)
            continue
        if status == 429:
            assert isinstance(body, dict) and body["error"], body
            assert int(headers["Retry-After"]) >= 1
            if route == "graphql":
                assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        else:
            assert status in (200, 401), (route, status, body)
            assert body.get("valid", False) is False and body.get("allowed", False) is False
        seen.setdefault(route, []).append(status)
    return seen


@pytest.mark.gen_test(timeout=90)
@pytest.mark.parametrize("via", ["api", "playbook"])
async def test_random_token_flood_costs_at_most_the_budget_in_noetl_calls(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession, via: str
) -> None:
    gw = await make_gateway()
    token = await login(client, gw, "good-flood")
    standin.state.validate_api = via == "api"
    counted = validate_api_calls if via == "api" else validate_playbook_runs
    loop = asyncio.get_running_loop()
    started = loop.time()
    seen = await flood(client, gw, 300)
    elapsed = loop.time() - started
    calls = counted(standin)
    limited = sum(statuses.count(429) for statuses in seen.values())
    print(f"\n300 random tokens ({via}): {calls} NoETL validations, {limited} answered 429, in {elapsed:.1f} s")
    assert 0 < calls <= budget_allows(elapsed)
    assert limited >= 300 - budget_allows(elapsed)
    assert all(429 in statuses for statuses in seen.values()), seen  # every route is budgeted
    if via == "api":
        started_playbooks = {c.body["path"] for c in standin.state.calls_to("/api/execute")}
        assert started_playbooks == {playbooks.LOGIN}  # the test's own login: the flood started nothing

    # The budget is spent, yet a cached session from the same address is served everywhere, free.
    bearer = {"Authorization": f"Bearer {token}"}
    assert await is_valid(client, gw, token)
    status, body, _ = await call(client, "POST", f"{gw.url}/graphql", {"query": "{ health }"}, bearer)
    assert status == 200 and body == {"data": {"health": "ok"}}
    status, _, _ = await call(client, "GET", f"{gw.url}/noetl/catalog/list", headers=bearer)
    assert status == 200
    stream = await SseStream.open(client, gw.url, token)
    try:
        await stream.next_named("message")
    finally:
        await stream.close()
    assert counted(standin) == calls

    # Another client address has a budget of its own (X-Forwarded-For, one trusted hop).
    assert not await is_valid(client, gw, junk_token(), **{"X-Forwarded-For": "203.0.113.7"})
    assert counted(standin) == calls + 1


@pytest.mark.gen_test
async def test_a_token_noetl_called_invalid_is_not_asked_again(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway()
    token = junk_token()
    for _ in range(20):
        assert not await is_valid(client, gw, token)
        status, _, _ = await call(client, "GET", f"{gw.url}/noetl/catalog/list", headers={"X-Session-Token": token})
        assert status == 401
    assert validate_api_calls(standin) == 1
    off = await make_gateway(GATEWAY_NEGATIVE_CACHE_SECS="0")
    for _ in range(3):
        assert not await is_valid(client, off, token)
    assert validate_api_calls(standin) == 4


@pytest.mark.gen_test
async def test_budget_can_be_turned_off(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(GATEWAY_VALIDATE_MISS_PER_MINUTE="0")
    for _ in range(BURST + 10):
        assert not await is_valid(client, gw, junk_token())
    assert validate_api_calls(standin) == BURST + 10


# -- Vary: Origin ---------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_every_answer_varies_on_origin(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    """Whether ACAO is present depends on Origin: a shared cache must key on it, whatever the answer."""
    token = await login(client, gateway, "good-vary")
    allowed = "http://ui.example:3000"
    cases = [
        ("GET", "/health", {}),
        ("GET", "/nope", {}),
        ("GET", "/noetl/catalog/list", {}),  # 401
        ("GET", "/noetl/catalog/list", {"X-Session-Token": token}),
        ("POST", "/api/auth/validate", {}),  # 400
        ("GET", "/graphql", {"Accept": "text/html"}),
    ]
    for origin in (None, allowed, "https://elsewhere.example"):
        for method, path, headers in cases:
            send = dict(headers)
            if origin:
                send["Origin"] = origin
            status, _, answer = await call(client, method, f"{gateway.url}{path}", headers=send)
            vary = {part.strip() for value in answer.getall("Vary", []) for part in value.split(",")}
            assert "Origin" in vary, (origin, method, path, status, answer.getall("Vary", []))
            assert (answer.get("Access-Control-Allow-Origin") == allowed) == (origin == allowed)
    preflight = {"Origin": allowed, "Access-Control-Request-Headers": "authorization"}
    _, _, answer = await call(client, "OPTIONS", f"{gateway.url}/graphql", headers=preflight)
    assert answer["Vary"] == "Origin, Access-Control-Request-Headers"


@pytest.mark.gen_test(timeout=30)
async def test_a_full_mirror_drops_tombstones_of_expired_sessions_first(nats_server: NatsServer) -> None:
    """Room is made from what carries no information before a live tombstone has to go."""
    link = NatsLink(load_config({"NATS_URL": nats_server.url}))
    mirror = KvBucket(
        link, f"revoked_{uuid.uuid4().hex[:12]}", 3600, mirror=True, max_local=4, obsolete=tombstone_obsolete
    )
    await link.start(first_attempt_timeout=5)
    try:
        now = time.time()
        for i in range(4):  # sessions that expired already: refused anyway, their tombstones are spare
            await mirror.put(f"old{i}", {"revoked_at": now, "session_expires": now - 60})
        for i in range(3):
            await mirror.put(f"live{i}", {"revoked_at": now, "session_expires": now + 3600})
        await wait_for(lambda: all(mirror.get_local(f"live{i}") for i in range(3)), timeout=5)
        assert len(mirror) <= 4 and mirror.complete  # nothing live was dropped
        for i in range(3, 6):
            await mirror.put(f"live{i}", {"revoked_at": now, "session_expires": None})  # no expiry known
        await wait_for(lambda: not mirror.complete, timeout=5)
        assert len(mirror) <= 4
        dropped = [f"live{i}" for i in range(6) if mirror.get_local(f"live{i}") is None]
        assert dropped and all([await mirror.fetch(key) for key in dropped])  # still in the bucket
    finally:
        await mirror.close()
        await link.close()
