"""Safelist mode (``GATEWAY_GRAPHQL_SAFELIST``): only the operations of an Apollo persisted-query
manifest run — by id, by the hash of their body, or as the same text; everything else (introspection
included) is refused with PERSISTED_QUERY_NOT_ALLOWED; a bad manifest stops the start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from graphql import get_introspection_query

from tests.conftest import GatewayFactory, Standin
from tests.support.graphql_client import error_codes, gql, metric_value
from tests.support.signin import login
from tests.test_graphql_apq import METRIC, apq, noop_runs, sha256

HEALTH = "query Health { health }"
RUN = 'mutation Run { executePlaybook(name: "tests/noop") { id } }'
SCHEMA_NAME = "query SchemaName { __schema { queryType { name } } }"
LISTED_BY_NAME = "query Me { me { email } }"


def manifest(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"format": "apollo-persisted-query-manifest", "version": 1, "operations": list(operations)}


def operation(body: str, name: str, kind: str = "query", op_id: str | None = None) -> dict[str, Any]:
    return {"id": op_id or sha256(body), "name": name, "type": kind, "body": body}


@pytest.fixture
def safelist_file(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.json"
    path.write_bytes(
        orjson.dumps(
            manifest(
                operation(HEALTH, "Health"),
                operation(RUN, "Run", "mutation"),
                operation(SCHEMA_NAME, "SchemaName"),
                operation(LISTED_BY_NAME, "Me", op_id="me-v1"),  # a custom id, as the manifest tools allow
            )
        )
    )
    return path


async def safelisted(make_gateway: GatewayFactory, client: aiohttp.ClientSession, path: Path) -> tuple[Any, str]:
    gw = await make_gateway(GATEWAY_GRAPHQL_SAFELIST=str(path))
    return gw, await login(client, gw)


@pytest.mark.gen_test
async def test_only_listed_operations_run(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession, safelist_file: Path
) -> None:
    gw, token = await safelisted(make_gateway, client, safelist_file)
    # Listed: as text, by the hash of the body, by id.
    status, body, _ = await gql(client, gw, token, HEALTH)
    assert (status, body) == (200, {"data": {"health": "ok"}})
    for method in ("POST", "GET"):
        status, body, _ = await apq(client, gw, token, digest=sha256(HEALTH), method=method)
        assert (status, body) == (200, {"data": {"health": "ok"}}), method
        status, body, _ = await apq(client, gw, token, digest="me-v1", method=method)
        assert (status, body) == (200, {"data": {"me": {"email": "alice@example.com"}}}), method
    # Text with its id, as a client using the manifest's ids may send it.
    status, body, _ = await apq(client, gw, token, digest="me-v1", query=LISTED_BY_NAME)
    assert status == 200 and body["data"]["me"]["email"] == "alice@example.com"

    # Anything else: 403 PERSISTED_QUERY_NOT_ALLOWED, and NoETL never hears of it.
    before = noop_runs(standin)
    refused = [
        lambda: gql(client, gw, token, "{ health }"),  # same fields, other text
        lambda: gql(client, gw, token, 'mutation { executePlaybook(name: "tests/noop") { id } }'),
        lambda: apq(client, gw, token, digest=sha256("{ version }")),  # unknown hash: not "not found"
        lambda: apq(client, gw, token, digest=sha256("{ version }"), query="{ version }"),
        lambda: apq(client, gw, token, digest="unknown-id", method="GET"),
    ]
    for send in refused:
        status, body, _ = await send()
        assert status == 403, body
        assert error_codes(body) == ["PERSISTED_QUERY_NOT_ALLOWED"] and body["error"], body
    assert noop_runs(standin) == before
    # A listed mutation runs over POST (text or hash), never over GET.
    status, body, _ = await apq(client, gw, token, digest=sha256(RUN))
    assert status == 200 and body["data"]["executePlaybook"]["id"]
    status, body, _ = await apq(client, gw, token, digest=sha256(RUN), method="GET")
    assert status == 405
    assert noop_runs(standin) == before + 1
    # Text that does not match the hash it names is a mismatch, listed or not.
    status, body, _ = await apq(client, gw, token, digest=sha256(RUN), query=HEALTH)
    assert status == 400 and body["errors"][0]["message"] == "provided sha does not match query"
    assert await metric_value(client, gw, METRIC, outcome="refused") == 5
    # Nothing registers in safelist mode.
    assert gw.services is not None and await gw.services.persisted_queries.fetch(sha256("{ version }")) is None


@pytest.mark.gen_test
async def test_introspection_follows_the_safelist(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, safelist_file: Path
) -> None:
    gw, token = await safelisted(make_gateway, client, safelist_file)
    for query in (get_introspection_query(), "{ __schema { types { name } } }", '{ __type(name: "Query") { name } }'):
        status, body, _ = await gql(client, gw, token, query)
        assert status == 403 and error_codes(body) == ["PERSISTED_QUERY_NOT_ALLOWED"], body
    # An introspection query in the manifest is an operation like any other (the introspection switch still applies).
    status, body, _ = await gql(client, gw, token, SCHEMA_NAME)
    assert (status, body) == (200, {"data": {"__schema": {"queryType": {"name": "Query"}}}})
    closed = await make_gateway(GATEWAY_GRAPHQL_SAFELIST=str(safelist_file), GATEWAY_GRAPHQL_INTROSPECTION="false")
    closed_token = await login(client, closed)
    status, body, _ = await gql(client, closed, closed_token, SCHEMA_NAME)
    assert status == 200 and error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"], body


BAD_MANIFESTS: list[tuple[str, bytes | None, str]] = [
    ("missing.json", None, "cannot read it"),
    ("not-json.json", b"{nope", "not JSON"),
    (
        "wrong-format.json",
        orjson.dumps({"format": "relay", "version": 1, "operations": []}),
        "persisted-query manifest",
    ),
    ("version.json", orjson.dumps({**manifest(), "version": 2}), "unsupported manifest version"),
    ("operations.json", orjson.dumps({**manifest(), "operations": {}}), '"operations" must be a list'),
    ("no-body.json", orjson.dumps(manifest({"id": "x", "name": "X", "type": "query"})), 'has no "body"'),
    ("no-id.json", orjson.dumps(manifest({"body": "{ health }", "type": "query"})), 'has no "id"'),
    ("bad-type.json", orjson.dumps(manifest(operation("{ health }", "H", kind="read"))), '"type" must be'),
    ("syntax.json", orjson.dumps(manifest(operation("{ health ", "H", op_id="broken-op"))), "broken-op"),
    (
        "twice.json",
        orjson.dumps(manifest(operation("{ health }", "A", op_id="a"), operation("{ version }", "B", op_id="a"))),
        "listed twice",
    ),
]


@pytest.mark.parametrize(("name", "content", "problem"), BAD_MANIFESTS)
def test_a_bad_manifest_stops_the_start_with_one_line(
    tmp_path: Path, name: str, content: bytes | None, problem: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = subprocess.run(
        [sys.executable, "-m", "gateway"],
        env={**os.environ, "GATEWAY_GRAPHQL_SAFELIST": str(path), "NATS_URL": "", "ROUTER_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "GATEWAY_GRAPHQL_SAFELIST" in lines[0] and str(path) in lines[0] and problem in lines[0], lines[0]
