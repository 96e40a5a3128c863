"""Client of the NoETL server REST API (the gateway's only upstream).

Failures are mapped once, here, to three exceptions the handlers turn into statuses:
unreachable → 502, timeout → 504, an answer with an error status → UpstreamError.
Upstream URLs never leave this module in an exception's public text.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable
from typing import Any

import aiohttp
import orjson

from gateway.errors import UPSTREAM_ERROR, UPSTREAM_UNAVAILABLE, PublicError
from gateway.noetl.paths import canonical_path
from gateway.noetl.shards import Route, ShardRouter
from gateway.tracing import passthrough_headers, playbook_variables, upstream_middlewares

log = logging.getLogger("gateway.noetl")


class UpstreamFailure(PublicError):
    """Base of NoETL failures; ``status`` is what the gateway answers its client."""

    status = 502
    code = UPSTREAM_UNAVAILABLE

    def __init__(self, public: str) -> None:
        super().__init__(self.status, self.code, public)


class UpstreamUnavailable(UpstreamFailure):
    """Connection refused/reset, DNS failure, dropped before a status line."""


class UpstreamTimeout(UpstreamFailure):
    """NoETL did not answer in time."""

    status = 504


class UpstreamError(UpstreamFailure):
    """NoETL answered with an error status."""

    code = UPSTREAM_ERROR

    def __init__(self, public: str, upstream_status: int, body: Any = None, gateway_status: int = 502) -> None:
        super().__init__(public)
        self.upstream_status = upstream_status
        self.body = body
        self.status = gateway_status


def make_http_session(connect_timeout: float, limit: int = 200, *, traced: bool = False) -> aiohttp.ClientSession:
    """The one pooled HTTP client of a process (keep-alive to NoETL; see docs/decisions.md);
    ``traced``: tracing is on, every NoETL call is a client span (gateway/tracing)."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=60, force_close=False)
    session = _client_session(
        connector, owner=True, connect_timeout=connect_timeout, skip_auto_headers=("User-Agent",), traced=traced
    )
    _traced[session] = traced
    return session


def _client_session(
    connector: aiohttp.BaseConnector | None,
    *,
    owner: bool,
    connect_timeout: float,
    skip_auto_headers: tuple[str, ...],
    traced: bool,
    idle_timeout: float | None = None,
) -> aiohttp.ClientSession:
    """A client session to NoETL with the options every one of them needs; the arguments are what
    the shared session and the proxy's view of it (``proxy_session``) do differently."""
    return aiohttp.ClientSession(
        connector=connector,
        connector_owner=owner,
        # Shared by every user: a cookie NoETL sets for one must never be replayed for another.
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=idle_timeout),
        auto_decompress=False,  # the proxy relays bytes as they are; request_json asks for identity
        json_serialize=lambda obj: orjson.dumps(obj).decode(),
        skip_auto_headers=skip_auto_headers,
        middlewares=upstream_middlewares(traced),  # a client span per NoETL call when tracing is on
    )


# The proxy's request headers are the client's own: aiohttp must not add any of these (it adds
# Accept, Accept-Encoding and Content-Type by default, User-Agent unless a session skips it).
PROXY_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_traced: weakref.WeakKeyDictionary[aiohttp.ClientSession, bool] = weakref.WeakKeyDictionary()
_proxy_sessions: weakref.WeakKeyDictionary[aiohttp.ClientSession, dict[tuple[float, float], aiohttp.ClientSession]] = (
    weakref.WeakKeyDictionary()
)


def proxy_session(shared: aiohttp.ClientSession, connect_timeout: float, idle_timeout: float) -> aiohttp.ClientSession:
    """The ``/noetl/*`` proxy's view of ``shared``: the same connection pool (nothing of its own to
    close), with the proxy's idle timeout and skipped headers as defaults — given per request,
    aiohttp would build a timeout object and a header set for every call (≈ 3 µs)."""
    by_timeouts = _proxy_sessions.get(shared)
    if by_timeouts is None:
        by_timeouts = _proxy_sessions[shared] = {}
    session = by_timeouts.get((connect_timeout, idle_timeout))
    if session is None:
        session = _client_session(
            shared.connector,
            owner=False,
            connect_timeout=connect_timeout,
            skip_auto_headers=PROXY_SKIP_AUTO_HEADERS,
            traced=_traced.get(shared, False),
            idle_timeout=idle_timeout,
        )
        by_timeouts[(connect_timeout, idle_timeout)] = session
    return session


