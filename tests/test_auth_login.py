"""Login through the auth0_login playbook (CONTRACT §3), callbacks over HTTP and NATS."""

from __future__ import annotations

import time

import aiohttp
import orjson
import pytest

from tests.conftest import Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance, call


async def login(
    client: aiohttp.ClientSession, gw: GatewayInstance, token: str = "good-token", **extra: object
) -> tuple[int, object, object]:
    return await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": token, **extra})


@pytest.mark.gen_test
async def test_login_via_http_callback(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    status, body, _ = await login(client, gateway, auth0_refresh_token="r1", session_duration_hours=2)
    assert status == 200, body
    assert body["status"] == "authenticated"
    assert body["session_token"].startswith("sess_")
    assert body["user"] == {
        "user_id": 42,
        "email": "alice@example.com",
        "display_name": "alice@example.com",
        "roles": ["admin", "analyst"],
    }
    assert body["expires_at"] and body["message"]
    # What NoETL received: the login playbook with every contract variable, both spellings.
    (execute,) = standin.state.calls_to("/api/execute")
    sent = execute.body
    assert sent["path"] == playbooks.LOGIN and sent["payload"] == sent["workload"]
    variables = sent["workload"]
    for name in (
        "auth0_token",
        "auth0_refresh_token",
        "auth0_domain",
        "session_duration_hours",
        "client_ip",
        "client_user_agent",
        "callback_subject",
        "request_id",
        "gateway_url",
        "callback_token",
    ):
        assert name in variables, name
    assert variables["callback_subject"] == f"noetl.callbacks.{variables['request_id']}"
    assert variables["gateway_url"] == gateway.url
    assert variables["client_ip"] == "127.0.0.1"
    # The callback was accepted by the gateway.
    assert standin.state.callback_replies[-1][1] == 200
    assert gateway.services.callbacks.pending == 0


@pytest.mark.gen_test
async def test_login_via_nats_callback(
    gateway: GatewayInstance, client: aiohttp.ClientSession, standin: Standin
) -> None:
    status, body, _ = await login(client, gateway, "nats-token")
    assert status == 200, body
    assert body["status"] == "authenticated"
    assert not standin.state.calls_to("/api/internal/callback")  # nothing came over HTTP


@pytest.mark.gen_test
async def test_login_client_ip_honours_forwarded_for(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    status, _, _ = await call(
        client,
        "POST",
        f"{gateway.url}/api/auth/login",
        {"auth0_token": "good"},
        headers={"X-Forwarded-For": "198.51.100.66, 203.0.113.9", "User-Agent": "ua-test/1"},
    )
    assert status == 200
    variables = standin.state.calls_to("/api/execute")[0].body["workload"]
    assert variables["client_ip"] == "203.0.113.9"
    assert variables["client_user_agent"] == "ua-test/1"


@pytest.mark.gen_test
async def test_rejected_login_is_401_with_playbook_message(
    gateway: GatewayInstance, client: aiohttp.ClientSession
) -> None:
    status, body, _ = await login(client, gateway, "reject-me")
    assert status == 401
    assert body == {"error": "Auth0 token rejected"}
    status, body, _ = await login(client, gateway, "error-me")
    assert status == 401
    assert body == {"error": "auth0 userinfo call failed"}


@pytest.mark.gen_test
async def test_silent_playbook_times_out_with_504(make_gateway, client: aiohttp.ClientSession) -> None:
    gw = await make_gateway(AUTH_PLAYBOOK_TIMEOUT_SECS="0.5")
    started = time.monotonic()
    status, body, _ = await login(client, gw, "silent-token")
    elapsed = time.monotonic() - started
    assert status == 504
    assert "0.5s" in body["error"]
    assert elapsed < 3.0
    assert gw.services.callbacks.pending == 0  # the waiter was cleaned up


@pytest.mark.gen_test
async def test_noetl_down_is_502(make_gateway, client: aiohttp.ClientSession) -> None:
    from tests.support.nats_server import free_port

    gw = await make_gateway(NOETL_BASE_URL=f"http://127.0.0.1:{free_port()}")
    status, body, headers = await login(client, gw)
    assert status == 502
    assert body == {"error": "NoETL server is unreachable"}
    assert headers["Content-Type"] == "application/json"
    assert gw.services.callbacks.pending == 0


@pytest.mark.gen_test
async def test_noetl_execute_error_is_502_without_leaking_url(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    standin.state.execute_status = 500
    status, body, _ = await login(client, gateway)
    assert status == 502
    assert "127.0.0.1" not in orjson.dumps(body).decode()
    assert gateway.services.callbacks.pending == 0


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("raw", "content_type", "expected_status", "expected_error"),
    [
        (b"{not json", "application/json", 400, "Malformed JSON in request body"),
        (b"[1, 2]", "application/json", 400, "Request body must be a JSON object"),
        (b"", "application/json", 400, "Request body must be a JSON object"),
        (b"{}", "application/json", 400, "Missing required field 'auth0_token'"),
        (b'{"auth0_token": 5}', "application/json", 400, "Invalid field 'auth0_token'"),
        (
            b'{"auth0_token": "x", "session_duration_hours": "many"}',
            "application/json",
            400,
            "Invalid field 'session_duration_hours'",
        ),
        (b"auth0_token=x", "application/x-www-form-urlencoded", 415, "Content-Type must be application/json"),
    ],
)
async def test_bad_login_bodies(
    gateway: GatewayInstance,
    standin: Standin,
    client: aiohttp.ClientSession,
    raw: bytes,
    content_type: str,
    expected_status: int,
    expected_error: str,
) -> None:
    status, body, _ = await call(
        client, "POST", f"{gateway.url}/api/auth/login", raw=raw, headers={"Content-Type": content_type}
    )
    assert status == expected_status
    assert body["error"].startswith(expected_error)
    assert not standin.state.calls_to("/api/execute")


@pytest.mark.gen_test
async def test_body_too_large_is_413(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    raw = orjson.dumps({"auth0_token": "x" * (2 * 1024 * 1024)})
    status, body, _ = await call(
        client, "POST", f"{gateway.url}/api/auth/login", raw=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 413
    assert "too large" in body["error"]


@pytest.mark.gen_test
@pytest.mark.parametrize(("hops", "expected"), [("0", "127.0.0.1"), ("2", "198.51.100.66"), ("5", "198.51.100.66")])
async def test_trusted_proxy_hops(
    make_gateway, standin: Standin, client: aiohttp.ClientSession, hops: str, expected: str
) -> None:
    gw = await make_gateway(GATEWAY_TRUSTED_PROXY_HOPS=hops)
    await call(
        client,
        "POST",
        f"{gw.url}/api/auth/login",
        {"auth0_token": "good"},
        headers={"X-Forwarded-For": "198.51.100.66, 203.0.113.9"},
    )
    assert standin.state.calls_to("/api/execute")[0].body["workload"]["client_ip"] == expected
