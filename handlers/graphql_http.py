"""GraphQL over HTTP: reading a request (GET params / POST JSON) and choosing the media type.

Follows the GraphQL-over-HTTP spec: ``application/graphql-response+json`` when the client
accepts it (then requests that fail to parse or validate get 4xx), ``application/json``
otherwise (200 with ``errors``), including when there is no ``Accept`` header or only
wildcards.

A request may carry no ``query`` when ``extensions.persistedQuery`` names one by hash (APQ);
``extensions`` comes from the POST body or, over GET, from the ``extensions`` parameter (JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from handlers.json_body import RequestProblem, decode_json_body

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
APPLICATION_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class GraphQLRequest:
    """The GraphQL-over-HTTP parameters (``query`` is None when a persisted query is named by hash)."""

    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None = None


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        pieces = part.strip().split(";")
        media = pieces[0].strip().lower()
        if not media:
            continue
        quality = 1.0
        for param in pieces[1:]:
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        ranges.append((media, quality))
    return ranges


def _quality(ranges: list[tuple[str, float]], media: str) -> float:
    """The q of the most specific range matching ``media`` (0 when none matches)."""
    kind = media.split("/", 1)[0]
    best: tuple[int, float] = (-1, 0.0)
    for candidate, quality in ranges:
        if candidate == media:
            specificity = 2
        elif candidate == f"{kind}/*":
            specificity = 1
        elif candidate == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best[0]:
            best = (specificity, quality)
    return best[1]


def choose_media_type(accept: str | None) -> str:
    """``application/graphql-response+json`` only when named explicitly and preferred."""
    if not accept:
        return APPLICATION_JSON
    ranges = _media_ranges(accept)
    named = [quality for media, quality in ranges if media == GRAPHQL_RESPONSE_JSON]
    if not named or max(named) <= 0:
        return APPLICATION_JSON
    return GRAPHQL_RESPONSE_JSON if max(named) >= _quality(ranges, APPLICATION_JSON) else APPLICATION_JSON


def wants_html(accept: str | None) -> bool:
    """True when a browser asks for a page (``text/html`` preferred over JSON)."""
    if not accept:
        return False
    ranges = _media_ranges(accept)
    html = max((quality for media, quality in ranges if media == "text/html"), default=0.0)
    if html <= 0:
        return False
    json_quality = max(
        max((quality for media, quality in ranges if media in (APPLICATION_JSON, GRAPHQL_RESPONSE_JSON)), default=0.0),
        0.0,
    )
    return html >= json_quality


def _check_fields(query: Any, variables: Any, operation_name: Any, extensions: Any, where: str) -> GraphQLRequest:
    if extensions is not None and not isinstance(extensions, dict):
        raise RequestProblem(400, f"Invalid {where} 'extensions': must be a JSON object")
    if query is None or (isinstance(query, str) and not query.strip()):
        if not (extensions and "persistedQuery" in extensions):
            raise RequestProblem(400, f"Missing required {where} 'query'")
        query = None
    elif not isinstance(query, str):
        raise RequestProblem(400, f"Invalid {where} 'query': must be a string")
    if variables is not None and not isinstance(variables, dict):
        raise RequestProblem(400, f"Invalid {where} 'variables': must be a JSON object")
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestProblem(400, f"Invalid {where} 'operationName': must be a string")
    return GraphQLRequest(query, variables, operation_name or None, extensions)


def request_from_json(raw: bytes, content_type: str | None) -> GraphQLRequest:
    """A POST body: ``{"query", "variables"?, "operationName"?, "extensions"?}``."""
    body = decode_json_body(raw, content_type, empty="Request body must be a JSON object with a 'query'")
    if isinstance(body, list):
        raise RequestProblem(400, "Batched GraphQL requests are not supported; send one object per request")
    if not isinstance(body, dict):
        raise RequestProblem(400, "Request body must be a JSON object with a 'query'")
    return _check_fields(
        body.get("query"), body.get("variables"), body.get("operationName"), body.get("extensions"), "field"
    )


def request_from_params(params: dict[str, list[bytes]]) -> GraphQLRequest:
    """GET query parameters: ``query``, ``variables`` and ``extensions`` (JSON text), ``operationName``."""

    def one(name: str) -> str | None:
        values = params.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise RequestProblem(400, f"Query parameter '{name}' given more than once")
        return values[0].decode("utf-8", "replace")

    def json_object(name: str) -> Any:
        text = one(name)
        if not text:
            return None
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            raise RequestProblem(400, f"Invalid query parameter '{name}': must be a JSON object") from None

    return _check_fields(
        one("query"), json_object("variables"), one("operationName"), json_object("extensions"), "query parameter"
    )
