"""The real npm clients: ``graphql-ws`` (``createClient`` over the ``ws`` package) and ``graphql-sse``.

Node runs tests/node_graphql/clients.mjs (tests/support/graphql_node.py); each scenario prints
JSON lines this test reads, and waits on stdin where the test acts in between.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.conftest import Replicas, SignedInFactory, Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance, call
from tests.support.graphql_node import NODE_DIR, node_run
from tests.support.live import callback_headers, post_progress, post_result, waiting_client
from tests.support.node_packages import node_with_packages
from tests.support.signin import login
from tests.support.sse_client import init_of, streaming
from tests.support.waiting import wait_for


@pytest.fixture(scope="session")
def node_graphql() -> str:
    """node, with graphql-ws, ws and graphql-sse installed from tests/node_graphql's lock file."""
    return node_with_packages(NODE_DIR)


def assert_progress_then_result(events: list[dict[str, Any]], execution_id: str) -> None:
    assert [event["kind"] for event in events] == ["PROGRESS", "STATE", "RESULT"], events
    progress, state, result = events
    assert progress["step"] == "start" and progress["progress"] == 0.5 and progress["message"] == "working"
    assert state["message"] == "playbook.completed" and state["status"] == "completed"
    assert result["status"] == "COMPLETED" and result["data"]["answer"] == 42
    assert {event["executionId"] for event in events} == {execution_id}


@pytest.mark.gen_test(timeout=60)
async def test_graphql_ws_progress_then_result_of_a_playbook_it_started(
    node_graphql: str, gateway: GatewayInstance, standin: Standin, token: str
) -> None:
    gate = standin.state.gates[playbooks.PROGRESS_RESULT] = asyncio.Event()
    async with node_run(node_graphql, gateway, token, "wsPlaybook", PLAYBOOK=playbooks.PROGRESS_RESULT) as run:
        connected = await run.until("connected")
        assert connected["connected"]["clientId"]
        started = (await run.until("started"))["started"]["data"]["executePlaybook"]
        first = await run.until("event")
        assert first["event"]["data"]["playbookEvents"]["kind"] == "PROGRESS"  # live, while the playbook waits
        gate.set()
        await run.until("eventComplete")
        assert_progress_then_result(run.events(), started["executionId"])
        await run.until("done")


@pytest.mark.gen_test(timeout=60)
async def test_graphql_ws_subscription_started_after_the_result_misses_nothing(
    node_graphql: str, gateway: GatewayInstance, standin: Standin, token: str
) -> None:
    env = {"PLAYBOOK": playbooks.PROGRESS_RESULT, "WAIT_BEFORE_SUBSCRIBE": "1"}
    async with node_run(node_graphql, gateway, token, "wsPlaybook", **env) as run:
        started = (await run.until("started"))["started"]["data"]["executePlaybook"]
        rid = started["requestId"]
        # The whole playbook runs (progress, then the result) before the client subscribes.
        await wait_for(
            lambda: any(e[1] == rid and e[0].endswith("/callback/async") for e in standin.state.callback_log), 10
        )
        await run.go()
        await run.until("eventComplete")
        assert_progress_then_result(run.events(), started["executionId"])


@pytest.mark.gen_test(timeout=60)
async def test_graphql_ws_on_replica_a_gets_the_result_posted_to_replica_b(
    node_graphql: str, replicas: Replicas, client: aiohttp.ClientSession
) -> None:
    a, b = replicas
    async with waiting_client(client, a) as (token, _, request_id):  # the request's client: an /events stream
        async with node_run(node_graphql, a, token, "wsSubscribe", REQUEST_ID=request_id) as run:
            await run.until("connected")
            status, _ = await post_progress(client, b, request_id, headers=callback_headers(request_id))
            assert status == 200
            assert (await run.until("event"))["event"]["data"]["playbookEvents"]["kind"] == "PROGRESS"
            status, _ = await post_result(client, b, request_id, headers=callback_headers(request_id))
            assert status == 200
            await run.until("eventComplete")
            kinds = [event["kind"] for event in run.events()]
            assert kinds == ["PROGRESS", "STATE", "RESULT"], run.seen
            assert run.events()[-1]["data"] == {"ok": True}


@pytest.mark.gen_test(timeout=60)
async def test_graphql_ws_bad_missing_and_expired_tokens_close_with_4403(
    node_graphql: str, gateway: GatewayInstance, client: aiohttp.ClientSession
) -> None:
    expired = await login(client, gateway, "expired-x")
    for token in (None, "sess_no-such-session", "not a token!", expired):
        async with node_run(node_graphql, gateway, token, "wsClose") as run:
            closed = await run.until("closed")
            assert closed["closed"] == 4403, (token, run.seen)
            assert not any("ready" in line for line in run.seen)


@pytest.mark.gen_test(timeout=60)
async def test_graphql_ws_logout_closes_the_socket_with_4403(
    node_graphql: str, replicas: Replicas, client: aiohttp.ClientSession
) -> None:
    a, b = replicas
    token = await login(client, a)
    async with node_run(node_graphql, a, token, "wsClose") as run:
        await run.until("ready")
        status, _, _ = await call(client, "POST", f"{b.url}/api/auth/logout", {"session_token": token})
        assert status == 200
        closed = await run.until("closed", timeout=5)
        assert closed["closed"] == 4403 and "logged out" in closed["reason"], run.seen


@pytest.mark.gen_test(timeout=60)
async def test_graphql_ws_over_the_per_session_limit_is_refused(
    node_graphql: str, make_signed_in: SignedInFactory
) -> None:
    alice = await make_signed_in(GATEWAY_MAX_SUBSCRIPTIONS_PER_SESSION="3")
    async with node_run(node_graphql, alice.gateway, alice.token, "wsLimit", COUNT="5") as run:
        outcomes = (await run.until("outcomes"))["outcomes"]
    refused = [o for o in outcomes if isinstance(o, dict)]
    assert outcomes.count("open") == 3, outcomes
    assert len(refused) == 2 and all(o["errors"][0]["extensions"]["code"] == "RATE_LIMITED" for o in refused)


@pytest.mark.gen_test(timeout=60)
async def test_graphql_ws_cross_origin_handshake_is_refused(
    node_graphql: str, gateway: GatewayInstance, token: str
) -> None:
    async with node_run(node_graphql, gateway, token, "wsClose", ORIGIN="https://evil.example") as run:
        closed = await run.until("closed")
        assert not any("ready" in line for line in run.seen)
        assert closed["closed"] == 1006, run.seen  # the handshake failed: no WebSocket close frame
        assert {"socketError": {"message": "Unexpected server response: 403"}} in run.seen
    async with node_run(node_graphql, gateway, token, "wsClose", ORIGIN="http://ui.example:3000") as run:
        await run.until("ready")  # an allowed origin connects


@pytest.mark.gen_test(timeout=60)
async def test_graphql_sse_progress_then_result(
    node_graphql: str, gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    gate = standin.state.gates[playbooks.PROGRESS_RESULT] = asyncio.Event()
    async with streaming(client, gateway.url, token) as stream:
        env = {"PLAYBOOK": playbooks.PROGRESS_RESULT, "CLIENT_ID": init_of(stream)["clientId"]}
        async with node_run(node_graphql, gateway, token, "ssePlaybook", **env) as run:
            started = (await run.until("started"))["started"]["data"]["executePlaybook"]
            assert (await run.until("event"))["event"]["data"]["playbookEvents"]["kind"] == "PROGRESS"
            gate.set()
            await run.until("eventComplete")
            assert_progress_then_result(run.events(), started["executionId"])