class NoetlClient:
    """Typed calls to the NoETL endpoints the gateway uses.

    Each call goes where :class:`ShardRouter` says (the owning shard of the execution it names,
    else ``base_url``), so callers name executions and never pick a server themselves.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        timeout_secs: float,
        shards: Iterable[tuple[int, str]] = (),
    ) -> None:
        self.http = session
        self.router = ShardRouter(base_url, shards)
        self.base_url = self.router.default.base_url
        self.timeout = timeout_secs

    def route(self, path: str, body: Any = None) -> Route:
        """Where a call to ``/api/{path}`` (query allowed) with this JSON body goes."""
        if not self.router.sharded:
            return self.router.default
        return self.router.for_call(canonical_path(path.split("?", 1)[0]), body)

    async def request_json(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        max_bytes: int | None = None,
        route: Route | None = None,
    ) -> tuple[int, Any]:
        """Send one JSON request to ``{base}/api/{path}``; return (status, decoded body).

        ``base`` is the shard :meth:`route` picks unless ``route`` is given. With ``max_bytes``
        an answer larger than that is refused (502) instead of held whole.
        """
        if route is None:
            route = self.route(path, body)
        url = f"{route.base_url}/api/{path.lstrip('/')}"
        data = orjson.dumps(body) if body is not None else None
        # identity: the shared session does not decompress (the proxy relays bytes as they are), and
        # an answer read here is decoded (and, for non-admins, redacted) as JSON.
        send_headers = {
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            **(headers or {}),
            **passthrough_headers(),  # the caller's traceparent, tracing off (gateway/tracing)
        }
        if data is not None:
            send_headers["Content-Type"] = "application/json"
        try:
            async with self.http.request(
                method,
                url,
                data=data,
                headers=send_headers,
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
                allow_redirects=False,  # a redirect must not carry user headers to another host
            ) as resp:
                raw = await _read_bounded(resp, max_bytes) if max_bytes is not None else await resp.read()
                status = resp.status
        except TimeoutError:
            raise UpstreamTimeout(f"{route.server('NoETL')} did not answer in time") from None
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("%s unreachable: %s", route.server(), type(exc).__name__)
            raise UpstreamUnavailable(f"{route.server()} is unreachable") from None
        try:
            decoded: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            decoded = raw.decode("utf-8", "replace")[:500]
        return status, decoded

    async def execute(
        self,
        path: str,
        variables: dict[str, Any] | None,
        resource_kind: str | None = "playbook",
        version: int | None = None,
    ) -> dict[str, Any]:
        """Start a catalog entry; both ``payload`` and ``workload`` for old and new servers.

        ``resource_kind`` None leaves the field out (NoETL then runs a playbook or an agent);
        ``version`` pins one version of ``path``."""
        variables = playbook_variables(variables)  # traceparent: its callbacks continue the trace
        body: dict[str, Any] = {
            "path": path,
            "payload": variables or {},
            "workload": variables or {},
        }
        if resource_kind is not None:
            body["resource_kind"] = resource_kind
        if version is not None:
            body["version"] = version
        status, answer = await self.request_json("POST", "execute", body)
        if status >= 400 or not isinstance(answer, dict):
            raise UpstreamError(_describe_error(status, answer, "execute"), status, answer)
        return answer

    async def validate_session(self, token: str, credential: str) -> tuple[int, Any]:
        """POST /api/auth/session/validate; the caller interprets 404 (API missing)."""
        return await self.request_json(
            "POST", "auth/session/validate", {"session_token": token, "credential": credential}
        )

    async def get_execution(self, execution_id: str) -> dict[str, Any]:
        """GET /api/executions/{id}."""
        status, answer = await self.request_json("GET", f"executions/{execution_id}")
        if status >= 400 or not isinstance(answer, dict):
            raise UpstreamError(_describe_error(status, answer, "execution lookup"), status, answer)
        return answer

    async def ping(self, timeout: float = 2.0, route: Route | None = None) -> bool:
        """True if NoETL (the default URL, or ``route``) answers its health endpoint below 500."""
        try:
            status, _ = await self.request_json("GET", "health", timeout=timeout, route=route)
        except UpstreamFailure:
            return False
        return status < 500

    async def ping_shards(self, timeout: float = 2.0) -> list[bool]:
        """:meth:`ping` of every shard at once, in shard order (empty without shards)."""
        return list(await asyncio.gather(*(self.ping(timeout, shard) for shard in self.router.shards)))


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or UpstreamError once it passes ``limit`` (the rest is never read)."""
    if resp.content_length is not None and resp.content_length > limit:
        raise UpstreamError(f"NoETL's answer is larger than {limit} bytes", resp.status)
    body = bytearray()
    while chunk := await resp.content.readany():
        body += chunk
        if len(body) > limit:
            raise UpstreamError(f"NoETL's answer is larger than {limit} bytes", resp.status)
    return bytes(body)


def upstream_detail(answer: Any) -> str | None:
    """NoETL's own error text (FastAPI ``detail``, or ``error``/``message``), shortened."""
    if isinstance(answer, dict):
        detail = answer.get("detail") or answer.get("error") or answer.get("message")
        if isinstance(detail, str) and detail:
            return detail[:300]
    return None


def _describe_error(status: int, answer: Any, what: str) -> str:
    detail = upstream_detail(answer)
    if detail:
        return f"NoETL {what} failed ({status}): {detail}"
    return f"NoETL {what} failed with status {status}"
