"""GraphQL error codes and the one place errors are made safe to send.

Every error in a response carries ``extensions.code``. Exceptions the gateway raises on
purpose (refusals, NoETL failures) keep their public text; anything else becomes
``INTERNAL`` with a generic message — the real error goes to the log only, so no upstream
URL or traceback reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from gateway.access.refusals import AccessRefusal
from gateway.auth import AuthError
from gateway.executions import ExecutionRefused
from gateway.noetl import UpstreamError, UpstreamFailure

log = logging.getLogger("gateway.graphql")

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
BAD_USER_INPUT = "BAD_USER_INPUT"
UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
UPSTREAM_ERROR = "UPSTREAM_ERROR"
INTERNAL = "INTERNAL"
BAD_REQUEST = "BAD_REQUEST"
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
RATE_LIMITED = "RATE_LIMITED"

INTERNAL_MESSAGE = "Internal server error"


def simple_error(message: str, code: str) -> dict[str, Any]:
    """A formatted error without location (HTTP-level problems)."""
    return {"message": message, "extensions": {"code": code}}


def format_document_error(error: GraphQLError, code: str) -> dict[str, Any]:
    """A parse/validation error as sent: message, locations, code (and the limit, if any)."""
    formatted = error.formatted
    extensions = dict(formatted.get("extensions") or {})
    extensions.setdefault("code", code)
    formatted["extensions"] = extensions
    return dict(formatted)


def format_execution_error(error: GraphQLError, default_code: str, request_id: str) -> dict[str, Any]:
    """An error from execution, made public: known exceptions keep their text, others are INTERNAL."""
    original = error.original_error
    message = error.message
    extensions: dict[str, Any] = dict(error.extensions or {})
    if original is None or isinstance(original, GraphQLError):
        if isinstance(original, GraphQLError):
            extensions = {**dict(original.extensions or {}), **extensions}
        extensions.setdefault("code", default_code)
    elif isinstance(original, ExecutionRefused | AccessRefusal):
        message, extensions = original.public, {"code": original.code}
    elif isinstance(original, UpstreamFailure):
        message, extensions = original.public, {"code": original.code}
        if isinstance(original, UpstreamError) and original.upstream_status:
            extensions["upstreamStatus"] = original.upstream_status
    elif isinstance(original, AuthError):
        code = UPSTREAM_UNAVAILABLE if original.status in (502, 503, 504) else UPSTREAM_ERROR
        message, extensions = original.public, {"code": code}
    else:
        log.error(
            "resolver failed at %s (request %s)",
            ".".join(str(part) for part in error.path or ()),
            request_id,
            exc_info=(type(original), original, original.__traceback__),
        )
        message, extensions = INTERNAL_MESSAGE, {"code": INTERNAL}
    formatted: dict[str, Any] = {"message": message}
    if error.locations is not None:
        formatted["locations"] = [location.formatted for location in error.locations]
    if error.path is not None:
        formatted["path"] = error.path
    formatted["extensions"] = extensions
    return formatted
