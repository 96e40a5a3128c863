"""Across replicas: a stream on A, execution and callbacks through B, the event arrives on A (CONTRACT §7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from tornado.ioloop import IOLoop

from tests.conftest import GatewayFactory, ReplicasFactory, Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayProcess
from tests.support.live import callback_headers, pending_request, post_progress, post_result
from tests.support.signin import login
from tests.support.sse_client import init_of, open_stream, streaming
from tests.support.waiting import wait_for
from tests.test_sse_roundtrip import execute, live_callback_replies


@pytest.mark.gen_test
async def test_stream_on_a_execution_and_callbacks_through_b(
    make_replicas: ReplicasFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    a, b = await make_replicas()
    gate = standin.state.gates[playbooks.PROGRESS_RESULT] = asyncio.Event()
    token = await login(client, a)
    async with streaming(client, a.url, token) as stream:
        client_id = init_of(stream)["clientId"]
        # B checks ownership in NATS KV (the client is held by A) and runs the playbook; its
        # gateway_url is B's, so both callbacks arrive at B.
        started = await execute(client, b, token, playbooks.PROGRESS_RESULT, {"q": 1}, client_id)
        progress = await stream.next_named("playbook/progress")
        assert progress.json["params"]["requestId"] == started["requestId"]
        gate.set()
        result = await stream.next_named("playbook/result")
        assert result.json["params"]["executionId"] == started["executionId"]
        assert result.json["params"]["data"]["echo"]["gateway_url"] == b.url
        await wait_for(lambda: len(live_callback_replies(standin)) == 2)
        assert [reply[1:] for reply in live_callback_replies(standin)] == [(200, {"status": "delivered"})] * 2


@pytest.mark.gen_test
async def test_resume_on_another_replica_gets_the_queued_result_once(
    make_replicas: ReplicasFactory, client: aiohttp.ClientSession
) -> None:
    a, b = await make_replicas()
    token = await login(client, a)
    first = await open_stream(client, a.url, token)
    client_id = init_of(first)["clientId"]
    request_id = await pending_request(a, token, client_id)
    headers = callback_headers(request_id)
    assert (await post_progress(client, b, request_id, headers=headers))[0] == 200
    seen = await first.next_named("playbook/progress")
    await first.close()

    async def away() -> bool:
        assert a.services is not None
        record = await a.services.live.clients.get(client_id)
        return record is not None and record["connected"] is False

    await wait_for(away)
    status, answer = await post_result(client, b, request_id, headers=headers)
    assert (status, answer) == (202, {"status": "queued", "clientDisconnected": True})

    async with streaming(client, b.url, token, client_id=client_id, last_event_id=seen.id) as second:
        assert init_of(second)["clientId"] == client_id
        await second.next_named("playbook/result")
        marker = await pending_request(b, token, client_id)
        assert (await post_progress(client, a, marker, headers=callback_headers(marker)))[0] == 200
        await second.wait_for(lambda e: e.event == "playbook/progress" and e.json["params"]["requestId"] == marker)
        assert [e.event for e in second.events] == ["message", "playbook/state", "playbook/result", "playbook/progress"]


@pytest.mark.gen_test(timeout=60)
async def test_stream_on_a_real_second_process(
    make_gateway: GatewayFactory,
    gateway_env: dict[str, str],
    client: aiohttp.ClientSession,
    tmp_path: Path,
    io_loop: IOLoop,
) -> None:
    b = await make_gateway()
    process = GatewayProcess(gateway_env)
    await asyncio.get_running_loop().run_in_executor(None, process.start, str(tmp_path / "gateway.log"))
    try:
        token = await login(client, b)
        async with streaming(client, process.url, token) as stream:
            client_id = init_of(stream)["clientId"]
            request_id = await pending_request(b, token, client_id)
            headers = callback_headers(request_id)
            assert (await post_progress(client, b, request_id, headers=headers))[0] == 200
            status, answer = await post_result(client, b, request_id, {"data": {"from": "b"}}, headers=headers)
            assert (status, answer) == (200, {"status": "delivered"})
            result = await stream.next_named("playbook/result")
            assert result.json["params"]["data"] == {"from": "b"}
            assert [e.event for e in stream.events] == [
                "message",
                "playbook/progress",
                "playbook/state",
                "playbook/result",
            ]
    finally:
        await asyncio.get_running_loop().run_in_executor(None, process.stop)
