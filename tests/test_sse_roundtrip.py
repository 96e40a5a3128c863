"""The whole path: GraphQL executePlaybook(clientId) -> playbook -> progress/result callbacks -> SSE events."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.conftest import Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance
from tests.support.graphql_client import gql
from tests.support.signin import login
from tests.support.sse_client import init_of, streaming
from tests.support.waiting import wait_for

EXECUTE = """mutation($name: String!, $v: JSON, $c: String) {
  executePlaybook(name: $name, variables: $v, clientId: $c) { id executionId requestId name }
}"""


async def execute(
    client: aiohttp.ClientSession, gw: GatewayInstance, token: str, name: str, variables: Any, client_id: str | None
) -> dict[str, Any]:
    status, body, _ = await gql(client, gw, token, EXECUTE, {"name": name, "v": variables, "c": client_id})
    assert status == 200 and not body.get("errors"), body
    started = body["data"]["executePlaybook"]
    assert isinstance(started, dict)
    return started


def live_callback_replies(standin: Standin) -> list[tuple[str, int, Any]]:
    """What the gateway answered the playbook's progress/result callbacks."""
    return [reply for reply in standin.state.callback_replies if reply[0] != "/api/internal/callback"]


@pytest.mark.gen_test
async def test_round_trip_progress_then_result(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gate = standin.state.gates[playbooks.PROGRESS_RESULT] = asyncio.Event()
    token = await login(client, gateway)
    async with streaming(client, gateway.url, token) as stream:
        client_id = init_of(stream)["clientId"]
        started = await execute(client, gateway, token, playbooks.PROGRESS_RESULT, {"query": "SFO-JFK"}, client_id)
        request_id, execution_id = started["requestId"], started["executionId"]
        assert request_id

        progress = await stream.next_named("playbook/progress")
        assert progress.id
        assert progress.json == {
            "jsonrpc": "2.0",
            "method": "playbook/progress",
            "params": {
                "requestId": request_id,
                "executionId": execution_id,
                "step": "start",
                "message": "working",
                "progress": 0.5,
            },
        }
        assert not stream.named("playbook/result")  # the playbook waits at its gate
        gate.set()

        result = await stream.next_named("playbook/result")
        echo = {"query": "SFO-JFK", "request_id": request_id, "gateway_url": gateway.url}
        assert result.json == {
            "jsonrpc": "2.0",
            "method": "playbook/result",
            "params": {
                "requestId": request_id,
                "executionId": execution_id,
                "status": "COMPLETED",
                "data": {"answer": 42, "echo": echo},
            },
        }
        assert int(result.id or 0) > int(progress.id or 0)
        await wait_for(lambda: len(live_callback_replies(standin)) == 2)
        assert live_callback_replies(standin) == [
            ("/api/internal/progress", 200, {"status": "delivered"}),
            ("/api/internal/callback/async", 200, {"status": "delivered"}),
        ]


@pytest.mark.gen_test
async def test_round_trip_failure(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    async with streaming(client, gateway.url, token) as stream:
        client_id = init_of(stream)["clientId"]
        started = await execute(client, gateway, token, playbooks.FAILING, {}, client_id)
        result = await stream.next_named("playbook/result")
        assert result.json["params"] == {
            "requestId": started["requestId"],
            "executionId": started["executionId"],
            "status": "FAILED",
            "error": {"code": -32000, "message": "step http_call failed: 500 from upstream", "data": None},
        }


@pytest.mark.gen_test
async def test_execute_refuses_a_client_of_another_session(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    alice = await login(client, gateway)
    bob = await login(client, gateway, "good:bob@example.com")
    async with streaming(client, gateway.url, alice) as alice_stream:
        alice_id = init_of(alice_stream)["clientId"]
        runs = len(standin.state.calls_to("/api/execute"))
        for client_id in (alice_id, "no-such-client"):
            status, body, _ = await gql(
                client, gateway, bob, EXECUTE, {"name": playbooks.NOOP, "v": {}, "c": client_id}
            )
            assert status == 200 and body["data"] is None
            assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
            assert body["errors"][0]["message"] == "clientId is not an event stream of this session"
        assert len(standin.state.calls_to("/api/execute")) == runs  # nothing ran, not even the access check
