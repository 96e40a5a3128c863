"""executePlaybook with clientId: the real worker's progress and result callbacks arrive over SSE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from tests.e2e import catalog
from tests.e2e.conftest import Login
from tests.support.gateway import GatewayProcess
from tests.support.graphql_client import gql
from tests.support.sse_client import SseEvent, SseStream, init_of, open_stream
from tests.support.waiting import wait_for

EXECUTE = """
mutation Run($name: String!, $variables: JSON, $clientId: String) {
  executePlaybook(name: $name, variables: $variables, clientId: $clientId) { executionId requestId status }
}
"""
EXECUTION = "query($id: ID!) { execution(id: $id) { state finished } }"


@asynccontextmanager
async def run_live(
    client: aiohttp.ClientSession, gw: GatewayProcess, session: Login, name: str, variables: Any
) -> AsyncIterator[tuple[SseStream, str, str]]:
    """Open the event stream, start the playbook for its clientId; (stream, request id, execution id),
    the stream closed on leaving."""
    stream = await open_stream(client, gw.url, session.token, via="bearer")
    try:
        client_id = init_of(stream)["clientId"]
        status, body, _ = await gql(
            client, gw, session.token, EXECUTE, {"name": name, "variables": variables, "clientId": client_id}
        )
        assert status == 200 and "errors" not in body, body
        started = body["data"]["executePlaybook"]
        assert started["requestId"], started
        yield stream, started["requestId"], started["executionId"]
    finally:
        await stream.close()


def params(event: SseEvent) -> dict[str, Any]:
    message = event.json
    assert message["jsonrpc"] == "2.0" and "id" not in message, message
    return message["params"]  # type: ignore[no-any-return]


@pytest.mark.gen_test(timeout=60)
async def test_progress_and_result_arrive_over_sse(
    gw: GatewayProcess, alice: Login, client: aiohttp.ClientSession
) -> None:
    variables = {"numbers": [1, 2, 3.5], "label": "sse"}
    async with run_live(client, gw, alice, catalog.ASYNC_PROGRESS, variables) as (stream, request_id, execution_id):
        progress = await stream.next_named("playbook/progress", timeout=30)
        assert params(progress) == {
            "requestId": request_id,
            "executionId": execution_id,
            "step": "start",
            "message": "working on sse",
            "progress": 0.1,
        }
        result = await stream.next_named("playbook/result", timeout=30)
        assert params(result) == {
            "requestId": request_id,
            "executionId": execution_id,
            "status": "COMPLETED",
            "data": {"label": "sse", "count": 3, "total": 6.5},
        }
        assert progress.id and result.id and progress.id != result.id
        assert stream.events.index(progress) < stream.events.index(result)


@pytest.mark.gen_test(timeout=60)
async def test_failure_arrives_as_failed(gw: GatewayProcess, alice: Login, client: aiohttp.ClientSession) -> None:
    variables = {"reason": "no coffee"}
    async with run_live(client, gw, alice, catalog.FAILING, variables) as (stream, request_id, execution_id):
        result = await stream.next_named("playbook/result", timeout=30)
        assert params(result) == {
            "requestId": request_id,
            "executionId": execution_id,
            "status": "FAILED",
            "error": {"code": -32000, "message": "e2e/failing: no coffee", "data": {"step": "start"}},
        }

    # NoETL agrees: polling the execution ends in FAILED.
    async def failed() -> bool:
        status, body, _ = await gql(client, gw, alice.token, EXECUTION, {"id": execution_id})
        assert status == 200 and "errors" not in body, body
        return body["data"]["execution"]["state"] == "FAILED"

    await wait_for(failed, timeout=30, interval=0.2)
