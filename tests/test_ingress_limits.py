"""Push ingress at its edges: unknown listeners reveal nothing, bodies over a listener's limit are refused
before they are read, a listener's rate limit, and listener configs served by NoETL (stand-in switch)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tornado.ioloop import IOLoop

from tests.conftest import GatewayFactory, Standin
from tests.standin.ingress_routes import IngressRoutesState, ingress_state
from tests.support.gateway import GatewayInstance, call
from tests.support.raw_http import raw_connection
from tests.support.webhooks import (
    BEARER_TOKEN,
    GITHUB_SECRET,
    LISTENER_SECRETS,
    PLAYBOOK,
    github_delivery,
    listener_file,
)

INTERNAL_TOKEN = "internal-api-token-0123456789abcdef"


@pytest.fixture
def ingress_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in LISTENER_SECRETS.items():
        monkeypatch.setenv(name, value)
    limited = {
        "verify": {"type": "bearer", "secret_env": "TEST_BEARER_TOKEN"},
        "dispatch": {"playbook": PLAYBOOK},
        "rate_per_minute": 3,
    }
    return {"GATEWAY_INGRESS_CONFIG": listener_file(tmp_path, limited=limited)}


@pytest.fixture
def gw(io_loop: IOLoop, make_gateway: GatewayFactory, ingress_env: dict[str, str]) -> GatewayInstance:
    instance: GatewayInstance = io_loop.run_sync(lambda: make_gateway(**ingress_env), timeout=15)
    return instance


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {BEARER_TOKEN}"}


# -- names and methods -------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_an_unknown_listener_is_the_same_404_as_any_unknown_path(
    gw: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    body, headers = github_delivery({"a": 1})
    _, nowhere, _ = await call(client, "POST", f"{gw.url}/no/such/route", headers=headers, raw=body)
    for name in ("gitlab", "GitHub", "github.", "%2e%2e", "a%2Fb", "x" * 300):
        status, answer, _ = await call(client, "POST", f"{gw.url}/ingress/{name}", headers=headers, raw=body)
        assert (status, answer) == (404, nowhere), name
    for listener in ("github", "nope"):  # every method but POST: 405 whether the listener exists or not
        status, answer, response = await call(client, "GET", f"{gw.url}/ingress/{listener}")
        assert status == 405 and response["Allow"] == "POST, OPTIONS", answer
    assert standin.state.calls_to("/api/execute") == []
    assert not [c for c in standin.state.calls if c.path.startswith("/api/internal/ingress")]  # no token: not asked


# -- body limits: refused before the body is read -----------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_body_over_the_listeners_limit_is_413_before_it_is_sent(gw: GatewayInstance, standin: Standin) -> None:
    """Only the head goes out: the 413 arriving proves the gateway never waited for the body."""
    async with raw_connection(gw.port) as (reader, writer):
        head = (
            "POST /ingress/small HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {BEARER_TOKEN}\r\nContent-Length: {8 * 1024 * 1024}\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 15)
        assert status_line.startswith(b"HTTP/1.1 413"), status_line
        rest = await asyncio.wait_for(reader.read(), 15)
    assert b'"reason":"body_too_large"' in rest and b"limit 1024 bytes" in rest
    assert standin.state.calls_to("/api/execute") == []


@pytest.mark.gen_test(timeout=30)
async def test_a_chunked_body_is_cut_at_the_listeners_limit(
    gw: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    async def chunks() -> Any:
        for _ in range(8):
            yield b"x" * 512

    async with client.post(f"{gw.url}/ingress/small", data=chunks(), headers=bearer()) as resp:
        assert resp.status == 413
        assert (await resp.json())["reason"] == "body_too_large"
    status, answer, _ = await call(client, "POST", f"{gw.url}/ingress/small", headers=bearer(), raw=b"{}")
    assert status == 202, answer  # within the limit: accepted
    assert len(standin.state.calls_to("/api/execute")) == 1


@pytest.mark.gen_test(timeout=30)
async def test_a_listener_may_take_bodies_larger_than_the_json_routes(
    make_gateway: GatewayFactory, tmp_path: Path, standin: Standin, client: aiohttp.ClientSession, monkeypatch: Any
) -> None:
    monkeypatch.setenv("TEST_GITHUB_SECRET", GITHUB_SECRET)
    monkeypatch.setenv("TEST_BEARER_TOKEN", BEARER_TOKEN)
    big = {
        "verify": {"type": "bearer", "secret_env": "TEST_BEARER_TOKEN"},
        "dispatch": {"playbook": PLAYBOOK},
        "max_body_bytes": 6 * 1024 * 1024,
    }
    gw = await make_gateway(GATEWAY_INGRESS_CONFIG=listener_file(tmp_path, big=big), GATEWAY_MAX_BODY_BYTES="65536")
    payload = b'{"blob": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    status, answer, _ = await call(client, "POST", f"{gw.url}/ingress/big", headers=bearer(), raw=payload)
    assert status == 202, answer
    status, _, _ = await call(client, "POST", f"{gw.url}/api/auth/login", headers=bearer(), raw=payload)
    assert status == 413  # the JSON routes keep their own limit
    (sent,) = standin.state.calls_to("/api/execute")
    assert len(sent.body["workload"]["blob"]) == 4 * 1024 * 1024


# -- rate limit -------------------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_listener_over_its_rate_is_429_with_retry_after(
    gw: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    answers = [await call(client, "POST", f"{gw.url}/ingress/limited", headers=bearer(), raw=b"{}") for _ in range(4)]
    assert [status for status, _, _ in answers] == [202, 202, 202, 429]
    status, body, headers = answers[3]
    assert body["reason"] == "rate_limited" and int(headers["Retry-After"]) >= 1
    assert len(standin.state.calls_to("/api/execute")) == 3
    status, _, _ = await call(client, "POST", f"{gw.url}/ingress/alerts", headers=bearer(), raw=b"{}")
    assert status == 202  # another listener has its own budget


# -- listener configs served by NoETL (GET /api/internal/ingress/{listener}) ----------------------------


SHOP_TOKEN = "shop-token-0123456789abcdef"
SHOP_BEARER = {"Authorization": f"Bearer {SHOP_TOKEN}"}


def noetl_listener(playbook: str = PLAYBOOK, **verify: Any) -> dict[str, Any]:
    """A listener as the reference's NoETL serves it (resolved secret included)."""
    return {
        "listener": "shop",
        "catalog_path": "subscriptions/shop",
        "subscription_id": "12345",
        "source": "webhook",
        "verify": {"type": "bearer", "secret": SHOP_TOKEN, **verify},
        "dispatch": {"playbook": playbook, "payload_from": "message.json", "execution_pool": "subscription"},
        "directives": {"directives": []},  # the reference's directive engine: ignored
    }


