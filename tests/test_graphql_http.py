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
async def test_graphiql_page_is_public_and_pinned(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    status, page, headers = await call(client, "GET", f"{gateway.url}/graphql", headers={"Accept": accept})
    assert status == 200
    assert media(headers) == "text/html"
    assert "GraphiQL.createFetcher" in page and "window.location.pathname" in page
    # Every external file is pinned by version and integrity hash.
    scripts = re.findall(r'<script src="([^"]+)" integrity="(sha384-[^"]+)"', page)
    assert [url.rsplit("/", 1)[-1] for url, _ in scripts] == [
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
    ]
    assert all("@" in url for url, _ in scripts)
    # The inline script runs only under the CSP nonce; requests may only go back to us.
    csp = headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce and f'<script nonce="{nonce.group(1)}">' in page
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    # The offline fallback editor is in the page too.
    assert "function fallback()" in page
    # A fresh nonce per page.
    _, _, again = await call(client, "GET", f"{gateway.url}/graphql", headers={"Accept": accept})
    assert again["Content-Security-Policy"] != csp
    # A JSON client without a query gets a 401/400, never the page.
    status, _, _ = await call(client, "GET", f"{gateway.url}/graphql", headers={"Accept": "application/json"})
    assert status == 401
    assert not standin.state.calls  # the page needs nothing from NoETL
