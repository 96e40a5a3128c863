"""GraphQL error codes and the one place errors are made safe to send.

Every error in a response carries ``extensions.code``. Exceptions the gateway raises on
purpose (the ``PublicError`` family: refusals, NoETL failures) keep their public text and
code (:func:`public_extensions`, the one mapping); anything else becomes
``INTERNAL`` with a generic message — the real error goes to the log only, so no upstream
URL or traceback reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from gateway.errors import (
    BAD_REQUEST,
    BAD_USER_INPUT,
    FORBIDDEN,
    INTERNAL,
    UNAUTHENTICATED,
    UPSTREAM_ERROR,
    UPSTREAM_UNAVAILABLE,
    PublicError,
)
from gateway.noetl.client import UpstreamError

log = logging.getLogger("gateway.graphql")

__all__ = [
    "BAD_REQUEST",
    "BAD_USER_INPUT",
    "FORBIDDEN",
    "INTERNAL",
    "METHOD_NOT_ALLOWED",
    "PARSE_FAILED",
    "UNAUTHENTICATED",
    "UPSTREAM_ERROR",
    "UPSTREAM_UNAVAILABLE",
    "VALIDATION_FAILED",
    "format_document_error",
    "format_execution_error",
    "public_extensions",
    "simple_error",
]

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


def public_extensions(error: PublicError) -> dict[str, Any]:
    """``extensions`` of a PublicError: its code (and NoETL's status for an error NoETL answered)."""
    extensions: dict[str, Any] = {"code": error.code}
    if isinstance(error, UpstreamError) and error.upstream_status:
        extensions["upstreamStatus"] = error.upstream_status
    return extensions


def format_execution_error(error: GraphQLError, default_code: str, request_id: str) -> dict[str, Any]:
    """An error from execution, made public: known exceptions keep their text, others are INTERNAL."""
    original = error.original_error
    message = error.message
    extensions: dict[str, Any] = dict(error.extensions or {})
    if original is None or isinstance(original, GraphQLError):
        if isinstance(original, GraphQLError):
            extensions = {**dict(original.extensions or {}), **extensions}
        extensions.setdefault("code", default_code)
    elif isinstance(original, PublicError):
        message, extensions = original.public, public_extensions(original)
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
