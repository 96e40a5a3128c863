"""GraphQL over SSE on /graphql/stream (graphql-sse, distinct connections): the protocol's edges.

The npm graphql-sse client drives the same endpoint in tests/test_subscriptions_node.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import Replicas
from tests.support.gateway import GatewayInstance, call
from tests.support.live import waiting_client
from tests.support.signin import bearer
from tests.support.waiting import wait_for
from tests.test_graphql_ws import EVENTS

SSE = {"Accept": "text/event-stream", "Content-Type": "application/json; charset=utf-8"}


def parse(body: bytes) -> list[tuple[str, Any]]:
    """(event, JSON data or None) of every event; comment lines skipped."""
    events = []
    for block in body.decode().split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) if ": " in line else (line.rstrip(":"), "") for line in lines)
        events.append((fields["event"], orjson.loads(fields["data"]) if fields.get("data") else None))
    return events


async def finite(client: aiohttp.ClientSession, url: str, token: str | None, body: Any) -> tuple[int, Any, Any]:
    headers = {**SSE, **(bearer(token) if token else {})}
    async with client.post(f"{url}/graphql/stream", data=orjson.dumps(body), headers=headers) as resp:
        raw = await resp.read()
        if resp.content_type == "text/event-stream":
            return resp.status, parse(raw), resp.headers
        return resp.status, orjson.loads(raw), resp.headers


@pytest.mark.gen_test(timeout=30)
async def test_queries_refusals_and_sessions(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    status, events, headers = await finite(client, gateway.url, token, {"query": "{ health }"})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert events == [("next", {"data": {"health": "ok"}}), ("complete", None)]
    # A validation error is a next event (the protocol: never a 400 once the stream is accepted).
    status, events, _ = await finite(client, gateway.url, token, {"query": "{ nope }"})
    assert status == 200 and events[0][0] == "next" and events[-1] == ("complete", None)
    assert events[0][1]["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    status, body, _ = await finite(client, gateway.url, None, {"query": "{ health }"})
    assert (status, body) == (401, {"error": "Missing authentication token"})
    status, body, _ = await finite(client, gateway.url, token, {"variables": {}})
    assert status == 400 and "query" in body["error"]
    status, body, headers = await call(
        client,
        "GET",
        f"{gateway.url}/graphql/stream?query=mutation%7BproxyRequest(input%3A%7Bmethod%3A%22GET%22%2Cendpoint%3A%22%2Fapi%2Fhealth%22%7D)%7Bsuccess%7D%7D",
        headers=bearer(token),
    )
    assert status == 405 and headers["Allow"] == "POST", body
    status, text, _ = await call(
        client, "GET", f"{gateway.url}/graphql/stream?query=%7Bversion%7D", headers=bearer(token)
    )
    assert status == 200 and '"version"' in text and "event: complete" in text


@pytest.mark.gen_test(timeout=30)
async def test_logout_elsewhere_ends_a_graphql_sse_subscription(
    replicas: Replicas, client: aiohttp.ClientSession
) -> None:
    a, b = replicas
    async with waiting_client(client, a) as (token, _, request_id):
        body = {"query": EVENTS, "variables": {"rid": request_id}}
        headers = {**SSE, **bearer(token)}
        async with client.post(f"{a.url}/graphql/stream", data=orjson.dumps(body), headers=headers) as resp:
            assert resp.status == 200
            assert a.services is not None
            subscribers = a.services.subscriptions.subscribers
            await wait_for(lambda: subscribers.attached == 1)  # the stream is attached to its session
            status, _, _ = await call(client, "POST", f"{b.url}/api/auth/logout", {"session_token": token})
            assert status == 200
            events = parse(await asyncio.wait_for(resp.read(), 5))
    assert events[-1] == ("complete", None), events
    assert events[-2][1]["errors"][0] == {"message": "Session logged out", "extensions": {"code": "UNAUTHENTICATED"}}
    assert subscribers.open_total == 0
