"""Header fuzzing: malformed ``Origin``, ``Cookie``, ``Host``, ``X-Forwarded-*``, ``Content-Type``,
``Accept`` (and any other header) on every route of a live gateway → never a 5xx, never a traceback.

The gateway (with the NoETL stand-in and NATS) serves in the test's loop; hypothesis runs in a
worker thread and writes raw HTTP/1.1 requests over sockets, so it can send bytes a well-behaved
client library would refuse to. Every answer must be below 500; every 4xx must be JSON
``{"error": …}`` — except Tornado's own bare 400 for a request it cannot parse at all (no handler
ran); no body may carry a traceback, and the gateway's log must hold no error and no traceback.

Bounded: ``HEADER_FUZZ_EXAMPLES`` scales the example count (default 1.0, ~10 s); the seed is fixed
(``derandomize``) unless ``HEADER_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import os
import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from handlers import all_handlers
from tests.conftest import GatewayFactory, Standin
from tests.support.gateway import call
from tests.support.signin import login

SCALE = float(os.environ.get("HEADER_FUZZ_EXAMPLES", "1"))
EXAMPLES = 1500
TRACEBACK_MARKERS = ("Traceback", 'File "/', "site-packages")
ALLOWED_ORIGIN = "http://ui.example:3000"  # CORS_ALLOWED_ORIGINS of the test gateways

# (method, path, JSON body or None): every route of handlers/__init__.py, and a path no route has.
ROUTES: list[tuple[str, str, dict[str, object] | None]] = [
    ("GET", "/noetl/catalog/list", None),
    ("POST", "/noetl/x", {"any": "thing"}),
    ("DELETE", "/noetl/anything/1", None),  # the stand-in echoes every method on these paths
    ("GET", "/health", None),
    ("GET", "/health/ready", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
    ("GET", "/sharding/preview?execution_id=42", None),
    ("GET", "/api/runtime/contract", None),
    ("POST", "/ingress/no-such-listener", {"zen": "fuzz"}),
    ("POST", "/api/auth/login", {"auth0_token": "good-fuzz"}),
    ("POST", "/api/auth/validate", {"session_token": "TOKEN"}),
    ("POST", "/api/auth/check-access", {"session_token": "TOKEN", "playbook_path": "team/report"}),
    ("POST", "/api/auth/logout", {}),
    ("POST", "/api/internal/callback", {"request_id": "r-1", "status": "success", "data": {}}),
    ("POST", "/api/internal/callback/async", {"request_id": "r-1", "status": "COMPLETED"}),
    ("POST", "/api/internal/progress", {"request_id": "r-1", "message": "m"}),
    ("GET", "/graphql", None),
    ("GET", "/graphql?query=%7Bhealth%7D", None),
    ("POST", "/graphql", {"query": "{ health me { email } }"}),
    ("POST", "/graphql", {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}}),
    ("GET", "/graphql/assets/start.js", None),
    ("POST", "/graphql/stream", {"query": "{ health me { email } }"}),
    ("GET", "/events", None),
    ("GET", "/nowhere", None),
]
FUZZED_NAMES = [
    "Origin",
    "Cookie",
    "Host",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "Content-Type",
    "Accept",
    "Authorization",
    "X-Session-Token",
    "X-Callback-Token",
    "X-Request-Id",
    "Last-Event-ID",
    "Access-Control-Request-Headers",
    "Access-Control-Request-Method",
    "Accept-Encoding",
    "If-None-Match",
    "Range",
    "Expect",
    "X-User-Id",
]
TRICKY_VALUES = [
    "http://[",
    "http://[::1",
    "http://]",
    "null",
    "http://ui.example:3000",
    "http://127.0.0.1:99999",
    "file://",
    "://",
    "[",
    "%",
    "session_token=",
    "session_token",
    '=";;=;',
    'session_token="unterminated',
    "a=b; session_token=x y z",
    "Bearer",
    "Bearer ",
    "bearer \x00",
    "multipart/form-data; boundary=",
    "multipart/form-data",
    "application/x-www-form-urlencoded",
    "application/json; charset=klingon",
    "text/html;q=x, */*;q=",
    "*/*;q=NaN",
    "application/graphql-response+json;q=0",
    "1.1.1.1, , ,",
    "999.999.999.999",
    "unknown, [::1]:80",
    "https, http",
    "host:port:extra",
    "[::1",
    "0" * 300,
    "é",
    "\x7f",
    "\t",
    " ",
    "",
]
TOKEN_NAMES = ("Authorization", "X-Session-Token", "Cookie")
TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Header values: latin-1 text without CR/LF (those would end the header: framing, not content);
# mostly printable (Tornado refuses other control characters before any handler runs).
VALUE_CHARS = st.characters(min_codepoint=0, max_codepoint=255, blacklist_characters="\r\n")
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")


def examples(count: int) -> int:
    return max(1, int(count * SCALE))


@dataclass(frozen=True)
class Case:
    """One raw request: route, headers as bytes, which session it carries."""

    method: str
    path: str
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    session: str  # none | junk | valid
    keep: dict[str, str] = field(default_factory=dict, compare=False)


@st.composite
def header_values(draw: st.DrawFn, tokens: dict[str, str]) -> bytes:
    kind = draw(st.sampled_from(["tricky", "tricky", "tricky", "text", "text", "text", "raw", "bytes", "token"]))
    if kind == "tricky":
        value = draw(st.sampled_from(TRICKY_VALUES))
        if draw(st.booleans()):  # glued to a plausible value: the parsers' edge cases
            value = draw(st.sampled_from(["http://ui.example:3000", "a=b", "application/json", "1.2.3.4"])) + value
        return value.encode("latin-1", "replace")
    if kind == "text":
        return draw(st.text(PRINTABLE, max_size=80)).encode("latin-1")
    if kind == "raw":
        return draw(st.text(VALUE_CHARS, max_size=40)).encode("latin-1")
    if kind == "bytes":
        return bytes(b for b in draw(st.binary(max_size=40)) if b not in (10, 13))
    token = tokens[draw(st.sampled_from(["valid", "junk"]))]
    return draw(
        st.sampled_from([f"session_token={token}", f"Bearer {token}", token, f"x=1; session_token={token}; y"])
    ).encode()


@st.composite
def cases(draw: st.DrawFn, tokens: dict[str, str]) -> Case:
    method, path, body = draw(st.sampled_from(ROUTES))
    method = draw(st.sampled_from([method, method, method, "OPTIONS", "HEAD", "PUT"]))
    session = draw(st.sampled_from(["none", "junk", "valid", "valid"]))
    if path == "/api/auth/logout" and session == "valid":
        session = "victim"  # a session of its own: logging the shared one out would end the run's coverage
    token = tokens.get(session, "")
    raw_body = b""
    if body is not None and method in ("POST", "PUT"):
        data = {key: (token or "t") if value == "TOKEN" else value for key, value in body.items()}
        raw_body = draw(st.sampled_from([orjson.dumps(data), orjson.dumps(data), b"", b"{", b"[1]", b"\xff\xfe"]))
    headers: list[tuple[bytes, bytes]] = []
    if token:
        where = draw(st.sampled_from(TOKEN_NAMES))
        value = {"Authorization": f"Bearer {token}", "Cookie": f"session_token={token}"}.get(where, token)
        headers.append((where.encode(), value.encode()))
    for _ in range(draw(st.integers(1, 5))):
        name = draw(
            st.one_of(
                st.sampled_from(FUZZED_NAMES),
                st.sampled_from(FUZZED_NAMES),
                st.sampled_from(FUZZED_NAMES),
                st.sampled_from(FUZZED_NAMES),
                st.sampled_from(FUZZED_NAMES),
                st.text(TCHARS, min_size=1, max_size=20),
                st.text(VALUE_CHARS.filter(lambda c: c not in ":"), min_size=1, max_size=10),  # not a token
            )
        )
        headers.append((name.encode("latin-1"), draw(header_values(tokens))))
    return Case(method, path, raw_body, tuple(headers), session)


# -- the live gateway over raw sockets -------------------------------------------------------------


def send(port: int, case: Case) -> tuple[int, bytes, bytes, bytes]:
    """Write the request, read the answer (status, content type, body, raw request for the report)."""
    lines = [f"{case.method} {case.path} HTTP/1.1".encode()]
    names = {name.lower() for name, _ in case.headers}
    if b"host" not in names:
        lines.append(f"Host: 127.0.0.1:{port}".encode())
    lines.append(b"Connection: close")
    lines.extend(name + b": " + value for name, value in case.headers)
    if case.body or case.method in ("POST", "PUT"):
        lines.append(b"Content-Length: %d" % len(case.body))
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + case.body
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock, method=case.method)
        response.begin()
        ctype = (response.getheader("Content-Type") or "").encode("latin-1")
        if ctype.startswith(b"text/event-stream") and response.status == 200:
            body = response.read1(65536)  # a live stream: its first frame is enough
        else:
            body = response.read()
        return response.status, ctype, body, raw


def check(case: Case, status: int, ctype: bytes, body: bytes, raw: bytes, seen: Counter[str]) -> None:
    """The invariants every answer holds."""
    where = f"{raw[:600]!r} -> {status} {ctype!r} {body[:300]!r}"
    assert status < 500, where
    for marker in TRACEBACK_MARKERS:
        assert marker.encode() not in body, where
    seen[f"{status // 100}xx"] += 1
    if status < 400 or case.method == "HEAD":
        return
    if status == 400 and not body and not ctype:
        seen["tornado-400"] += 1  # the request line/headers did not parse: no handler ran
        return
    if case.path.startswith("/noetl/") and body.startswith(b"<html><title>400: Bad Request</title>"):
        # The stand-in's own Tornado refused a malformed multipart body before its handlers ran
        # (NoETL's Starlette never parses one it does not expect); the proxy relays NoETL's
        # answers as they are, and that is what this one is.
        seen["upstream-400"] += 1
        return
    assert ctype.split(b";")[0] == b"application/json", where
    decoded = orjson.loads(body)
    assert isinstance(decoded, dict) and isinstance(decoded.get("error"), str) and decoded["error"], where


class LogWatch(logging.Handler):
    """Every record with a traceback, and every error, from any logger while the fuzzing runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.stack_info or record.levelno >= logging.ERROR:
            self.records.append(record)
        elif "Traceback" in record.getMessage():
            self.records.append(record)


