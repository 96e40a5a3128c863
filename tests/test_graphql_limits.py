"""Query limits (size, depth, aliases, tokens), the introspection switch, hostile documents,
and the parse/validate document cache (CONTRACT §5)."""

from __future__ import annotations

import uuid

import aiohttp
import pytest
from graphql import get_introspection_query

from gateway.config import load_config
from gateway.metrics import Metrics
from schema.engine import GraphQLEngine
from tests.conftest import SignedInFactory, Standin
from tests.support.graphql_client import error_codes, metric_value
from tests.support.signin import SignedIn

GRAPHQL_RESPONSE = "application/graphql-response+json"
CACHE_METRIC = "gateway_graphql_document_cache_total"


def of_type_chain(levels: int) -> str:
    """An introspection query nested ``levels + 4`` deep (__type, fields, type, ofType..., name)."""
    inner = "name"
    for _ in range(levels):
        inner = f"ofType {{ {inner} }}"
    return f'{{ __type(name: "Query") {{ fields {{ type {{ {inner} }} }} }} }}'


def limit_of(body: dict[str, object]) -> list[object]:
    return [error["extensions"].get("limit") for error in body["errors"]]  # type: ignore[attr-defined, union-attr]


@pytest.mark.gen_test
async def test_graphiql_introspection_passes_the_defaults(alice: SignedIn) -> None:
    for query in (
        get_introspection_query(type_depth=7),  # graphql-js 16 shape, as GraphiQL 3 sends it
        get_introspection_query(
            descriptions=True,
            specified_by_url=True,
            directive_is_repeatable=True,
            schema_description=True,
            input_value_deprecation=True,
            one_of=True,
            type_depth=9,
        ),
    ):
        status, body, _ = await alice.gql(query, accept=GRAPHQL_RESPONSE)
        assert status == 200 and "errors" not in body, body
        names = {t["name"] for t in body["data"]["__schema"]["types"]}
        assert {"Query", "Mutation", "JSON", "Execution", "ExecutionStatus", "ProxyResponse"} <= names


@pytest.mark.gen_test
async def test_depth_limit(make_signed_in: SignedInFactory) -> None:
    alice = await make_signed_in()
    status, body, _ = await alice.gql(of_type_chain(11))  # depth 15: allowed
    assert status == 200 and "errors" not in body, body
    status, body, _ = await alice.gql(of_type_chain(12), accept=GRAPHQL_RESPONSE)
    assert status == 400 and limit_of(body) == ["depth"], body
    assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert "16 levels deep; the limit is 15" in body["errors"][0]["message"]
    # Fragments count where they are spread.
    query = '{ __type(name: "Query") { ...F } } fragment F on __Type { fields { type { ofType { ofType { name } } } } }'
    shallow = await make_signed_in(GATEWAY_GRAPHQL_MAX_DEPTH="5")
    _, body, _ = await shallow.gql(query)
    assert limit_of(body) == ["depth"], body
    _, body, _ = await shallow.gql("{ me { email } }")
    assert body == {"data": {"me": {"email": "alice@example.com"}}}


@pytest.mark.gen_test
async def test_alias_limit(alice: SignedIn) -> None:
    allowed = "{ " + " ".join(f"a{i}: health" for i in range(30)) + " }"
    status, body, _ = await alice.gql(allowed)
    assert status == 200 and len(body["data"]) == 30
    too_many = "{ " + " ".join(f"a{i}: health" for i in range(31)) + " }"
    status, body, _ = await alice.gql(too_many, accept=GRAPHQL_RESPONSE)
    assert status == 400 and limit_of(body) == ["aliases"]
    assert body["errors"][0]["message"] == "Query uses 31 aliases; the limit is 30."


@pytest.mark.gen_test
async def test_token_and_size_limits(make_signed_in: SignedInFactory, standin: Standin) -> None:
    alice = await make_signed_in(GATEWAY_ENFORCE_PLAYBOOK_ACCESS="false")
    # 10 001+ tokens in ~20 KiB: refused by the parser before anything runs.
    many = 'mutation { executePlaybook(name: "tests/noop", variables: [' + "1 " * 10_001 + "]) { id } }"
    assert len(many.encode()) < 64 * 1024
    status, body, _ = await alice.gql(many, accept=GRAPHQL_RESPONSE)
    assert status == 400 and limit_of(body) == ["tokens"], body
    assert "10000 tokens" in body["errors"][0]["message"]
    # Comments count too (they cost the parser the same).
    commented = "{ health }" + "\n#" * 10_001
    _, body, _ = await alice.gql(commented)
    assert limit_of(body) == ["tokens"], body
    # Over 64 KiB of query text: refused before parsing.
    huge = "{ health }" + " " * (64 * 1024)
    status, body, _ = await alice.gql(huge)
    assert status == 200 and limit_of(body) == ["size"]
    assert not standin.state.calls_to("/api/execute", "POST")[1:]  # only the login ran
    small = await make_signed_in(GATEWAY_GRAPHQL_MAX_QUERY_BYTES="64", GATEWAY_GRAPHQL_MAX_TOKENS="5")
    _, body, _ = await small.gql("{ health }" + " " * 60)
    assert limit_of(body) == ["size"]
    _, body, _ = await small.gql("{ health version me { email } }")  # 8 tokens
    assert limit_of(body) == ["tokens"]
    _, body, _ = await small.gql("{ health }")
    assert body == {"data": {"health": "ok"}}


