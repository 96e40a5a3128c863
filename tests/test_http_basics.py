"""Health, metrics, CORS, request ids and JSON errors on every route."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.gateway import GatewayInstance, call

UI = "http://ui.example:3000"


@pytest.mark.gen_test
async def test_health_and_ready(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    status, text, headers = await call(client, "GET", f"{gateway.url}/health")
    assert status == 200 and text == "ok" and headers["Content-Type"].startswith("text/plain")
    status, body, _ = await call(client, "GET", f"{gateway.url}/health/ready")
    assert status == 200
    assert body == {
        "status": "ready",
        "nats": "connected",
        "noetl": "reachable",
        "playbook_state": "polling",  # the shared test nats-server has no NOETL_EVENTS stream
        "version": "0.1.0",
    }


@pytest.mark.gen_test
async def test_metrics_exposes_requests_cache_and_nats(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    _, login, _ = await call(client, "POST", f"{gateway.url}/api/auth/login", {"auth0_token": "good"})
    await call(client, "POST", f"{gateway.url}/api/auth/validate", {"session_token": login["session_token"]})
    status, text, headers = await call(client, "GET", f"{gateway.url}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'gateway_http_requests_total{method="POST",route="auth_login",status="200"} 1.0' in text
    assert 'gateway_session_cache_total{outcome="hit"} 1.0' in text
    assert "gateway_nats_connected 1.0" in text
    assert 'gateway_callbacks_total{outcome="delivered"} 1.0' in text
    assert "gateway_http_request_duration_seconds_bucket" in text


@pytest.mark.gen_test
async def test_cors_preflight_and_error_responses(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    headers = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization",
    }
    for path in ("/api/auth/login", "/graphql", "/events", "/noetl/executions", "/unknown"):
        status, _, answer = await call(client, "OPTIONS", f"{gateway.url}{path}", headers=headers)
        assert status == 204, path
        assert answer["Access-Control-Allow-Origin"] == UI
        assert answer["Access-Control-Allow-Credentials"] == "true"
        assert "Authorization" in answer["Access-Control-Allow-Headers"]
        assert "X-Session-Token" in answer["Access-Control-Allow-Headers"]
    # An error response still carries CORS headers (send_error clears headers).
    status, body, answer = await call(
        client,
        "POST",
        f"{gateway.url}/api/auth/login",
        raw=b"{",
        headers={"Origin": UI, "Content-Type": "application/json"},
    )
    assert status == 400 and answer["Access-Control-Allow-Origin"] == UI
    # Another origin gets no CORS grant.
    status, _, answer = await call(
        client, "OPTIONS", f"{gateway.url}/api/auth/login", headers={**headers, "Origin": "http://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in answer


@pytest.mark.gen_test
async def test_request_id_taken_or_generated(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    _, _, headers = await call(client, "GET", f"{gateway.url}/health", headers={"X-Request-Id": "abc-123"})
    assert headers["X-Request-Id"] == "abc-123"
    _, _, headers = await call(client, "GET", f"{gateway.url}/health", headers={"X-Request-Id": "bad id <script>"})
    assert headers["X-Request-Id"] != "bad id" and len(headers["X-Request-Id"]) == 32
    status, body, headers = await call(client, "GET", f"{gateway.url}/no/such/route")
    assert status == 404 and body == {"error": "Not found"} and headers["X-Request-Id"]


@pytest.mark.gen_test
async def test_wrong_method_is_json_405(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    status, body, headers = await call(client, "GET", f"{gateway.url}/api/auth/login")
    assert status == 405 and body == {"error": "Method Not Allowed"}
    assert headers["Content-Type"] == "application/json"


@pytest.mark.gen_test
async def test_cookie_authenticated_writes_check_origin(
    gateway: GatewayInstance, client: aiohttp.ClientSession
) -> None:
    async def logout_with_cookie(origin: str | None) -> int:
        _, login, _ = await call(client, "POST", f"{gateway.url}/api/auth/login", {"auth0_token": "good-csrf"})
        headers = {"Cookie": f"session_token={login['session_token']}"}
        if origin:
            headers["Origin"] = origin
        status, _, _ = await call(client, "POST", f"{gateway.url}/api/auth/logout", headers=headers)
        return status

    assert await logout_with_cookie("http://evil.example") == 403
    assert await logout_with_cookie(UI) == 200  # an allowed CORS origin
    assert await logout_with_cookie(gateway.url) == 200  # a page served by the gateway itself
    assert await logout_with_cookie(None) == 200  # not a browser cross-site request


@pytest.mark.gen_test
async def test_invented_methods_do_not_grow_metrics(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    for method in ("FOO1", "FOO2", "FOO3"):
        status, _, _ = await call(client, method, f"{gateway.url}/health")
        assert status == 405
    _, text, _ = await call(client, "GET", f"{gateway.url}/metrics")
    assert "FOO" not in text
    assert 'method="other"' in text