@pytest.fixture
def log_watch() -> Iterator[LogWatch]:
    handler = LogWatch()
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(saved)


def run_fuzz(port: int, tokens: dict[str, str], seen: Counter[str], stop: threading.Event) -> None:
    @settings(
        max_examples=examples(EXAMPLES),
        deadline=None,
        database=None,
        derandomize=os.environ.get("HEADER_FUZZ_RANDOM") != "1",
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases(tokens))
    def one(case: Case) -> None:
        if stop.is_set():
            return
        seen["examples"] += 1
        seen[case.path.split("?")[0]] += 1
        check(case, *send(port, case), seen)

    one()


@pytest.mark.gen_test(timeout=120)
async def test_fuzzed_headers_never_crash_any_route(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession, log_watch: LogWatch
) -> None:
    gw = await make_gateway(GATEWAY_LOGIN_RATE_PER_MINUTE="0", GATEWAY_SSE_MAX_PER_SESSION="1000")
    tokens = {
        "valid": await login(client, gw, "good-fuzz"),
        "victim": await login(client, gw, "good-fuzz-victim"),
        "junk": "junk-token-fuzz",
    }
    seen: Counter[str] = Counter()
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await loop.run_in_executor(None, run_fuzz, gw.port, tokens, seen, stop)
    finally:
        stop.set()
    elapsed = loop.time() - started
    print(f"\nheader fuzzing: {seen['examples']} requests in {elapsed:.1f} s: {dict(seen)}")
    assert seen["examples"] >= examples(EXAMPLES) * 0.5
    assert all(seen[path.split("?")[0]] > 0 for _, path, _ in ROUTES)  # every route was exercised
    assert seen["2xx"] > 0 and seen["4xx"] > 0
    problems = [f"{r.name} {r.levelname} {r.getMessage()[:300]}" for r in log_watch.records]
    assert not problems, problems[:5]


