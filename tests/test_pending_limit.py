"""GATEWAY_MAX_PENDING_PER_SESSION: executePlaybook(clientId) refused past the limit on every replica;
delivered results and failed starts free their slot; a callback faster than NoETL's answer is not lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from tests.conftest import GatewayFactory, ReplicasFactory, Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance
from tests.support.graphql_client import error_codes, gql
from tests.support.live import callback_headers, hashed, post_result, services_of
from tests.support.noetl_front import NoetlFront
from tests.support.signin import login
from tests.support.sse_client import SseStream, init_of, streaming
from tests.support.waiting import wait_for

EXECUTE = """mutation($name: String!, $c: String) {
  executePlaybook(name: $name, variables: {}, clientId: $c) { executionId requestId }
}"""


async def run(
    client: aiohttp.ClientSession, gw: GatewayInstance, token: str, client_id: str, name: str = playbooks.NOOP
) -> dict[str, Any]:
    """executePlaybook(clientId); the GraphQL body."""
    status, body, _ = await gql(client, gw, token, EXECUTE, {"name": name, "c": client_id})
    assert status == 200, body
    return dict(body)


def started(body: dict[str, Any]) -> str:
    assert not body.get("errors"), body
    return str(body["data"]["executePlaybook"]["requestId"])


def refused(body: dict[str, Any], limit: int) -> None:
    assert body["data"] is None, body
    assert error_codes(body) == ["RATE_LIMITED"]
    assert body["errors"][0]["message"] == (
        f"Too many pending requests for this session (limit {limit}); wait for their results and retry"
    )


def executes(standin: Standin) -> int:
    return len(standin.state.calls_to("/api/execute"))


async def slots(gw: GatewayInstance, token: str) -> int:
    return await services_of(gw).live.slots.count(hashed(token))


@asynccontextmanager
async def stream_of(client: aiohttp.ClientSession, gw: GatewayInstance, token: str) -> AsyncIterator[SseStream]:
    async with streaming(client, gw.url, token) as stream:
        yield stream


@pytest.mark.gen_test(timeout=30)
async def test_limit_refuses_then_a_delivered_result_frees_a_slot(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(GATEWAY_MAX_PENDING_PER_SESSION="3")
    standin.state.gates[playbooks.NOOP] = asyncio.Event()  # the playbooks keep running: requests stay pending
    token = await login(client, gw)
    async with stream_of(client, gw, token) as stream:
        client_id = init_of(stream)["clientId"]
        ids = [started(await run(client, gw, token, client_id)) for _ in range(3)]
        before = executes(standin)
        refused(await run(client, gw, token, client_id), 3)
        assert executes(standin) == before  # refused before anything ran
        # Without clientId nothing waits for a result: not limited.
        status, body, _ = await gql(
            client, gw, token, f'mutation {{ executePlaybook(name: "{playbooks.NOOP}") {{ id }} }}'
        )
        assert status == 200 and not body.get("errors"), body
        # Another session has its own slots.
        other = await login(client, gw, "good:bob@example.com")
        async with stream_of(client, gw, other) as bob:
            started(await run(client, gw, other, init_of(bob)["clientId"]))
        # One result delivered: its slot is free again.
        assert (await post_result(client, gw, ids[0], headers=callback_headers(ids[0])))[0] == 200
        await stream.wait_for(lambda e: e.event == "playbook/result" and e.json["params"]["requestId"] == ids[0])
        await wait_for(lambda: _equals(slots(gw, token), 2))
        started(await run(client, gw, token, client_id))
        refused(await run(client, gw, token, client_id), 3)


async def _equals(value: Any, expected: int) -> bool:
    return await value == expected


@pytest.mark.gen_test(timeout=30)
async def test_limit_holds_across_replicas_under_concurrency(
    make_replicas: ReplicasFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    a, b = await make_replicas(GATEWAY_MAX_PENDING_PER_SESSION="4")
    standin.state.gates[playbooks.NOOP] = asyncio.Event()
    token = await login(client, a)
    async with stream_of(client, a, token) as stream:
        client_id = init_of(stream)["clientId"]
        bodies = await asyncio.gather(*(run(client, (a, b)[i % 2], token, client_id) for i in range(16)))
    ok = [body for body in bodies if not body.get("errors")]
    for body in bodies:
        if body.get("errors"):
            refused(body, 4)
    assert len(ok) == 4  # compare-and-set on one key: two replicas never both take the last slot
    assert await slots(a, token) == 4 and await slots(b, token) == 4


@pytest.mark.gen_test(timeout=30)
async def test_failed_starts_free_their_slot_and_leave_no_request(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(GATEWAY_MAX_PENDING_PER_SESSION="2")
    token = await login(client, gw)
    async with stream_of(client, gw, token) as stream:
        client_id = init_of(stream)["clientId"]
        standin.state.execute_status = 500  # NoETL refuses every start
        for _ in range(5):
            assert error_codes(await run(client, gw, token, client_id)) == ["UPSTREAM_ERROR"]
        standin.state.execute_status = None
        standin.state.denied_paths.add("tests/denied")  # the access check says no
        for _ in range(3):
            assert error_codes(await run(client, gw, token, client_id, "tests/denied")) == ["FORBIDDEN"]
        assert await slots(gw, token) == 0
        standin.state.gates[playbooks.NOOP] = asyncio.Event()
        rid = started(await run(client, gw, token, client_id))
        assert await services_of(gw).live.find_request(rid) is not None
        started(await run(client, gw, token, client_id))
        refused(await run(client, gw, token, client_id), 2)


@pytest.mark.gen_test(timeout=30)
async def test_results_faster_than_noetls_answer_are_delivered(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    """A worker may post progress and result before NoETL answers the execute call (found by this work:
    the request used to be stored only after that answer, so both callbacks were 404 and the result lost)."""
    front = NoetlFront(standin.url)
    try:

        async def after_callbacks(body: dict[str, Any]) -> None:
            if body.get("path") == playbooks.PROGRESS_RESULT:  # not the access check
                await wait_for(lambda: len(_live_replies(standin)) >= 2)

        front.hold = after_callbacks
        gw = await make_gateway(NOETL_BASE_URL=front.url)
        token = await login(client, gw)
        async with stream_of(client, gw, token) as stream:
            client_id = init_of(stream)["clientId"]
            rid = started(await run(client, gw, token, client_id, playbooks.PROGRESS_RESULT))
            assert [reply[1:] for reply in _live_replies(standin)] == [(200, {"status": "delivered"})] * 2
            progress = await stream.next_named("playbook/progress")
            result = await stream.next_named("playbook/result")
            assert progress.json["params"]["requestId"] == result.json["params"]["requestId"] == rid
            assert result.json["params"]["data"]["answer"] == 42
            # Delivered before the execute call returned: nothing is left pending or resurrected.
            await wait_for(lambda: _equals(slots(gw, token), 0))
            assert await services_of(gw).live.find_request(rid) is None
        async with streaming(client, gw.url, token, client_id=client_id) as resumed:
            assert init_of(resumed)["clientId"] == client_id
            assert init_of(resumed).get("pendingRequests", []) == []
    finally:
        await front.close()


def _live_replies(standin: Standin) -> list[tuple[str, int, Any]]:
    return [reply for reply in standin.state.callback_replies if reply[0] != "/api/internal/callback"]
