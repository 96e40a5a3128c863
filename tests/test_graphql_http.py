"""GraphQL over HTTP: GET vs POST, content negotiation and status codes, malformed requests,
authentication, the GraphiQL page (CONTRACT §4, §5)."""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.conftest import GatewayFactory, Standin
from tests.support.gateway import GatewayInstance, call
from tests.support.graphql_client import EXECUTE_EXAMPLE, error_codes, gql
from tests.support.signin import login

GRAPHQL_RESPONSE = "application/graphql-response+json"


def media(headers: object) -> str:
    return str(headers["Content-Type"]).split(";")[0]  # type: ignore[index]


@pytest.mark.gen_test
async def test_post_and_get_run_queries(gateway: GatewayInstance, client: aiohttp.ClientSession, token: str) -> None:
    status, body, headers = await gql(client, gateway, token, "{ health version }")
    assert status == 200, body
    assert body == {"data": {"health": "ok", "version": body["data"]["version"]}}
    assert media(headers) == "application/json"
    assert headers["Cache-Control"] == "no-store"

    query = "query Who($x: ID!) { me { email } execution(id: $x) { id } } query Other { health }"
    status, body, _ = await gql(client, gateway, token, query, {"x": "1"}, operation_name="Who", method="GET")
    assert status == 200, body
    assert body == {"data": {"me": {"email": "alice@example.com"}, "execution": None}}