@pytest.mark.gen_test
async def test_unparsable_origin_with_a_session_cookie_is_403_not_500(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession, log_watch: LogWatch
) -> None:
    """Found in the issue: ``urlsplit("http://[")`` raised in the own-origin check (500, traceback)."""
    gw = await make_gateway()
    token = await login(client, gw, "good-origin")
    for origin in ("http://[", "http://[::1", "http://]x"):
        headers = {"Cookie": f"session_token={token}", "Origin": origin}
        for method, path, body in (
            ("POST", "/graphql", {"query": "{ health }"}),
            ("POST", "/noetl/x", {"a": 1}),
            ("POST", "/api/auth/logout", None),
        ):
            status, answer, _ = await call(client, method, f"{gw.url}{path}", body, headers)
            assert status == 403, (origin, path, status, answer)
            assert answer == {"error": "Origin not allowed for cookie-authenticated requests"}
    assert not log_watch.records


def test_every_route_of_the_app_is_fuzzed() -> None:
    """A route added later must be added to ROUTES too."""
    fuzzed = [path.split("?")[0] for _, path, _ in ROUTES]
    for rule, *_handler_and_options in all_handlers():
        pattern = getattr(rule, "regex", rule)  # a Matcher (the graphql-ws upgrade) carries its regex
        assert any(re.fullmatch(pattern, path) for path in fuzzed), f"route {pattern} is not fuzzed"
