"""The proxied GET's shortcuts (docs/benchmarks.md, issue 19) answer exactly what the plain forms did.

Each shortcut is compared with the straightforward formula it replaced, on generated inputs, and
the session cache hit taken without a coroutine is checked over HTTP: counted as before, and a
logged-out session is refused on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from gateway.noetl import headers as hygiene
from gateway.noetl import paths
from tests.support.gateway import call
from tests.support.signin import SignedIn, bearer

# -- the formulas the shortcuts replaced (oracles) ---------------------------------------------


def full_upstream_url(base_url: str, raw_path: str, raw_query: str) -> str:
    path = quote(raw_path.encode("latin-1", "replace"), safe=paths._PATH_SAFE)
    url = f"{base_url}/api/{path}"
    if raw_query:
        url += "?" + quote(raw_query.encode("latin-1", "replace"), safe=paths._QUERY_SAFE)
    return str(URL(url, encoded=True))


def full_canonical_path(raw_path: str) -> str:
    decoded = paths._fully_decoded(raw_path).decode("utf-8", "replace")
    return "/".join(part for part in decoded.split("/") if part).lower()


def connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    return {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }


def two_pass_request_headers(client: list[tuple[str, str]], trust_forwarded: bool) -> list[tuple[str, str]]:
    listed = connection_tokens(client)
    out: list[tuple[str, str]] = []
    forwarded_for: list[str] = []
    proto = host = ""
    for name, value in client:
        lower = name.lower()
        if lower == "x-forwarded-for":
            forwarded_for.append(value.strip())
        elif lower == "x-forwarded-proto" and not proto:
            proto = value.split(",")[0].strip()
        elif lower == "x-forwarded-host" and not host:
            host = value.split(",")[0].strip()
        if lower in hygiene._REQUEST_DROP or lower in listed or lower.startswith(hygiene._REQUEST_DROP_PREFIXES):
            continue
        out.append((name, value))
    forwarded_for.append("10.1.1.1")
    if not trust_forwarded:
        proto = host = ""
    out.append(("X-Forwarded-For", ", ".join(part for part in forwarded_for if part)))
    out += [("X-Forwarded-Proto", proto or "http"), ("X-Forwarded-Host", host or "gw:1")]
    out += [("X-Noetl-User-Id", "7"), ("X-Noetl-User-Email", "a@b"), ("X-Request-Id", "rid")]
    return out


def two_pass_response_headers(upstream: list[tuple[str, str]], base: str | None) -> list[tuple[str, str]]:
    listed = connection_tokens(upstream)
    out: list[tuple[str, str]] = []
    for name, value in upstream:
        lower = name.lower()
        if lower in hygiene._RESPONSE_DROP or lower in listed or lower.startswith(hygiene._RESPONSE_DROP_PREFIXES):
            continue
        if lower == "location" and base is not None:
            public = hygiene.public_location(value, base)
            if public is None:
                continue
            value = public
        out.append((name, value))
    return out


# -- generated inputs ----------------------------------------------------------------------------

PATH_CHARS = st.sampled_from([*"abcXYZ019/._-~%:@!$&'()*+,;=?#[] \\\"<>^`{|}\t\x00\x7féü€", "%2e", "%2F", "%25"])
path_text = st.lists(PATH_CHARS, max_size=16).map("".join)
NAMES = [
    "Host", "Accept", "Authorization", "Cookie", "Connection", "connection", "Keep-Alive", "TE", "X-Custom",
    "x-custom", "X-Forwarded-For", "x-forwarded-proto", "X-Forwarded-Host", "X-User-Id", "X-Noetl-User-Email",
    "Content-Type", "Upgrade", "Location", "Set-Cookie", "Access-Control-Allow-Origin", "Vary", "X-Request-Id",
    "Date", "Server", "Content-Length", "Transfer-Encoding", "ETag",
]  # fmt: skip
VALUES = st.sampled_from(
    [
        "1", "a, b", " x-custom , Accept", "keep-alive", "close", "X-Custom", "etag, vary", "10.0.0.1",
        "https, http", "h1, h2", "http://noetl:8082/api/items?x=1#f", "http://noetl:8082/other", "/relative", "",
    ]
)  # fmt: skip
header_lists = st.lists(st.tuples(st.sampled_from(NAMES), VALUES), max_size=12)


@settings(max_examples=3000, derandomize=True)
@given(path_text, path_text)
def test_url_and_canonical_path_as_the_full_formulas(raw_path: str, raw_query: str) -> None:
    assert str(paths.upstream_url("http://noetl:8082", raw_path, raw_query)) == full_upstream_url(
        "http://noetl:8082", raw_path, raw_query
    )
    assert paths.canonical_path(raw_path) == full_canonical_path(raw_path)


@settings(max_examples=2000, derandomize=True)
@given(header_lists, st.booleans())
def test_request_headers_in_one_pass_as_in_two(client: list[tuple[str, str]], trust_forwarded: bool) -> None:
    ours = hygiene.upstream_request_headers(
        iter(client),
        user_id="7",
        user_email="a@b",
        request_id="rid",
        peer_ip="10.1.1.1",
        scheme="http",
        host="gw:1",
        trust_forwarded=trust_forwarded,
    )
    assert ours == two_pass_request_headers(client, trust_forwarded)


@settings(max_examples=2000, derandomize=True)
@given(header_lists, st.sampled_from([None, "http://noetl:8082"]))
def test_response_headers_from_bytes_as_from_text(upstream: list[tuple[str, str]], base: str | None) -> None:
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in upstream]
    ours = hygiene.client_response_headers(raw, base)
    assert [(name, value) for name, _, value in ours] == two_pass_response_headers(upstream, base)
    assert all(lower == name.lower() for name, lower, _ in ours)


# -- the session cache hit without a coroutine ---------------------------------------------------


async def _counter(alice: SignedIn, series: str) -> float:
    _, text, _ = await call(alice.client, "GET", f"{alice.url}/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(series))


@pytest.mark.gen_test
async def test_cached_session_is_counted_and_logout_still_refuses(alice: SignedIn) -> None:
    hit = 'gateway_session_cache_total{outcome="hit"}'
    checked_ok = 'noetl_gateway_session_check_total{outcome="ok"}'
    await alice.call("GET", "/noetl/things/1")  # now cached (from the login, or from this call)
    hits, oks = await _counter(alice, hit), await _counter(alice, checked_ok)
    for _ in range(3):
        status, _, _ = await alice.call("GET", "/noetl/things/1")
        assert status == 200
    assert await _counter(alice, hit) == hits + 3
    assert await _counter(alice, checked_ok) == oks + 3
    status, _, _ = await call(alice.client, "POST", f"{alice.url}/api/auth/logout", headers=bearer(alice.token))
    assert status == 200
    status, body, _ = await alice.call("GET", "/noetl/things/1")
    assert status == 401 and body == {"error": "Invalid or expired session"}
