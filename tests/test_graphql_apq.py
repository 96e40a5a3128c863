"""Automatic persisted queries (Apollo's APQ protocol) over HTTP: not found → registered → hit, GET with
a hash (privately cacheable), hash mismatch and version errors, and the hash shared between replicas
through the NATS KV bucket. The real Apollo Client drives the same flow in test_graphql_apq_apollo.py."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import pytest

from tests.conftest import GatewayFactory, Replicas, Standin
from tests.support.gateway import GatewayInstance, call
from tests.support.graphql_client import error_codes, metric_value, send_graphql
from tests.support.signin import login


def noop_runs(standin: Standin) -> int:
    """How many times NoETL was asked to start tests/noop (access checks are playbooks too)."""
    return sum(1 for call in standin.state.calls_to("/api/execute") if call.body.get("path") == "tests/noop")


HEALTH = "query Apq { health version }"
RUN_NOOP = 'mutation Run { executePlaybook(name: "tests/noop") { id } }'
METRIC = "gateway_graphql_persisted_queries_total"
NOT_FOUND = {"errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(digest: str, version: Any = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": digest}}


async def apq(
    client: aiohttp.ClientSession,
    gw: GatewayInstance,
    token: str | None,
    *,
    digest: str,
    query: str | None = None,
    method: str = "POST",
    extensions: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    """One APQ request as Apollo's link sends it: the hash in ``extensions``, the text only when given."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    fields: dict[str, Any] = {"extensions": persisted(digest) if extensions is None else extensions}
    if query is not None:
        fields["query"] = query
    return await send_graphql(client, gw, fields, method=method, headers=sent)