@pytest.fixture
def noetl_served(standin: Standin) -> IngressRoutesState:
    """What the stand-in's NoETL serves on its ingress route (off until a test turns it on)."""
    routes = ingress_state(standin.state)
    routes.token = INTERNAL_TOKEN
    return routes


@pytest.fixture
def noetl_gw(
    io_loop: IOLoop, make_gateway: GatewayFactory, ingress_env: dict[str, str], noetl_served: IngressRoutesState
) -> GatewayInstance:
    """A gateway with the listener file that may also ask NoETL for listeners (it holds the internal token)."""
    env = {**ingress_env, "NOETL_INTERNAL_API_TOKEN": INTERNAL_TOKEN}
    instance: GatewayInstance = io_loop.run_sync(lambda: make_gateway(**env), timeout=15)
    return instance


@pytest.mark.gen_test(timeout=30)
async def test_a_listener_noetl_serves_is_used_and_cached(
    noetl_gw: GatewayInstance, standin: Standin, noetl_served: IngressRoutesState, client: aiohttp.ClientSession
) -> None:
    noetl_served.serving = True
    noetl_served.listeners["shop"] = noetl_listener()
    for _ in range(3):
        status, answer, _ = await call(
            client, "POST", f"{noetl_gw.url}/ingress/shop", headers=SHOP_BEARER, raw=b'{"order": 7}'
        )
        assert status == 202, answer
    assert noetl_served.lookups == ["shop"]  # one lookup, then the cache
    sent = standin.state.calls_to("/api/execute")
    assert len(sent) == 3 and sent[0].body["workload"]["ingress"]["subscription"] == "subscriptions/shop"
    status, answer, _ = await call(client, "POST", f"{noetl_gw.url}/ingress/shop", headers=bearer(), raw=b"{}")
    assert (status, answer["reason"]) == (401, "bad_token")
    status, _, _ = await call(client, "POST", f"{noetl_gw.url}/ingress/github", headers=bearer(), raw=b"{}")
    assert status == 401  # a file listener: NoETL is not asked
    status, _, _ = await call(client, "POST", f"{noetl_gw.url}/ingress/unknown-one", headers=SHOP_BEARER, raw=b"{}")
    assert status == 404
    assert noetl_served.lookups == ["shop", "unknown-one"]


@pytest.mark.gen_test(timeout=30)
async def test_a_noetl_without_the_route_leaves_the_file_as_the_source(
    noetl_gw: GatewayInstance, standin: Standin, noetl_served: IngressRoutesState, client: aiohttp.ClientSession
) -> None:
    noetl_served.listeners["shop"] = noetl_listener()  # configured, but the route is off: NoETL 4.26
    status, _, _ = await call(client, "POST", f"{noetl_gw.url}/ingress/shop", headers=SHOP_BEARER, raw=b"{}")
    assert status == 404
    body, headers = github_delivery({"a": 1})
    status, answer, _ = await call(client, "POST", f"{noetl_gw.url}/ingress/github", headers=headers, raw=body)
    assert status == 202, answer
    assert noetl_served.lookups == ["shop"]
    assert len(standin.state.calls_to("/api/execute")) == 1


@pytest.mark.gen_test(timeout=30)
async def test_a_noetl_answer_that_does_not_fit_starts_nothing(
    noetl_gw: GatewayInstance, standin: Standin, noetl_served: IngressRoutesState, client: aiohttp.ClientSession
) -> None:
    noetl_served.serving = True
    # A NoETL answer may never make the gateway read its own files or environment.
    noetl_served.listeners["shop"] = {**noetl_listener(), "verify": {"type": "bearer", "secret_file": "/etc/passwd"}}
    status, answer, _ = await call(client, "POST", f"{noetl_gw.url}/ingress/shop", headers=bearer(), raw=b"{}")
    assert (status, answer["reason"]) == (502, "config_error")
    noetl_served.listeners["shop"] = noetl_listener()
    noetl_served.status = 500
    status, answer, _ = await call(client, "POST", f"{noetl_gw.url}/ingress/shop", headers=bearer(), raw=b"{}")
    assert (status, answer["reason"]) == (502, "config_error")
    assert standin.state.calls_to("/api/execute") == []
