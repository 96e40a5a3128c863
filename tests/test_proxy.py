"""The /noetl/* proxy (CONTRACT §4): methods, paths, headers, statuses, failures, access check.

Assertions are on what the NoETL stand-in received (``standin.state.calls``) and on what
the client got back. Streaming, sizes and aborts: tests/test_proxy_streaming.py; memory:
tests/test_proxy_memory.py.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from tests.conftest import SignedInFactory, Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance, call
from tests.support.nats_server import free_port
from tests.support.raw_http import raw_request, request_head
from tests.support.signin import SignedIn, bearer, login

# -- methods, paths, queries -----------------------------------------------------------------


@pytest.mark.gen_test
async def test_every_method_is_forwarded_to_api(alice: SignedIn, standin: Standin) -> None:
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        status, body, headers = await alice.call(method, "/noetl/things/7?x=1", raw=b'{"a":1}')
        assert status == 200, (method, body)
        assert body["method"] == method and body["path"] == "/api/things/7" and body["query"] == "x=1"
        assert body["body_size"] == 7
        assert headers["X-Request-Id"]
        (recorded,) = [c for c in standin.state.calls_to("/api/things/7") if c.method == method]
        assert recorded.query == "x=1"
    status, body, _ = await alice.call("HEAD", "/noetl/things/7")
    assert status == 200 and body is None
    assert standin.state.calls_to("/api/things/7", "HEAD")


@pytest.mark.gen_test
async def test_options_is_the_gateways_preflight_not_forwarded(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    headers = {"Origin": "http://ui.example:3000", "Access-Control-Request-Method": "DELETE"}
    status, _, answer = await call(client, "OPTIONS", f"{gateway.url}/noetl/things/7", headers=headers)
    assert status == 204
    assert answer["Access-Control-Allow-Origin"] == "http://ui.example:3000"
    assert "DELETE" in answer["Access-Control-Allow-Methods"]
    assert standin.state.calls_to("/api/things/7") == []


@pytest.mark.gen_test
async def test_session_required_and_nothing_forwarded_without_it(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    status, body, _ = await call(client, "GET", f"{gateway.url}/noetl/things")
    assert (status, body) == (401, {"error": "Missing authentication token"})
    status, body, _ = await call(client, "POST", f"{gateway.url}/noetl/things", raw=b"x" * 10, headers=bearer("nope"))
    assert (status, body) == (401, {"error": "Invalid or expired session"})
    assert standin.state.calls_to("/api/things") == []


@pytest.mark.gen_test
async def test_cookie_and_session_header_authenticate_too(alice: SignedIn, standin: Standin) -> None:
    status, body, _ = await call(alice.client, "GET", f"{alice.url}/noetl/a", headers={"X-Session-Token": alice.token})
    assert status == 200 and body["path"] == "/api/a"
    cookie = {"Cookie": f"session_token={alice.token}; theme=dark"}
    status, body, _ = await call(alice.client, "GET", f"{alice.url}/noetl/b", headers=cookie)
    assert status == 200 and body["path"] == "/api/b"
    (recorded,) = standin.state.calls_to("/api/b")
    assert "Cookie" not in recorded.headers


@pytest.mark.gen_test
async def test_query_strings_and_non_ascii_paths_pass_unchanged(
    gateway: GatewayInstance, standin: Standin, token: str
) -> None:
    target = "/noetl/catalog/caf%C3%A9/%E6%97%A5%E6%9C%AC/%41b?name=%C3%A9t%C3%A9&a=1&a=2&empty=&plus=a+b&sp=%20"
    status, _, _ = await raw_request(gateway.port, request_head("GET", target, token))
    assert status == 200
    (recorded,) = standin.state.calls_to("/api/catalog/caf%C3%A9/%E6%97%A5%E6%9C%AC/%41b")
    assert recorded.query == "name=%C3%A9t%C3%A9&a=1&a=2&empty=&plus=a+b&sp=%20"
    # Raw UTF-8 in the request line (some clients send it) arrives percent-encoded, same bytes.
    raw_target = "/noetl/files/" + "résumé".encode().decode("latin-1") + "?q=" + "ü".encode().decode("latin-1")
    status, _, _ = await raw_request(gateway.port, request_head("GET", raw_target, token))
    assert status == 200
    (recorded,) = standin.state.calls_to("/api/files/r%C3%A9sum%C3%A9")
    assert recorded.query == "q=%C3%BC"
    # Empty segments and harmless dots inside names are not normalised either.
    status, _, _ = await raw_request(gateway.port, request_head("GET", "/noetl/a//b/..c/d.../", token))
    assert status == 200
    assert standin.state.calls_to("/api/a//b/..c/d.../")


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "target",
    [
        "/noetl/../secret",
        "/noetl/a/../../health",
        "/noetl/a/..",
        "/noetl/./health",
        "/noetl/a/./b",
        "/noetl/a/.",
        "/noetl/%2e%2e/secret",
        "/noetl/%2E%2E/secret",
        "/noetl/.%2e/secret",
        "/noetl/%2e./secret",
        "/noetl/a/%2e/b",
        "/noetl/%252e%252e/secret",
        "/noetl/%25252e%25252e/secret",
        "/noetl/..;/secret",
        "/noetl/a%2fb",
        "/noetl/a%2F..%2Fsecret",
        "/noetl/a%5cb",
        "/noetl/a%5C..%5Csecret",
        "/noetl/a%252fb",
        "/noetl/a\\..\\secret",
        "/noetl/a\\b",
        "/noetl/a%00b",
        "/noetl/a%0d%0aX-Evil:%201",
        "/noetl/..?x=1",
    ],
)
async def test_traversal_attempts_are_refused(
    gateway: GatewayInstance, standin: Standin, target: str, token: str
) -> None:
    before = len(standin.state.calls)
    status, headers, payload = await raw_request(gateway.port, request_head("GET", target, token))
    assert status == 400, target
    assert headers["content-type"].startswith("application/json")
    assert "Path must not contain" in orjson.loads(payload)["error"]
    assert [c.path for c in standin.state.calls[before:] if not c.path.startswith("/api/auth")] == []


# -- headers ---------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_request_headers_are_cleaned_and_identity_added(
    gateway: GatewayInstance, standin: Standin, token: str
) -> None:
    head = request_head(
        "POST",
        "/noetl/inspect",
        token,
        "Cookie: session_token=abc; other=1",
        "X-Session-Token: sess_other",
        "X-User-Id: 999",
        "X-User-Email: mallory@example.com",
        "x-user-roles: admin",
        "X-Noetl-User-Id: 1",
        "X-NOETL-USER-EMAIL: root@example.com",
        "Proxy-Authorization: Basic Zm9vOmJhcg==",
        "Keep-Alive: timeout=5",
        "TE: trailers",
        "Upgrade: websocket",
        "X-Private-Hop: secret",
        "X-Forwarded-For: 10.1.2.3",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: noetl.example.com",
        "X-Request-Id: client-req-42",
        "X-Custom: kept",
        "Accept: application/json",
        "Content-Type: application/json",
        "Content-Length: 2",
        connection="close, X-Private-Hop",
    )
    status, _, _ = await raw_request(gateway.port, head, b"{}")
    assert status == 200
    (recorded,) = standin.state.calls_to("/api/inspect")
    sent = {name.lower(): value for name, value in recorded.headers.items()}
    for dropped in (
        "authorization",
        "cookie",
        "x-session-token",
        "x-user-id",
        "x-user-email",
        "x-user-roles",
        "proxy-authorization",
        "keep-alive",
        "te",
        "upgrade",
        "x-private-hop",
    ):
        assert dropped not in sent, dropped
    assert sent["x-noetl-user-id"] == "42"
    assert sent["x-noetl-user-email"] == "alice@example.com"
    assert sent["x-request-id"] == "client-req-42"
    assert sent["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert sent["x-forwarded-proto"] == "https"
    assert sent["x-forwarded-host"] == "noetl.example.com"
    assert sent["host"] == f"127.0.0.1:{standin.port}"
    assert sent["x-custom"] == "kept"
    assert sent["accept"] == "application/json"
    assert sent["content-type"] == "application/json"


@pytest.mark.gen_test
async def test_gateway_adds_its_own_view_and_invents_nothing(
    gateway: GatewayInstance, standin: Standin, token: str
) -> None:
    status, _, _ = await raw_request(gateway.port, request_head("GET", "/noetl/minimal", token))
    assert status == 200
    (recorded,) = standin.state.calls_to("/api/minimal")
    sent = {name.lower(): value for name, value in recorded.headers.items()}
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"] == "gateway.test"
    assert len(sent["x-request-id"]) == 32  # a fresh id, the same the client got back
    for invented in ("accept-encoding", "user-agent", "content-type", "accept", "cookie"):
        assert invented not in sent, invented


@pytest.mark.gen_test
async def test_forwarded_proto_and_host_from_the_client_are_ignored_without_a_trusted_proxy(
    make_signed_in: SignedInFactory, standin: Standin
) -> None:
    alice = await make_signed_in(GATEWAY_TRUSTED_PROXY_HOPS="0")
    head = request_head(
        "GET",
        "/noetl/direct",
        alice.token,
        "X-Forwarded-For: 10.9.9.9",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: evil.example",
    )
    status, _, _ = await raw_request(alice.gateway.port, head)
    assert status == 200
    (recorded,) = standin.state.calls_to("/api/direct")
    sent = {name.lower(): value for name, value in recorded.headers.items()}
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"] == "gateway.test"
    assert sent["x-forwarded-for"] == "10.9.9.9, 127.0.0.1"  # the chain, ending with the real peer


@pytest.mark.gen_test
@pytest.mark.parametrize("code", [200, 201, 404, 409, 418, 500, 599])
async def test_upstream_status_body_and_headers_pass_through(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, code: int, token: str
) -> None:
    headers = {**bearer(token), "Origin": "http://ui.example:3000"}
    url = f"{gateway.url}/noetl/standin/status/{code}"
    async with client.get(url, headers=headers, allow_redirects=False) as resp:
        body = await resp.read()
        assert resp.status == code
        assert orjson.loads(body) == {"detail": f"scripted {code}", "status": code}
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["ETag"] == f'"v-{code}"'
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Location"] == f"/api/standin/status/{code}?moved=1"
        assert resp.headers["Content-Disposition"] == "inline"
        assert resp.headers.getall("X-Repeated") == ["one", "two"]
        # Not relayed: NoETL's cookie and CORS, hop-by-hop headers. The gateway's CORS stays.
        assert "Set-Cookie" not in resp.headers
        assert "Keep-Alive" not in resp.headers and "X-Private-Hop" not in resp.headers
        assert resp.headers["Access-Control-Allow-Origin"] == "http://ui.example:3000"
        assert resp.headers["X-Request-Id"]


@pytest.mark.gen_test
async def test_bodyless_statuses_and_head(alice: SignedIn, standin: Standin) -> None:
    for code in (204, 304):
        async with alice.request("GET", f"/noetl/standin/status/{code}") as resp:
            assert resp.status == code
            assert await resp.read() == b""
            assert resp.headers["ETag"] == f'"v-{code}"'
    async with alice.request("HEAD", "/noetl/standin/status/404") as resp:
        assert resp.status == 404
        assert resp.headers["Content-Length"] == "1234"
        assert resp.headers["X-Standin-Status"] == "404"


@pytest.mark.gen_test
async def test_html_503_from_upstream_passes_through_unchanged(alice: SignedIn, standin: Standin) -> None:
    async with alice.request("GET", "/noetl/standin/html503") as resp:
        assert resp.status == 503
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert resp.headers["Retry-After"] == "7"
        assert await resp.text() == "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"


# -- upstream failures -----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_unreachable_upstream_is_502_json_fast(make_gateway: object, client: aiohttp.ClientSession) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gw = await make_gateway(NOETL_BASE_URL=dead, GATEWAY_AUTH_BYPASS="true", NATS_URL="")  # type: ignore[operator]
    started = time.monotonic()
    status, body, headers = await call(client, "GET", f"{gw.url}/noetl/anything", headers=bearer("dev-token"))
    assert (status, body) == (502, {"error": "NoETL server is unreachable"})
    assert headers["Content-Type"] == "application/json"
    assert time.monotonic() - started < 2.0
    # A streamed upload is refused as soon as the upstream call fails, not after the whole body.
    status, body, _ = await call(client, "PUT", f"{gw.url}/noetl/up", raw=b"z" * 300_000, headers=bearer("dev-token"))
    assert (status, body) == (502, {"error": "NoETL server is unreachable"})


@pytest.mark.gen_test
async def test_upstream_dropping_the_connection_is_502(alice: SignedIn, standin: Standin) -> None:
    status, body, _ = await alice.call("GET", "/noetl/standin/drop")
    assert (status, body) == (502, {"error": "NoETL server is unreachable"})


@pytest.mark.gen_test
async def test_upstream_timeout_is_504_and_the_upstream_call_is_dropped(
    make_signed_in: SignedInFactory, standin: Standin
) -> None:
    alice = await make_signed_in(GATEWAY_PROXY_TIMEOUT_SECS="0.5")
    started = time.monotonic()
    status, body, _ = await alice.call("GET", "/noetl/standin/hang")
    assert (status, body) == (504, {"error": "NoETL did not answer in time"})
    assert 0.4 < time.monotonic() - started < 5
    from tests.standin.proxy_routes import routes_state

    await asyncio.wait_for(routes_state(standin.state).event("disconnected", "hang").wait(), 5)


@pytest.mark.gen_test
async def test_truncated_upstream_body_is_not_presented_as_complete(alice: SignedIn, standin: Standin) -> None:
    async with alice.request("GET", "/noetl/standin/truncate") as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


# -- access check on POST /noetl/execute -----------------------------------------------------


@pytest.mark.gen_test
async def test_execute_allowed_is_forwarded_with_its_body(alice: SignedIn, standin: Standin) -> None:
    payload = {"path": playbooks.NOOP, "payload": {"x": 1}}
    status, body, _ = await alice.call("POST", "/noetl/execute", payload)
    assert status == 200, body
    assert body["status"] == "started"
    checks = [c for c in standin.state.calls_to("/api/execute") if c.body["path"] == playbooks.CHECK_ACCESS]
    assert len(checks) == 1
    assert checks[0].body["workload"]["playbook_path"] == playbooks.NOOP
    assert checks[0].body["workload"]["action"] == "execute"
    (forwarded,) = [c for c in standin.state.calls_to("/api/execute") if c.body["path"] == playbooks.NOOP]
    assert forwarded.body == payload
    assert forwarded.headers["X-Noetl-User-Id"] == "42"


@pytest.mark.gen_test
async def test_execute_denied_is_403_and_not_forwarded(alice: SignedIn, standin: Standin) -> None:
    standin.state.denied_paths.add(playbooks.NOOP)
    for target in ("/noetl/execute", "/noetl/execute/", "/noetl//execute", "/noetl/%65xecute", "/noetl/EXECUTE"):
        status, body, _ = await alice.call("POST", target, {"path": playbooks.NOOP})
        assert status == 403, target
        assert body == {"error": f"No execute permission on {playbooks.NOOP}"}
    assert [c for c in standin.state.calls_to("/api/execute") if c.body["path"] == playbooks.NOOP] == []


@pytest.mark.gen_test
async def test_execute_body_must_name_the_playbook(alice: SignedIn, standin: Standin) -> None:
    status, body, _ = await alice.call("POST", "/noetl/execute", {"payload": {}})
    assert status == 400 and "'path'" in body["error"]
    status, body, _ = await alice.call("POST", "/noetl/execute", raw=b"{nope")
    assert (status, body) == (400, {"error": "Malformed JSON in request body"})
    big = orjson.dumps({"path": playbooks.NOOP, "pad": "x" * (1024 * 1024)})
    status, body, _ = await alice.call("POST", "/noetl/execute", raw=big)
    assert status == 413 and "too large" in body["error"]
    assert [c for c in standin.state.calls_to("/api/execute") if c.body and c.body.get("path") == playbooks.NOOP] == []


@pytest.mark.gen_test
async def test_execute_without_enforcement_is_forwarded_unchecked(
    make_signed_in: SignedInFactory, standin: Standin
) -> None:
    alice = await make_signed_in(GATEWAY_ENFORCE_PLAYBOOK_ACCESS="false")
    standin.state.denied_paths.add(playbooks.NOOP)
    status, body, _ = await alice.call("POST", "/noetl/execute", {"path": playbooks.NOOP})
    assert status == 200 and body["status"] == "started"
    assert [c for c in standin.state.calls_to("/api/execute") if c.body["path"] == playbooks.CHECK_ACCESS] == []


@pytest.mark.gen_test
async def test_cookie_set_by_noetl_for_one_user_never_reaches_noetl_for_another(
    make_gateway: object, standin: Standin, client: aiohttp.ClientSession
) -> None:
    # A host name, not an IP: aiohttp's jar ignores cookies from IP addresses.
    gw = await make_gateway(NOETL_BASE_URL=f"http://localhost:{standin.port}")  # type: ignore[operator]
    alice = await login(client, gw)
    status, _, _ = await call(client, "GET", f"{gw.url}/noetl/standin/status/200", headers=bearer(alice))
    assert status == 200
    bob = await login(client, gw, "good:bob@example.com")
    status, _, _ = await call(client, "GET", f"{gw.url}/noetl/whoami", headers=bearer(bob))
    assert status == 200
    (recorded,) = standin.state.calls_to("/api/whoami")
    assert "Cookie" not in recorded.headers
