"""Session validation: cache first, NoETL on a miss, invalid/expired/malformed refused (CONTRACT §3, §7)."""

from __future__ import annotations

import hashlib

import aiohttp
import orjson
import pytest

from tests.conftest import Replicas, Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance, call
from tests.support.nats_server import NatsServer, kv_bucket, live_keys
from tests.support.signin import login, seed_session


async def validate(client: aiohttp.ClientSession, gw: GatewayInstance, token: str) -> tuple[int, dict]:
    status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/validate", {"session_token": token})
    return status, body


def validate_calls(standin: Standin) -> int:
    return len(standin.state.calls_to("/api/auth/session/validate"))


@pytest.mark.gen_test
async def test_cache_miss_calls_noetl_once_then_serves_from_cache(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    seed_session(standin, "tok-miss-then-hit")
    status, body = await validate(client, gateway, "tok-miss-then-hit")
    assert status == 200
    assert body["valid"] is True
    assert body["user"] == {"user_id": 7, "email": "carol@example.com", "display_name": "Carol", "roles": ["viewer"]}
    assert validate_calls(standin) == 1
    sent = standin.state.calls_to("/api/auth/session/validate")[0].body
    assert sent == {"session_token": "tok-miss-then-hit", "credential": "pg_auth"}
    for _ in range(5):
        status, body = await validate(client, gateway, "tok-miss-then-hit")
        assert body["valid"] is True
    assert validate_calls(standin) == 1  # every later check was a cache hit


@pytest.mark.gen_test
async def test_login_caches_the_session_so_validate_makes_no_upstream_call(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    session_token = await login(client, gateway, "good")
    status, body = await validate(client, gateway, session_token)
    assert body["valid"] is True and body["user"]["email"] == "alice@example.com"
    assert validate_calls(standin) == 0


@pytest.mark.gen_test
async def test_invalid_session_refused_and_evicted(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    status, body = await validate(client, gateway, "tok-unknown")
    assert status == 200
    assert body == {"valid": False, "user": None, "expires_at": None, "message": "Session is invalid or expired"}
    seed_session(standin, "tok-revoked-upstream", valid=False)
    _, body = await validate(client, gateway, "tok-revoked-upstream")
    assert body["valid"] is False


@pytest.mark.gen_test
async def test_expired_session_refused_even_when_cached(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    # NoETL says valid but the expiry is in the past: refused and not cached.
    seed_session(standin, "tok-expired", hours=-1)
    _, body = await validate(client, gateway, "tok-expired")
    assert body["valid"] is False
    # A cached session whose expires_at passes is refused too.
    token = await login(client, gateway, "expired-login")
    _, body = await validate(client, gateway, token)
    assert body["valid"] is False


@pytest.mark.gen_test
@pytest.mark.parametrize("token", ["", "a b", "x" * 513, "tok'; DROP TABLE sessions;--", "tok\u00e9"])
async def test_malformed_tokens_refused_before_any_lookup(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    status, body = await validate(client, gateway, token)
    assert status == 200
    assert body == {"valid": False, "user": None, "expires_at": None, "message": "Malformed session token"}
    assert validate_calls(standin) == 0


@pytest.mark.gen_test
async def test_validate_falls_back_to_playbook_when_api_missing(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    standin.state.validate_api = False
    seed_session(standin, "tok-via-playbook")
    _, body = await validate(client, gateway, "tok-via-playbook")
    assert body["valid"] is True
    paths = [c.body["path"] for c in standin.state.calls_to("/api/execute")]
    assert paths == [playbooks.VALIDATE]


@pytest.mark.gen_test
async def test_noetl_down_during_validation_is_502_json(make_gateway, client: aiohttp.ClientSession) -> None:
    from tests.support.nats_server import free_port

    gw = await make_gateway(NOETL_BASE_URL=f"http://127.0.0.1:{free_port()}")
    status, body = await validate(client, gw, "tok-any")
    assert status == 502
    assert body == {"error": "NoETL server is unreachable"}


@pytest.mark.gen_test
async def test_what_lands_in_the_kv_bucket(
    gateway: GatewayInstance, nats_server: NatsServer, client: aiohttp.ClientSession
) -> None:
    _, answer, _ = await call(client, "POST", f"{gateway.url}/api/auth/login", {"auth0_token": "good-kv"})
    token = answer["session_token"]
    async with kv_bucket(nats_server.url, "sessions") as kv:
        status = await kv.status()
        assert status.history == 1
        assert status.ttl == 300
        key = hashlib.sha256(token.encode()).hexdigest()
        entry = await kv.get(key)
        value = orjson.loads(entry.value)
        assert value == {
            "user_id": 42,
            "email": "alice@example.com",
            "display_name": "alice@example.com",
            "expires_at": answer["expires_at"],
            "is_active": True,
            "roles": ["admin", "analyst"],
        }
        keys = await live_keys(nats_server.url, "sessions")
        assert key in keys
        assert token not in keys
        assert all(token not in k for k in keys)
        assert token.encode() not in entry.value


@pytest.mark.gen_test
async def test_session_seen_by_second_replica_without_noetl(
    replicas: Replicas, standin: Standin, client: aiohttp.ClientSession
) -> None:
    a, b = replicas
    session_token = await login(client, a, "good-shared")
    _, body = await validate(client, b, session_token)
    assert body["valid"] is True
    assert validate_calls(standin) == 0  # B found it in the shared cache


@pytest.mark.gen_test
async def test_noetl_that_cannot_decide_is_503_and_keeps_cache(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    session_token = await login(client, gateway, "good-db")
    standin.state.validate_failure = "db_down"
    status, body = await validate(client, gateway, "tok-not-cached")
    assert status == 503 and body == {"error": "Session validation is unavailable right now"}
    # A protected route says the same instead of 401.
    status, body, _ = await call(
        client,
        "POST",
        f"{gateway.url}/graphql",
        {"query": "{ health }"},
        headers={"Authorization": "Bearer tok-not-cached"},
    )
    assert status == 503
    # The cached session keeps working.
    _, body = await validate(client, gateway, session_token)
    assert body["valid"] is True


@pytest.mark.gen_test
async def test_missing_credential_is_not_mistaken_for_missing_api(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    standin.state.validate_failure = "no_credential"
    status, body = await validate(client, gateway, "tok-any-2")
    assert status == 502
    assert not standin.state.calls_to("/api/execute")  # no fallback playbook ran


@pytest.mark.gen_test
async def test_empty_callback_status_is_not_success(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    async def blank_status(run) -> None:
        await run.callback(
            "", {"status": "authenticated", "session_token": "sess_x", "user": {"user_id": 1, "email": "e@x"}}
        )

    standin.state.playbooks[playbooks.LOGIN] = blank_status
    status, body, _ = await call(client, "POST", f"{gateway.url}/api/auth/login", {"auth0_token": "good"})
    assert status == 401
