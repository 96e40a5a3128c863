"""The OpenAPI entry of ``/graphql/stream`` (handlers/graphql_sse.py, graphql-sse), joined by handlers/openapi.py.

GraphQL itself is described by its schema (``/graphql``, introspection); this entry documents the
transport: what goes in, and that the answer is an event stream of ``next`` events then ``complete``.
"""

from __future__ import annotations

from typing import Any

_STREAM = {
    "description": "text/event-stream: `event: next` with each execution result (refusals of the operation "
    "too: `{errors}`), then `event: complete` with an empty `data:`. A subscription streams until it "
    "completes, its session ends, or the client closes the connection.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}

_REQUEST = {
    "type": "object",
    "required": ["query"],
    "properties": {
        "query": {"type": "string", "description": "The GraphQL document (a subscription, query or mutation)"},
        "variables": {"type": ["object", "null"]},
        "operationName": {"type": ["string", "null"]},
        "extensions": {"type": ["object", "null"]},
    },
}


def _errors(error_ref: dict[str, str], statuses: dict[int, str]) -> dict[str, Any]:
    json_error = {"content": {"application/json": {"schema": error_ref}}}
    return {str(status): {"description": text, **json_error} for status, text in statuses.items()}


def graphql_stream_operations(error_ref: dict[str, str], security: list[dict[str, list[str]]]) -> dict[str, Any]:
    """``POST`` and ``GET /graphql/stream`` (graphql-sse, distinct connections mode)."""
    common = {
        401: "Missing, invalid or expired session",
        429: "Over the session-check budget (see Retry-After)",
        502: "NoETL unreachable while checking the session",
        503: "NoETL unavailable while checking the session",
        504: "NoETL did not answer the session check in time",
    }
    post = {
        "summary": "GraphQL over SSE (graphql-sse, distinct connections): one operation, its results as events",
        "description": "Subscriptions (playbookEvents, executionUpdates), queries and mutations. See "
        "docs/graphql.md#subscriptions.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST}}},
        "responses": {
            "200": _STREAM,
            **_errors(error_ref, {400: "Malformed request", 403: "Cookie session from a foreign Origin", **common}),
            **_errors(error_ref, {413: "Body too large", 415: "Not JSON"}),
        },
        "security": security,
    }
    parameters = [
        {"name": "query", "in": "query", "required": True, "schema": {"type": "string"}},
        {"name": "variables", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "operationName", "in": "query", "required": False, "schema": {"type": "string"}},
    ]
    get = {
        "summary": "GraphQL over SSE with URL parameters (subscriptions and queries; never a mutation)",
        "parameters": parameters,
        "responses": {
            "200": _STREAM,
            **_errors(error_ref, {400: "Malformed parameters", 405: "A mutation over GET", **common}),
        },
        "security": security,
    }
    return {"post": post, "get": get}
