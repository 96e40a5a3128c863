"""GraphQL fuzzing: hypothesis-graphql queries and mutations from our schema against a live gateway.

The gateway (with the NoETL stand-in and NATS) serves in the test's loop; hypothesis runs in a
worker thread and talks to it over real HTTP with a signed-in session. Every response must be
JSON without a traceback, never 5xx, every error must carry a code other than ``INTERNAL``, and
documents over a limit (size, tokens, depth, aliases, nesting) must come back as request errors
naming the limit. The gateway's own log must hold no error either.

Bounded: ``GRAPHQL_FUZZ_EXAMPLES`` scales the example counts (default 1.0, ~10 s); the seed is
fixed (``derandomize``) unless ``GRAPHQL_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import graphql
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, nodes

from tests.conftest import GatewayFactory, Standin
from tests.standin import playbooks
from tests.support.graphql_client import gql
from tests.support.signin import login
from tests.support.sse_client import init_of, open_stream

SCHEMA_SDL = (Path(__file__).parent.parent / "schema" / "schema.graphql").read_text(encoding="utf-8")
SCALE = float(os.environ.get("GRAPHQL_FUZZ_EXAMPLES", "1"))
LIMIT_CODES = {"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"}
# Codes a well-behaved gateway may answer fuzzed input with; INTERNAL means an unhandled exception.
EXPECTED_CODES = {
    *LIMIT_CODES,
    "BAD_REQUEST",
    "BAD_USER_INPUT",
    "FORBIDDEN",
    "UPSTREAM_ERROR",
    "UPSTREAM_UNAVAILABLE",
    "RATE_LIMITED",
    "METHOD_NOT_ALLOWED",
}
GROUP_EXAMPLES = (320, 160, 200, 60, 120)  # queries+mutations, violations, variables, limits, junk
TRACEBACK_MARKERS = ("Traceback", 'File "/', "Error:\n", "site-packages")


def examples(count: int) -> int:
    return max(1, int(count * SCALE))


def fuzz_settings(count: int) -> settings:
    return settings(
        max_examples=examples(count),
        deadline=None,
        database=None,  # no .hypothesis/ directory in the tree
        derandomize=os.environ.get("GRAPHQL_FUZZ_RANDOM") != "1",
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )


# -- strategies -----------------------------------------------------------------------------

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
JSON_LEAVES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def _object_field(pair: tuple[str, graphql.ValueNode]) -> graphql.ObjectFieldNode:
    return graphql.ObjectFieldNode(name=graphql.NameNode(value=pair[0]), value=pair[1])


# The JSON scalar as inline literals: any value node, objects and lists nested.
JSON_NODES: st.SearchStrategy[graphql.ValueNode] = st.recursive(
    st.one_of(
        st.text(max_size=30).map(nodes.String),
        st.integers(-(2**40), 2**40).map(nodes.Int),
        st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
        st.booleans().map(nodes.Boolean),
        st.just(nodes.Null),
    ),
    lambda inner: (
        st.lists(inner, max_size=4).map(nodes.List)
        | st.lists(st.tuples(NAMES, inner), max_size=4, unique_by=lambda pair: pair[0]).map(
            lambda pairs: nodes.Object([_object_field(pair) for pair in pairs])
        )
    ),
    max_leaves=15,
)
CUSTOM_SCALARS = {"JSON": JSON_NODES}

VARIABLE_OPERATIONS = (
    "mutation($n: String!, $v: JSON, $c: String) { executePlaybook(name: $n, variables: $v, clientId: $c)"
    " { id executionId requestId name status textOutput } }",
    "mutation($i: ProxyRequestInput!) { proxyRequest(input: $i) { success data error status } }",
    "query($id: ID!) { execution(id: $id) { id state finished status progress result error raw } }",
    "query { me { userId email displayName roles } health version }",
)
ENDPOINTS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["/api/catalog/list", "/api/executions", "/api/health", "/api/../x", "/api/%2e%2e/x", "http://x/"]),
    st.text(max_size=20).map(lambda tail: "/api/" + tail),
)


@dataclass(frozen=True)
class Case:
    """One HTTP request to /graphql and what kind of answer it must get."""

    kind: str
    query: str
    variables: Any = None
    operation_name: str | None = None
    method: str = "POST"
    accept: str | None = None
    raw_body: bytes | None = None
    limit: str | None = None  # the limit this document breaks


def documents(mode: Mode) -> st.SearchStrategy[str]:
    return from_schema(SCHEMA_SDL, custom_scalars=CUSTOM_SCALARS, mode=mode)


ACCEPTS = st.sampled_from([None, "application/json", "application/graphql-response+json", "*/*", "text/html"])


@st.composite
def schema_cases(draw: st.DrawFn, mode: Mode) -> Case:
    query = draw(documents(mode))
    small = len(query) < 4000 and not query.lstrip().startswith("mutation")
    method = draw(st.sampled_from(["POST", "GET"])) if small else "POST"
    kind = "positive" if mode is Mode.POSITIVE else "negative"
    return Case(kind, query, method=method, accept=draw(ACCEPTS))


@st.composite
def variable_cases(draw: st.DrawFn, client_id: str) -> Case:
    query = draw(st.sampled_from(VARIABLE_OPERATIONS))
    variables: Any = {
        "n": draw(st.one_of(st.text(max_size=60), st.sampled_from([playbooks.NOOP, "tests/forbidden", ""]))),
        "v": draw(st.one_of(JSON_VALUES, st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5))),
        "c": draw(st.one_of(st.none(), st.just(client_id), st.text(max_size=70))),
        "i": draw(
            st.one_of(
                st.fixed_dictionaries(
                    {
                        "method": st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "TRACE", ""]),
                        "endpoint": ENDPOINTS,
                    },
                    optional={"body": JSON_VALUES},
                ),
                JSON_VALUES,
            )
        ),
        "id": draw(st.one_of(st.integers(0, 10**20).map(str), st.text(max_size=30), st.integers(), JSON_VALUES)),
    }
    variables = draw(st.one_of(st.just(variables), JSON_VALUES))  # sometimes not even an object
    name = draw(st.one_of(st.none(), st.none(), NAMES))
    return Case("variables", query, variables, operation_name=name)


def _aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: health" for i in range(count)) + " }"


def _introspection_depth(levels: int) -> str:
    inner = "name"
    for _ in range(levels):
        inner = f"ofType {{ {inner} }}"
    return f"{{ __schema {{ types {{ fields {{ type {{ {inner} }} }} }} }} }}"


def _nested_selection(levels: int) -> str:
    return "{ " + "me { " * levels + "email" + " }" * levels + " }"


def _fragment_chain(length: int) -> str:
    chain = "\n".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(length))
    return f"{{ ...F0 }}\n{chain}\nfragment F{length} on Query {{ health }}"


def _nested_literal(levels: int) -> str:
    return f'mutation {{ executePlaybook(name: "x", variables: {{ a: {"[" * levels}1{"]" * levels} }}) {{ id }} }}'


@st.composite
def limit_cases(draw: st.DrawFn) -> Case:
    which = draw(
        st.sampled_from(["aliases", "depth", "size", "tokens", "nesting", "fragments", "literal", "json_body"])
    )
    if which == "aliases":
        return Case("limit", _aliases(draw(st.integers(31, 400))), limit="aliases")
    if which == "depth":
        return Case("limit", _nested_selection(draw(st.integers(16, 300))), limit="depth")
    if which == "size":
        padding = "#" + "x" * draw(st.integers(64 * 1024, 200 * 1024))
        return Case("limit", padding + "\n{ health }", limit="size")
    if which == "tokens":
        return Case("limit", "{ " + "h " * draw(st.integers(10_001, 20_000)) + "}", limit="tokens")
    if which == "nesting":  # deeper than Python's recursion limit allows the parser to go
        levels = draw(st.integers(300, 3000))
        query = draw(st.sampled_from([_nested_selection(levels), _introspection_depth(levels)]))
        return Case("limit", query, limit="nesting")
    if which == "fragments":  # a chain of fragment spreads: shallow, but long
        return Case("deep", _fragment_chain(draw(st.integers(100, 1300))))
    if which == "literal":  # a JSON literal nested deeper than the encoder accepts
        return Case("deep", _nested_literal(draw(st.integers(100, 3000))))
    # Variables nested deep in the request body itself, into every operation that takes JSON.
    levels = draw(st.integers(100, 20_000))
    deep = b"[" * levels + b"]" * levels
    operation = draw(st.sampled_from(VARIABLE_OPERATIONS))
    proxy = b'{"method": "POST", "endpoint": "/api/catalog/list", "body": ' + deep + b"}"
    body = b'{"query": %s, "variables": {"n": "tests/noop", "v": {"a": %s}, "i": %s, "id": %s}}' % (
        orjson.dumps(operation),
        deep,
        proxy,
        deep,
    )
    return Case("deep", operation, raw_body=body)


JUNK = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(
            [
                "{",
                "}",
                "(",
                ")",
                "...",
                "@",
                "$",
                "!",
                ":",
                "query",
                "mutation",
                "fragment",
                "on",
                "health",
                "me",
                "__typename",
                '"',
                "#",
                "[",
                "]",
                "=",
                "|",
            ]
        ),
        max_size=80,
    ).map(" ".join),
)


@st.composite
def junk_cases(draw: st.DrawFn) -> Case:
    query = draw(JUNK)
    raw = draw(st.one_of(st.none(), st.none(), st.binary(max_size=200), st.just(orjson.dumps([query]))))
    name = draw(st.one_of(st.none(), st.text(max_size=20)))
    return Case("junk", query, operation_name=name, raw_body=raw)


# -- the live gateway over HTTP ------------------------------------------------------------------


class Caller:
    """Blocking HTTP/1.1 to the gateway from the fuzzing thread (one kept-alive connection)."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def send(self, case: Case) -> tuple[int, str, str]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if case.accept:
            headers["Accept"] = case.accept
        if case.method == "GET":
            params = {"query": case.query}
            if case.operation_name is not None:
                params["operationName"] = case.operation_name
            url, body = "/graphql?" + urlencode(params), None
        else:
            url = "/graphql"
            headers["Content-Type"] = "application/json"
            body = case.raw_body
            if body is None:
                payload: dict[str, Any] = {"query": case.query}
                if case.variables is not None:
                    payload["variables"] = case.variables
                if case.operation_name is not None:
                    payload["operationName"] = case.operation_name
                body = json.dumps(payload).encode()  # stdlib: integers beyond 64 bits too
        for attempt in (1, 2):
            try:
                self.conn.request(case.method, url, body=body, headers=headers)
                response = self.conn.getresponse()
                text = response.read().decode("utf-8", "replace")
                return response.status, response.getheader("Content-Type") or "", text
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def check(case: Case, status: int, content_type: str, text: str, seen: Counter[str]) -> None:
    """The invariants every answer must hold."""
    where = f"{case.kind} {case.method} {case.query[:300]!r} vars={str(case.variables)[:200]} -> {status} {text[:500]}"
    assert status < 500, where
    assert status in (200, 400, 405, 413), where
    assert content_type.split(";")[0] in ("application/json", "application/graphql-response+json"), where
    for marker in TRACEBACK_MARKERS:
        assert marker not in text, where
    body = orjson.loads(text)
    assert isinstance(body, dict), where
    errors = body.get("errors") or []
    codes = [str((error.get("extensions") or {}).get("code")) for error in errors]
    assert all(isinstance(error.get("message"), str) and error["message"] for error in errors), where
    assert set(codes) <= EXPECTED_CODES, where  # INTERNAL (or no code) is an unhandled exception
    seen.update(codes or ["ok"])
    if status == 200 and case.kind == "positive":
        assert "data" in body or codes == ["METHOD_NOT_ALLOWED"], where
    if case.kind == "limit":
        assert body.get("data") is None and codes and set(codes) <= LIMIT_CODES, where
        if case.limit in ("aliases", "depth", "size", "tokens"):
            limits = {(error.get("extensions") or {}).get("limit") for error in errors}
            assert case.limit in limits or (case.limit == "depth" and "Document is nested too deeply" in text), where


