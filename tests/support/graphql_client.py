"""Helpers for GraphQL tests: send GraphQL over HTTP and read its answers and metrics."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from tests.support.gateway import GatewayInstance, call

_TEXT_FIELDS = ("query", "operationName")  # a GET carries these as they are; the other fields as JSON
EXECUTE_EXAMPLE = """
mutation {
  executePlaybook(
    name: "api_integration/amadeus_ai_api"
    variables: { query: "Flights from SFO to JFK tomorrow" }
  ) { id executionId requestId status }
}
"""


async def gql(
    client: aiohttp.ClientSession,
    gw: GatewayInstance,
    token: str | None,
    query: str,
    variables: Any = None,
    *,
    operation_name: str | None = None,
    accept: str | None = None,
    method: str = "POST",
) -> tuple[int, Any, Any]:
    """One GraphQL request (POST JSON, or GET with URL parameters); returns (status, body, headers)."""
    headers: dict[str, str] = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if accept is not None:
        headers["Accept"] = accept
    fields: dict[str, Any] = {"query": query}
    if variables is not None:
        fields["variables"] = variables
    if operation_name is not None:
        fields["operationName"] = operation_name
    return await send_graphql(client, gw, fields, method=method, headers=headers)


async def send_graphql(
    client: aiohttp.ClientSession,
    gw: GatewayInstance,
    fields: dict[str, Any],
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    """GraphQL over HTTP as clients send it: ``fields`` as the JSON body of a POST, or as the URL
    parameters of a GET (``query`` and ``operationName`` as text, the others JSON-encoded)."""
    if method == "GET":
        params = {name: value if name in _TEXT_FIELDS else _json(value) for name, value in fields.items()}
        return await call(client, "GET", f"{gw.url}/graphql?{urlencode(params)}", headers=headers)
    return await call(client, "POST", f"{gw.url}/graphql", fields, headers=headers)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def error_codes(body: Any) -> list[str]:
    """``extensions.code`` of every error in a GraphQL response body."""
    return [error["extensions"]["code"] for error in body.get("errors") or []]


async def metric_value(client: aiohttp.ClientSession, gw: GatewayInstance, name: str, **labels: str) -> float:
    """One sample from /metrics (0 when absent)."""
    status, text, _ = await call(client, "GET", f"{gw.url}/metrics")
    assert status == 200
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}}" if wanted else name
    for line in str(text).splitlines():
        if line.startswith(prefix + " "):
            return float(line.split()[-1])
    return 0.0