@pytest.mark.gen_test
async def test_unknown_hash_is_not_found_then_registered_then_a_hit(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    digest = sha256(HEALTH)
    # No session: 401 before any lookup, as every protected route.
    status, body, _ = await apq(client, gateway, None, digest=digest)
    assert status == 401 and error_codes(body) == ["UNAUTHENTICATED"]
    # Unknown hash: Apollo Server's exact answer, HTTP 200 (also to a graphql-response+json client), never cached.
    for accept in ("application/json", "application/graphql-response+json"):
        status, body, headers = await apq(client, gateway, token, digest=digest, headers={"Accept": accept})
        assert (status, body) == (200, NOT_FOUND)
        assert headers["Cache-Control"] == "private, no-cache, must-revalidate"
    # The client resends with the text: it runs and registers the hash.
    status, body, _ = await apq(client, gateway, token, digest=digest, query=HEALTH)
    assert status == 200 and body["data"]["health"] == "ok", body
    # Now the hash alone is enough, over POST and GET.
    for method in ("POST", "GET"):
        status, body, _ = await apq(client, gateway, token, digest=digest, method=method)
        assert status == 200 and body["data"]["health"] == "ok", (method, body)
    assert await metric_value(client, gateway, METRIC, outcome="miss") == 2
    assert await metric_value(client, gateway, METRIC, outcome="registered") == 1
    assert await metric_value(client, gateway, METRIC, outcome="hit") == 2
    # Sending the text again with a known hash runs it without registering twice.
    status, body, _ = await apq(client, gateway, token, digest=digest, query=HEALTH)
    assert status == 200 and await metric_value(client, gateway, METRIC, outcome="registered") == 1


@pytest.mark.gen_test
async def test_get_with_a_hash_is_privately_cacheable_and_never_runs_a_mutation(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    digest = sha256(HEALTH)
    status, body, _ = await apq(client, gateway, token, digest=digest, query=HEALTH, method="GET")  # registers
    assert status == 200 and body["data"]["health"] == "ok"
    status, body, headers = await apq(client, gateway, token, digest=digest, method="GET")
    assert status == 200 and body["data"]["health"] == "ok"
    # The answer depends on the session: the caller's browser may keep it but must revalidate;
    # a shared cache (CDN, proxy) must not keep it at all.
    assert headers["Cache-Control"] == "private, no-cache"
    assert {"Authorization", "Cookie"} <= {v.strip() for v in headers["Vary"].split(",")}
    etag = headers["Etag"]
    status, body, _ = await apq(client, gateway, token, digest=digest, method="GET", headers={"If-None-Match": etag})
    assert status == 304 and not body
    # POST answers stay uncacheable.
    _, _, headers = await apq(client, gateway, token, digest=digest)
    assert headers["Cache-Control"] == "no-store"

    # A mutation registered over POST is still refused over GET by its hash, and never runs.
    run = sha256(RUN_NOOP)
    status, body, _ = await apq(client, gateway, token, digest=run, query=RUN_NOOP)
    assert status == 200 and body["data"]["executePlaybook"]["id"], body
    before = noop_runs(standin)
    status, body, headers = await apq(client, gateway, token, digest=run, method="GET")
    assert status == 405 and headers["Allow"] == "POST" and error_codes(body) == ["METHOD_NOT_ALLOWED"]
    assert noop_runs(standin) == before
    status, body, _ = await apq(client, gateway, token, digest=run)  # POST by hash: runs
    assert status == 200 and body["data"]["executePlaybook"]["id"]
    assert noop_runs(standin) == before + 1


@pytest.mark.gen_test
async def test_mismatch_bad_version_and_malformed_extensions_are_400(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    wrong = sha256("{ version }")
    status, body, _ = await apq(client, gateway, token, digest=wrong, query=HEALTH)
    assert status == 400 and body["errors"][0]["message"] == "provided sha does not match query"
    assert error_codes(body) == ["BAD_REQUEST"] and body["error"] == "provided sha does not match query"
    # Nothing was registered under the wrong hash.
    status, body, _ = await apq(client, gateway, token, digest=wrong)
    assert (status, body) == (200, NOT_FOUND)

    cases: list[tuple[Any, str]] = [
        (persisted(sha256(HEALTH), version=2), "Unsupported persisted query version"),
        (persisted(sha256(HEALTH), version=True), "Unsupported persisted query version"),
        ({"persistedQuery": {"sha256Hash": sha256(HEALTH)}}, "Unsupported persisted query version"),
        (persisted(sha256(HEALTH).upper()), "must be a lowercase hex SHA-256"),
        (persisted("abc"), "must be a lowercase hex SHA-256"),
        (persisted("../../etc"), "must be a lowercase hex SHA-256"),
        ({"persistedQuery": "yes"}, "must be a JSON object"),
        ([1, 2], "'extensions': must be a JSON object"),
    ]
    for method in ("POST", "GET"):
        for extensions, message in cases:
            status, body, _ = await apq(client, gateway, token, digest="", extensions=extensions, method=method)
            assert status == 400, (method, extensions, body)
            assert message in body["errors"][0]["message"] and body["error"], (method, extensions, body)
    status, body, _ = await call(
        client, "GET", f"{gateway.url}/graphql?extensions=%7Bnot-json", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 400 and body["error"] == "Invalid query parameter 'extensions': must be a JSON object"
    # Extensions without persistedQuery still need a query.
    status, body, _ = await apq(client, gateway, token, digest="", extensions={"tracing": True})
    assert status == 400 and body["error"] == "Missing required field 'query'"


@pytest.mark.gen_test
async def test_an_invalid_document_is_not_registered(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    for bad in ("{ nope }", "{ health "):
        digest = sha256(bad)
        status, body, _ = await apq(client, gateway, token, digest=digest, query=bad)
        assert status == 200 and error_codes(body)[0] in ("GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED")
        status, body, _ = await apq(client, gateway, token, digest=digest)
        assert (status, body) == (200, NOT_FOUND)
        assert gateway.services is not None
        assert await gateway.services.persisted_queries.fetch(digest) is None


@pytest.mark.gen_test
async def test_a_hash_registered_on_one_replica_runs_on_the_other(
    replicas: Replicas, client: aiohttp.ClientSession
) -> None:
    a, b = replicas
    token = await login(client, a)
    query = "query Shared { me { email } }"
    digest = sha256(query)
    status, body, _ = await apq(client, b, token, digest=digest)
    assert (status, body) == (200, NOT_FOUND)
    status, body, _ = await apq(client, a, token, digest=digest, query=query)
    assert status == 200 and body["data"]["me"]["email"] == "alice@example.com"
    # B has never seen the text: the bucket every replica shares answers it.
    assert b.services is not None
    assert await b.services.persisted_queries.fetch(digest) == {"query": query}
    status, body, _ = await apq(client, b, token, digest=digest)
    assert status == 200 and body["data"]["me"]["email"] == "alice@example.com", body
    assert await metric_value(client, b, METRIC, outcome="shared_hit") == 1
    # From then on B knows it itself (its document cache), without asking NATS.
    status, body, _ = await apq(client, b, token, digest=digest, method="GET")
    assert status == 200 and await metric_value(client, b, METRIC, outcome="hit") == 1


@pytest.mark.gen_test
async def test_a_tampered_bucket_entry_is_never_run(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway()
    token = await login(client, gw)
    digest = sha256(HEALTH)
    assert gw.services is not None
    # Someone with write access to the bucket puts another text under a known hash.
    await gw.services.persisted_queries.put(digest, {"query": "{ me { email } }"})
    status, body, _ = await apq(client, gw, token, digest=digest)
    assert (status, body) == (200, NOT_FOUND)


@pytest.mark.gen_test
async def test_without_nats_hashes_live_in_the_process(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(NATS_URL="")
    token = await login(client, gw)
    digest = sha256(HEALTH)
    status, body, _ = await apq(client, gw, token, digest=digest, query=HEALTH)
    assert status == 200 and body["data"]["health"] == "ok"
    status, body, _ = await apq(client, gw, token, digest=digest)
    assert status == 200 and body["data"]["health"] == "ok"
    assert gw.services is not None and len(gw.services.persisted_queries) == 0  # nothing queued for NATS