class ErrorLog(logging.Handler):
    """Collects error records of the gateway's own loggers (an unhandled exception logs one)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("gateway", "tornado.application", "asyncio")):
            self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def run_fuzz(caller: Caller, client_id: str, seen: Counter[str], counts: Counter[str], stop: threading.Event) -> None:
    """All groups, one after the other (runs in a worker thread)."""

    def exercise(group: str, strategy: st.SearchStrategy[Case], count: int) -> None:
        @fuzz_settings(count)
        @given(case=strategy)
        def one(case: Case) -> None:
            if stop.is_set():
                return
            counts[group] += 1
            check(case, *caller.send(case), seen)

        one()

    groups: list[tuple[str, st.SearchStrategy[Case], int]] = [
        ("queries+mutations", schema_cases(Mode.POSITIVE), GROUP_EXAMPLES[0]),
        ("schema violations", schema_cases(Mode.NEGATIVE), GROUP_EXAMPLES[1]),
        ("variables", variable_cases(client_id), GROUP_EXAMPLES[2]),
        ("over limits", limit_cases(), GROUP_EXAMPLES[3]),
        ("junk", junk_cases(), GROUP_EXAMPLES[4]),
    ]
    for group, strategy, count in groups:
        exercise(group, strategy, count)


@pytest.mark.gen_test(timeout=120)
async def test_fuzzed_documents_never_crash_the_gateway(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession, error_log: ErrorLog
) -> None:
    gw = await make_gateway(GATEWAY_LOGIN_RATE_PER_MINUTE="0")
    token = await login(client, gw)
    stream = await open_stream(client, gw.url, token)
    seen: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        caller = Caller(gw.port, token)
        work: Callable[[], None] = lambda: run_fuzz(caller, init_of(stream)["clientId"], seen, counts, stop)  # noqa: E731
        try:
            await loop.run_in_executor(None, work)
        finally:
            caller.conn.close()
    finally:
        stop.set()
        await stream.close()
    elapsed = loop.time() - started
    total = sum(counts.values())
    print(f"\nGraphQL fuzzing: {total} examples in {elapsed:.1f} s: {dict(counts)}; answers: {dict(seen)}")
    assert total >= sum(examples(n) for n in GROUP_EXAMPLES) * 0.5  # hypothesis may stop early
    assert seen["ok"] > 0 and seen["GRAPHQL_VALIDATION_FAILED"] > 0  # both sides were exercised
    problems = [record.getMessage() for record in error_log.records]
    assert not problems, problems[:5]
    assert not stream.named("error")


@pytest.mark.gen_test(timeout=30)
async def test_long_fragment_chain_is_a_request_error(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession, error_log: ErrorLog
) -> None:
    """Found by the fuzzing: ~500 chained fragment spreads (within every limit) overflowed the depth
    check's recursion and answered 500."""
    gw = await make_gateway()
    token = await login(client, gw)
    short = await gql(client, gw, token, _fragment_chain(100))
    assert short[0] == 200 and short[1] == {"data": {"health": "ok"}}
    for length in (500, 1200):
        status, body, _ = await gql(client, gw, token, _fragment_chain(length))
        assert status == 200, body
        assert body == {
            "errors": [
                {
                    "message": "Document is nested too deeply.",
                    "extensions": {"code": "GRAPHQL_VALIDATION_FAILED", "limit": "depth"},
                }
            ]
        }
    assert not error_log.records
