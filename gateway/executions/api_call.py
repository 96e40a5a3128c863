"""``proxyRequest``: one NoETL API call as the signed-in user, with the path held tight.

The endpoint must be a plain path under ``/api/``: no scheme, host, userinfo, ``.``/``..``
segments, empty segments, backslashes, or percent-encoded dots/slashes — the gateway
never lets a client steer the upstream URL outside the NoETL API.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.access.redaction import visible_json
from gateway.executions.caller import Caller as RequestContext  # schema.context.RequestContext is one
from gateway.executions.service import BadExecutionInput
from gateway.noetl.client import upstream_detail
from gateway.noetl.paths import canonical_path

ALLOWED_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
MAX_ENDPOINT_LENGTH = 2048
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:/%]+")
_QUERY_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:/?%@]*")
_PERCENT = re.compile(r"%(.{0,2})")
_FORBIDDEN_ENCODED = frozenset("./\\")


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
    if any(segment in (".", "..") for segment in path.split("/")):
        raise BadExecutionInput("endpoint must not contain '.' or '..' segments")
    _check_percent_escapes(path, "endpoint")
    if has_query:
        if not _QUERY_CHARS.fullmatch(query):
            raise BadExecutionInput("endpoint query string contains characters that are not allowed")
        _check_percent_escapes(query, "endpoint query string", dots_ok=True)
    rest = path[len("/api/") :]
    if not rest:
        raise BadExecutionInput("endpoint must name an API path under /api/")
    return rest + (f"?{query}" if has_query else "")


def _check_percent_escapes(text: str, what: str, *, dots_ok: bool = False) -> None:
    for match in _PERCENT.finditer(text):
        digits = match.group(1)
        try:
            char = chr(int(digits, 16)) if len(digits) == 2 else None
        except ValueError:
            char = None
        if char is None:
            raise BadExecutionInput(f"{what} has a malformed percent-escape")
        if dots_ok:
            continue
        if char in _FORBIDDEN_ENCODED or ord(char) < 32:
            raise BadExecutionInput(f"{what} must not contain encoded dots, slashes or control characters")


async def proxy_request(context: RequestContext, method: str, endpoint: str, body: Any) -> dict[str, Any]:
    """Send the call; NoETL's answer (any status) becomes ``ProxyResponse`` fields."""
    verb = method.strip().upper()
    if verb not in ALLOWED_METHODS:
        raise BadExecutionInput("method must be one of GET, POST, PUT, PATCH, DELETE")
    api_path = check_endpoint(endpoint)
    if body is not None and verb == "GET":
        raise BadExecutionInput("body is not allowed with GET")
    services = context.services
    user = context.session.user
    raw_path = api_path.split("?", 1)[0]
    await services.access.check_call(context.token, user.roles, verb, canonical_path(raw_path), raw_path, body)
    headers = {
        "X-Noetl-User-Id": str(user.user_id),
        "X-Noetl-User-Email": user.email,
        "X-Request-Id": context.request_id,
    }
    try:
        status, answer = await services.noetl.request_json(
            verb,
            api_path,
            body,
            timeout=services.config.gateway_proxy_timeout_secs,
            headers=headers,
            max_bytes=services.config.gateway_proxy_request_max_answer_bytes,
        )
    except orjson.JSONEncodeError:
        raise BadExecutionInput("body cannot be sent as JSON (nested too deeply?)") from None
    # Before anything is read from it: NoETL's error details may quote a workload too.
    answer = visible_json(answer, user.roles, services.config.gateway_admin_roles)
    if 200 <= status < 300:
        return {"success": True, "data": answer, "error": None, "status": status}
    return {"success": False, "data": answer, "error": _describe(status, answer), "status": status}


def _describe(status: int, answer: Any) -> str:
    detail = upstream_detail(answer)
    return f"NoETL answered {status}: {detail}" if detail else f"NoETL answered {status}"
