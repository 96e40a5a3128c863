"""``proxyRequest``: one NoETL API call as the signed-in user, with the path held tight.

The endpoint must be a plain path under ``/api/`` (no scheme, host, userinfo, empty segments or
malformed escapes), and the rest of it must pass the same path-safety rule as ``/noetl/*``
(``gateway.noetl.paths.unsafe_path_reason``: no ``.``/``..`` segment raw, encoded or double
encoded, ``..;x``, encoded slash or backslash, control character) — the gateway never lets a
client steer the upstream URL outside the NoETL API, by either way in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from gateway.access.guard import AccessGuard
from gateway.access.redaction import visible_json
from gateway.auth.sessions import Session
from gateway.errors import BadExecutionInput
from gateway.noetl.client import NoetlClient, upstream_detail
from gateway.noetl.paths import canonical_path, unsafe_path_reason

ALLOWED_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
MAX_ENDPOINT_LENGTH = 2048
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:/%]+")
_QUERY_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:/?%@]*")
_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")  # a "%" not followed by two hex digits


def check_endpoint(endpoint: str) -> str:
    """The path after ``/api/`` (query string kept), or BadExecutionInput saying why not."""
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        raise BadExecutionInput(f"endpoint is longer than {MAX_ENDPOINT_LENGTH} characters")
    path, has_query, query = endpoint.partition("?")
    if not path.startswith("/api/"):
        raise BadExecutionInput("endpoint must be a plain path under /api/, e.g. /api/catalog/list")
    if not _PATH_CHARS.fullmatch(path):
        raise BadExecutionInput("endpoint may only contain URL path characters (no host, userinfo, '\\' or spaces)")
    if "//" in path:
        raise BadExecutionInput("endpoint must not contain empty path segments ('//')")
    if _ESCAPE.search(path):
        raise BadExecutionInput("endpoint has a malformed percent-escape")
    if has_query:
        if not _QUERY_CHARS.fullmatch(query):
            raise BadExecutionInput("endpoint query string contains characters that are not allowed")
        if _ESCAPE.search(query):
            raise BadExecutionInput("endpoint query string has a malformed percent-escape")
    rest = path[len("/api/") :]
    if not rest:
        raise BadExecutionInput("endpoint must name an API path under /api/")
    reason = unsafe_path_reason(rest)  # the one path-safety rule, shared with /noetl/*
    if reason is not None:
        raise BadExecutionInput(f"endpoint: {reason}")
    return rest + (f"?{query}" if has_query else "")


class ApiCalls:
    """``proxyRequest``: one NoETL API call as the signed-in user, through the one access policy."""

    def __init__(
        self,
        noetl: NoetlClient,
        access: AccessGuard,
        *,
        timeout_secs: float,
        max_answer_bytes: int,
        admin_roles: Iterable[str],
    ) -> None:
        self.noetl = noetl
        self.access = access
        self.timeout_secs = timeout_secs
        self.max_answer_bytes = max_answer_bytes
        self.admin_roles = tuple(admin_roles)

    async def call(
        self, session: Session, token: str, request_id: str, method: str, endpoint: str, body: Any
    ) -> dict[str, Any]:
        """Send the call; NoETL's answer (any status) becomes ``ProxyResponse`` fields."""
        verb = method.strip().upper()
        if verb not in ALLOWED_METHODS:
            raise BadExecutionInput("method must be one of GET, POST, PUT, PATCH, DELETE")
        api_path = check_endpoint(endpoint)
        if body is not None and verb == "GET":
            raise BadExecutionInput("body is not allowed with GET")
        user = session.user
        raw_path = api_path.split("?", 1)[0]
        await self.access.check_call(token, user.roles, verb, canonical_path(raw_path), raw_path, body)
        headers = {"X-Noetl-User-Id": str(user.user_id), "X-Noetl-User-Email": user.email, "X-Request-Id": request_id}
        try:
            status, answer = await self.noetl.request_json(
                verb, api_path, body, timeout=self.timeout_secs, headers=headers, max_bytes=self.max_answer_bytes
            )
        except orjson.JSONEncodeError:
            raise BadExecutionInput("body cannot be sent as JSON (nested too deeply?)") from None
        # Before anything is read from it: NoETL's error details may quote a workload too.
        answer = visible_json(answer, user.roles, self.admin_roles)
        if 200 <= status < 300:
            return {"success": True, "data": answer, "error": None, "status": status}
        return {"success": False, "data": answer, "error": _describe(status, answer), "status": status}


def _describe(status: int, answer: Any) -> str:
    detail = upstream_detail(answer)
    return f"NoETL answered {status}: {detail}" if detail else f"NoETL answered {status}"