@pytest.mark.gen_test
async def test_introspection_switch(make_signed_in: SignedInFactory) -> None:
    closed = await make_signed_in(GATEWAY_GRAPHQL_INTROSPECTION="false")
    for query in (
        get_introspection_query(),
        '{ __type(name: "Query") { name } }',
        "{ health __schema { queryType { name } } }",
    ):
        status, body, _ = await closed.gql(query, accept=GRAPHQL_RESPONSE)
        assert status == 400 and "introspection" in limit_of(body), body
        assert "introspection is disabled" in body["errors"][0]["message"]
    # __typename is not introspection of the schema.
    _, body, _ = await closed.gql("{ __typename health }")
    assert body == {"data": {"__typename": "Query", "health": "ok"}}


@pytest.mark.gen_test
async def test_hostile_documents_are_errors_not_crashes(alice: SignedIn) -> None:
    hostile = {
        "nested braces": "{" * 5000 + "}" * 5000,
        "nested list literal": '{ execution(id: "1") { result } } mutation { executePlaybook(name: "x", variables: '
        + "[" * 3000
        + "]" * 3000
        + ") { id } }",
        "fragment cycle": "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
        "introspection fan-out": "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }",
        "same field many times": "{" + " health" * 4000 + " }",
        "unknown fragment": "{ ...Nope }",
        "subscription": "subscription { health }",
        "empty": "   ",
        "binary": "\x00\x01\x02",
    }
    for name, query in hostile.items():
        status, body, _ = await alice.gql(query)
        assert status in (200, 400), (name, body)
        assert body.get("errors") and "data" not in body, (name, body)
        assert "Traceback" not in str(body)
    # The gateway still answers.
    _, body, _ = await alice.gql("{ health }")
    assert body == {"data": {"health": "ok"}}


@pytest.mark.gen_test
async def test_document_cache_is_hit(make_signed_in: SignedInFactory, client: aiohttp.ClientSession) -> None:
    alice = await make_signed_in()
    query = f"# {uuid.uuid4()}\n{{ health }}"
    hits0 = await metric_value(client, alice.gateway, CACHE_METRIC, outcome="hit")
    misses0 = await metric_value(client, alice.gateway, CACHE_METRIC, outcome="miss")
    for _ in range(3):
        _, body, _ = await alice.gql(query)
        assert body == {"data": {"health": "ok"}}
    assert await metric_value(client, alice.gateway, CACHE_METRIC, outcome="miss") == misses0 + 1
    assert await metric_value(client, alice.gateway, CACHE_METRIC, outcome="hit") == hits0 + 2
    # A bad query is cached as its errors: the second time costs no parse either.
    bad = f"# {uuid.uuid4()}\n{{ nope }}"
    for _ in range(2):
        _, body, _ = await alice.gql(bad)
        assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert await metric_value(client, alice.gateway, CACHE_METRIC, outcome="miss") == misses0 + 2
    # With the cache off every request parses again.
    off = await make_signed_in(GATEWAY_GRAPHQL_DOCUMENT_CACHE_SIZE="0")
    for _ in range(2):
        await off.gql(query)
    assert await metric_value(client, off.gateway, CACHE_METRIC, outcome="miss") == 2
    assert await metric_value(client, off.gateway, CACHE_METRIC, outcome="hit") == 0


def test_document_cache_is_bounded() -> None:
    metrics = Metrics()
    cache = GraphQLEngine(load_config({"GATEWAY_GRAPHQL_DOCUMENT_CACHE_SIZE": "2"}), metrics).documents

    def misses() -> float:
        return metrics.registry.get_sample_value(CACHE_METRIC, {"outcome": "miss"}) or 0.0

    first, second, third = "{ health }", "{ version }", "{ health version }"
    for query in (first, second, first, third):  # first is used again, so second is the oldest
        assert cache.prepare(query).document is not None
    assert (misses(), len(cache)) == (3, 2)
    cache.prepare(first)
    assert misses() == 3  # kept: recently used
    cache.prepare(second)
    assert misses() == 4  # evicted earlier
    # Text budget: 2 entries x 2 KiB; one entry may take at most 1/8 of it, larger texts are not kept.
    big = "{ health }" + " " * 1000
    cache.prepare(big)
    cache.prepare(big)
    assert misses() == 6 and len(cache) == 2
