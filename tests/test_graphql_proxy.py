"""proxyRequest: NoETL API calls as the signed-in user; SSRF attempts refused before any
request leaves the gateway; NoETL's answers and outages reported distinctly."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import GatewayFactory, Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance
from tests.support.graphql_client import error_codes, gql
from tests.support.nats_server import free_port

PROXY = """mutation($method: String!, $endpoint: String!, $body: JSON) {
  proxyRequest(input: { method: $method, endpoint: $endpoint, body: $body }) { success data error status }
}"""


async def proxy(
    client: aiohttp.ClientSession, gw: GatewayInstance, token: str, method: str, endpoint: str, body: Any = None
) -> tuple[int, Any]:
    status, answer, _ = await gql(client, gw, token, PROXY, {"method": method, "endpoint": endpoint, "body": body})
    return status, answer


@pytest.mark.gen_test
async def test_proxy_request_reaches_noetl_as_the_user(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    status, body = await proxy(client, gateway, token, "get", "/api/catalog/list?kind=playbook&page=2")
    assert status == 200, body
    result = body["data"]["proxyRequest"]
    assert result["success"] is True and result["status"] == 200 and result["error"] is None
    echoed = result["data"]
    assert (echoed["method"], echoed["path"], echoed["query"]) == ("GET", "/api/catalog/list", "kind=playbook&page=2")
    assert echoed["headers"]["X-Noetl-User-Id"] == "42"
    assert echoed["headers"]["X-Noetl-User-Email"] == "alice@example.com"
    assert "Authorization" not in echoed["headers"] and "Cookie" not in echoed["headers"]
    # Inline JSON literal body, as the reference gateway's docs show it.
    query = """mutation { proxyRequest(input: {
      method: "POST", endpoint: "/api/catalog/list", body: { resource_type: "Playbook", tags: ["a"] }
    }) { success data } }"""
    status, body, _ = await gql(client, gateway, token, query)
    assert body["data"]["proxyRequest"]["success"] is True, body
    (call,) = [c for c in standin.state.calls if c.path == "/api/catalog/list" and c.method == "POST"]
    assert call.body == {"resource_type": "Playbook", "tags": ["a"]}


@pytest.mark.gen_test
async def test_noetl_error_answers_are_unsuccessful_responses(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    for code in (400, 404, 500, 503):
        status, body = await proxy(client, gateway, token, "GET", f"/api/standin/status/{code}")
        assert status == 200 and "errors" not in body, body
        result = body["data"]["proxyRequest"]
        assert result == {
            "success": False,
            "data": {"detail": f"scripted {code}", "status": code},
            "error": f"NoETL answered {code}: scripted {code}",
            "status": code,
        }


@pytest.mark.gen_test
async def test_ssrf_attempts_are_refused_before_leaving(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    before = len(standin.state.calls)
    attempts = [
        "http://169.254.169.254/latest/meta-data/",
        "https://evil.example/api/x",
        "//evil.example/api/x",
        "/api//evil.example/x",
        "/api/@evil.example/x",
        "/api/x@evil.example",
        "https://user:pass@evil.example/api/x",
        "/api/../admin",
        "/api/catalog/../../admin",
        "/api/./catalog",
        "/api/%2e%2e/admin",
        "/api/%2E%2E/admin",
        "/api/catalog%2f..%2fadmin",
        "/api/%252e%252e/admin",  # double-encoded: a server that decodes twice sees ".."
        "/api/..;x/admin",  # ".." to servers that strip path parameters
        "/api/catalog/%2e./admin",
        "/api/catalog%2Fx",
        "/api/catalog%5cx",
        "/api\\catalog",
        "/api/catalog\\..\\x",
        "/api/%zz",
        "/api/%0a",
        "/api/x y",
        "/api/x\r\nHost: evil",
        "/api/x#fragment",
        "/api/",
        "/apix/catalog",
        "/API/catalog",
        "api/catalog",
        "/other/path",
        "",
        "/api/" + "a" * 3000,
    ]
    for endpoint in attempts:
        status, body = await proxy(client, gateway, token, "GET", endpoint)
        assert status == 200 and body["data"] is None, endpoint
        assert error_codes(body) == ["BAD_USER_INPUT"], (endpoint, body)
    for method in ("TRACE", "CONNECT", "OPTIONS", "G ET"):
        _, body = await proxy(client, gateway, token, method, "/api/catalog/list")
        assert error_codes(body) == ["BAD_USER_INPUT"], method
    _, body = await proxy(client, gateway, token, "GET", "/api/catalog/list", {"a": 1})
    assert error_codes(body) == ["BAD_USER_INPUT"] and "GET" in body["errors"][0]["message"]
    assert len(standin.state.calls) == before  # nothing reached NoETL (or anything else)


@pytest.mark.gen_test
async def test_starting_a_playbook_through_the_proxy_is_access_checked(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    _, body = await proxy(client, gateway, token, "POST", "/api/execute", {"path": "secret/forbidden_x"})
    assert error_codes(body) == ["FORBIDDEN"], body
    _, body = await proxy(client, gateway, token, "POST", "/api/execute/", {"catalog_id": "7"})
    assert error_codes(body) == ["FORBIDDEN"] and "cannot be resolved" in body["errors"][0]["message"]
    _, body = await proxy(client, gateway, token, "POST", "/api/execute", {"path": "tests/noop", "payload": {}})
    result = body["data"]["proxyRequest"]
    assert result["success"] is True and result["data"]["execution_id"], body
    started = [c.body["path"] for c in standin.state.calls_to("/api/execute") if c.body]
    assert "secret/forbidden_x" not in started and "tests/noop" in started
    checked = [
        c.body["workload"]["playbook_path"]
        for c in standin.state.calls_to("/api/execute")
        if c.body and c.body["path"] == playbooks.CHECK_ACCESS
    ]
    assert checked == ["secret/forbidden_x", "tests/noop"]


@pytest.mark.gen_test
async def test_proxy_when_noetl_is_down(make_gateway: GatewayFactory, client: aiohttp.ClientSession) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gw = await make_gateway(NOETL_BASE_URL=dead, GATEWAY_AUTH_BYPASS="true", NATS_URL="")
    status, body = await proxy(client, gw, "dev-token", "GET", "/api/catalog/list")
    assert status == 200 and body["data"] is None
    assert error_codes(body) == ["UPSTREAM_UNAVAILABLE"]
    assert dead not in str(body)


@pytest.mark.gen_test
async def test_proxy_request_never_follows_redirects(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    status, body = await proxy(client, gateway, token, "GET", "/api/standin/status/302")
    result = body["data"]["proxyRequest"]
    assert result["success"] is False and result["status"] == 302
    assert [c.query for c in standin.state.calls_to("/api/standin/status/302")] == [""]  # asked once, not followed