@pytest.mark.gen_test
async def test_mutation_over_get_is_405_and_runs_nothing(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    before = len(standin.state.calls_to("/api/execute"))
    status, body, headers = await gql(client, gateway, token, EXECUTE_EXAMPLE, method="GET")
    assert status == 405, body
    assert headers["Allow"] == "POST"
    assert body["error"] and error_codes(body) == ["METHOD_NOT_ALLOWED"]
    # A document holding a query and a mutation: GET may run the query, never the mutation.
    both = 'query Q { health } mutation M { executePlaybook(name: "tests/noop") { id } }'
    status, body, _ = await gql(client, gateway, token, both, operation_name="M", method="GET")
    assert status == 405
    status, body, _ = await gql(client, gateway, token, both, operation_name="Q", method="GET")
    assert (status, body) == (200, {"data": {"health": "ok"}})
    assert len(standin.state.calls_to("/api/execute")) == before


@pytest.mark.gen_test
async def test_request_errors_follow_the_negotiated_media_type(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    failing = {
        "{ health ": "GRAPHQL_PARSE_FAILED",
        "{ nope }": "GRAPHQL_VALIDATION_FAILED",
    }
    for query, code in failing.items():
        # Legacy application/json: 200 with errors.
        status, body, headers = await gql(client, gateway, token, query)
        assert (status, media(headers)) == (200, "application/json"), body
        assert "data" not in body and error_codes(body) == [code]
        assert body["errors"][0]["locations"]
        # application/graphql-response+json: 4xx, same body.
        status, body, headers = await gql(client, gateway, token, query, accept=GRAPHQL_RESPONSE)
        assert (status, media(headers)) == (400, GRAPHQL_RESPONSE), body
        assert error_codes(body) == [code]
    # Variables that do not fit their declared type are a request error too.
    query = "query($id: ID!) { execution(id: $id) { id } }"
    status, body, _ = await gql(client, gateway, token, query, {"id": {"not": "an id"}})
    assert status == 200 and error_codes(body) == ["BAD_USER_INPUT"] and "data" not in body
    status, body, _ = await gql(client, gateway, token, query, {}, accept=GRAPHQL_RESPONSE)
    assert status == 400 and error_codes(body) == ["BAD_USER_INPUT"]


@pytest.mark.gen_test
async def test_accept_header_negotiation(gateway: GatewayInstance, client: aiohttp.ClientSession, token: str) -> None:
    cases = {
        None: "application/json",
        "*/*": "application/json",
        "application/json": "application/json",
        GRAPHQL_RESPONSE: GRAPHQL_RESPONSE,
        f"{GRAPHQL_RESPONSE}, application/json;q=0.9": GRAPHQL_RESPONSE,
        f"application/json, {GRAPHQL_RESPONSE};q=0.5": "application/json",
        f"{GRAPHQL_RESPONSE};q=0, application/json": "application/json",
    }
    for accept, expected in cases.items():
        status, body, headers = await gql(client, gateway, token, "{ health }", accept=accept)
        assert (status, media(headers)) == (200, expected), accept
        assert body == {"data": {"health": "ok"}}
    # A field error still executes: 200 with data and errors under either media type.
    status, body, headers = await gql(
        client, gateway, token, '{ health execution(id: "x1") { id } }', accept=GRAPHQL_RESPONSE
    )
    assert status == 200 and media(headers) == GRAPHQL_RESPONSE
    assert body["data"] == {"health": "ok", "execution": None}
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["path"] == ["execution"]


@pytest.mark.gen_test
async def test_malformed_requests_are_clear_400s(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    url = f"{gateway.url}/graphql"
    raw_cases = {
        b"{not json": "Malformed JSON",
        b"[]": "Batched",
        b'"{ health }"': "JSON object",
        b"": "JSON object",
        b"{}": "'query'",
        b'{"query": 42}': "'query'",
        b'{"query": "{ health }", "variables": [1]}': "'variables'",
        b'{"query": "{ health }", "variables": "{}"}': "'variables'",
        b'{"query": "{ health }", "operationName": 5}': "'operationName'",
        b'{"query": "{ health }", "extensions": 1}': "'extensions'",
        b'{"query": "{ health }", "operationName": "Missing"}': "Unknown operation named 'Missing'",
        b'{"query": "query A { health } query B { version }"}': "operationName",
    }
    for raw, fragment in raw_cases.items():
        status, body, headers = await call(client, "POST", url, headers=auth, raw=raw)
        assert status == 400, (raw, body)
        assert fragment in body["error"], (raw, body)
        assert body["errors"][0]["message"] == body["error"]
        assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
        assert media(headers) == "application/json"
    # The same with the GraphQL media type accepted: still 400 with the JSON error body.
    status, body, _ = await call(client, "POST", url, headers={**auth, "Accept": GRAPHQL_RESPONSE}, raw=b"[]")
    assert status == 400 and "Batched" in body["error"]
    # GET: variables must be a JSON object; a query is required unless a page is wanted.
    get_cases = {
        "query=%7B%20health%20%7D&variables=%5B1%5D": "'variables'",
        "query=%7B%20health%20%7D&variables=%7Bbad": "'variables'",
        "variables=%7B%7D": "'query'",
        "query=%7B%20health%20%7D&query=%7B%20version%20%7D": "more than once",
    }
    for params, fragment in get_cases.items():
        status, body, _ = await call(client, "GET", f"{url}?{params}", headers={"Authorization": f"Bearer {token}"})
        assert status == 400 and fragment in body["error"], (params, body)
    status, body, _ = await call(
        client, "POST", url, headers={**auth, "Content-Type": "text/plain"}, raw=b'{"query": "{ health }"}'
    )
    assert status == 415 and "application/json" in body["error"]


@pytest.mark.gen_test
async def test_body_limit_is_413(make_gateway: GatewayFactory, client: aiohttp.ClientSession) -> None:
    gw = await make_gateway(GATEWAY_MAX_BODY_BYTES="2048")
    token = await login(client, gw)
    status, body, _ = await gql(client, gw, token, "{ health }", {"pad": "x" * 4096})
    assert status == 413 and "too large" in body["error"]


@pytest.mark.gen_test
async def test_operations_need_a_session(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    for method in ("POST", "GET"):
        status, body, headers = await gql(client, gateway, None, "{ health }", method=method)
        assert status == 401, body
        assert body["error"] == "Missing authentication token"
        assert error_codes(body) == ["UNAUTHENTICATED"]
        status, body, _ = await gql(client, gateway, "sess_not_a_real_session", "{ health }", method=method)
        assert status == 401 and body["error"] == "Invalid or expired session"
        assert error_codes(body) == ["UNAUTHENTICATED"]
    # Unauthenticated requests learn nothing about the body: 401 before parsing it.
    status, body, _ = await call(
        client, "POST", f"{gateway.url}/graphql", headers={"Content-Type": "application/json"}, raw=b"{bad"
    )
    assert status == 401


@pytest.mark.gen_test
async def test_session_cookie_and_cross_origin_guard(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    url = f"{gateway.url}/graphql"
    cookie = {"Cookie": f"session_token={token}"}
    status, body, _ = await call(client, "POST", url, {"query": "{ me { email } }"}, headers=cookie)
    assert status == 200 and body["data"]["me"]["email"] == "alice@example.com"
    status, body, _ = await call(
        client, "POST", url, {"query": "{ me { email } }"}, headers={**cookie, "Origin": "https://evil.example"}
    )
    assert status == 403, body
    # The GraphiQL page served by the gateway itself posts with its own origin: allowed.
    status, body, _ = await call(
        client, "POST", url, {"query": "{ me { email } }"}, headers={**cookie, "Origin": gateway.url}
    )
    assert status == 200 and body["data"]["me"]["email"] == "alice@example.com"
    status, _, headers = await call(
        client,
        "OPTIONS",
        url,
        headers={"Origin": "http://ui.example:3000", "Access-Control-Request-Method": "POST"},
    )
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "http://ui.example:3000"


@pytest.mark.gen_test
async def test_graphiql_page_is_public_and_self_hosted(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    status, page, headers = await call(client, "GET", f"{gateway.url}/graphql", headers={"Accept": accept})
    assert status == 200
    assert media(headers) == "text/html"
    # Every file comes from the gateway itself, versioned by content; nothing inline, nothing external.
    files = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert [url.split("?")[0].rsplit("/", 1)[-1] for url in files] == [
        "graphiql.min.css",
        "page.css",
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "graphql-ws.min.js",
        "start.js",
    ]
    assert all(re.fullmatch(r"graphql/assets/[a-z.-]+\?v=[0-9a-f]{16}", url) for url in files), files
    assert "://" not in page and "<script>" not in page and "<style" not in page
    # The CSP allows only this origin (and data: for the fonts inside GraphiQL's stylesheet).
    csp = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert csp["script-src"] == csp["style-src"] == csp["connect-src"] == "'self'"
    assert {source for sources in csp.values() for source in sources.split()} <= {"'self'", "'none'", "data:"}
    for url in files:
        status, body, asset_headers = await call(client, "GET", f"{gateway.url}/{url}")
        assert status == 200 and body, url
        assert asset_headers["X-Content-Type-Options"] == "nosniff"
        kind = "text/css" if url.split("?")[0].endswith(".css") else "text/javascript"
        assert asset_headers["Content-Type"].split(";")[0] in (kind, "application/javascript"), url
        assert "max-age=315360000" in asset_headers["Cache-Control"], url  # versioned: cached for good
    # Only the page's files: not the npm manifest, the lock file, the vendoring script, nor a way out.
    for name in ("package.json", "package-lock.json", "vendor.mjs", "LICENSES.txt", "../graphiql.py", "%2e%2e/base.py"):
        status, body, _ = await call(client, "GET", f"{gateway.url}/graphql/assets/{name}")
        assert status in (403, 404) and isinstance(body, dict) and body["error"], (name, status, body)
    # Behind /graphql/ (trailing slash) the same files are found relative to the page.
    _, slash_page, _ = await call(client, "GET", f"{gateway.url}/graphql/", headers={"Accept": accept})
    first = re.findall(r'src="([^"]+)"', slash_page)[0]
    assert first.startswith("assets/")
    status, _, _ = await call(client, "GET", f"{gateway.url}/graphql/{first}")
    assert status == 200
    # A JSON client without a query gets a 401/400, never the page.
    status, _, _ = await call(client, "GET", f"{gateway.url}/graphql", headers={"Accept": "application/json"})
    assert status == 401
    assert not standin.state.calls  # the page needs nothing from NoETL
