"""Nothing lost on reconnect: queued results, Last-Event-ID replay, client_id resume, ownership (CONTRACT §6-§8)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from gateway.errors import ClientNotOwned
from tests.conftest import GatewayFactory
from tests.support.gateway import GatewayInstance
from tests.support.live import callback_headers, pending_request, post_progress, post_result, services_of
from tests.support.signin import login
from tests.support.sse_client import SseStream, init_of, open_stream, streaming
from tests.support.waiting import wait_for


async def disconnected(gw: GatewayInstance, client_id: str) -> bool:
    """The stream is gone here and its record says so (what other replicas read)."""
    live = services_of(gw).live
    if live.is_held(client_id):
        return False
    record = await live.clients.get(client_id)
    return record is not None and record.get("connected") is False


def results(stream: SseStream) -> list[dict[str, Any]]:
    return [e.json["params"] for e in stream.named("playbook/result")]


async def marker(
    client: aiohttp.ClientSession, gw: GatewayInstance, token: str, client_id: str, stream: SseStream
) -> None:
    """A fresh progress event, waited for: everything published before it has arrived too."""
    request_id = await pending_request(gw, token, client_id, "tests/marker")
    status, _ = await post_progress(client, gw, request_id, {"step": "marker"}, headers=callback_headers(request_id))
    assert status == 200
    await stream.wait_for(lambda e: e.event == "playbook/progress" and e.json["params"]["requestId"] == request_id)


async def one_pending_request(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, nats: str
) -> tuple[GatewayInstance, str, SseStream, str, str]:
    """A gateway (with NATS, or without), a signed-in stream, and one request pending for its client."""
    gw = await make_gateway(**({} if nats == "nats" else {"NATS_URL": ""}))
    token = await login(client, gw)
    stream = await open_stream(client, gw.url, token)
    client_id = init_of(stream)["clientId"]
    return gw, token, stream, client_id, await pending_request(gw, token, client_id)


@pytest.mark.gen_test
@pytest.mark.parametrize("nats", ["nats", "no-nats"])
async def test_queued_result_replayed_once_with_last_event_id(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, nats: str
) -> None:
    gw, token, first, client_id, request_id = await one_pending_request(make_gateway, client, nats)
    headers = callback_headers(request_id)
    assert (await post_progress(client, gw, request_id, {"step": "before"}, headers=headers))[0] == 200
    before = await first.next_named("playbook/progress")
    await first.close()
    await wait_for(lambda: disconnected(gw, client_id))

    status, answer = await post_progress(client, gw, request_id, {"step": "while away"}, headers=headers)
    assert (status, answer) == (202, {"status": "queued", "clientDisconnected": True})
    status, answer = await post_result(client, gw, request_id, {"data": {"answer": 42}}, headers=headers)
    assert (status, answer) == (202, {"status": "queued", "clientDisconnected": True})
    assert await services_of(gw).live.find_request(request_id) is not None  # kept until really delivered

    async with streaming(client, gw.url, token, client_id=client_id, last_event_id=before.id) as second:
        assert init_of(second)["clientId"] == client_id
        assert second.events[0].id == before.id
        await second.next_named("playbook/result")
        await marker(client, gw, token, client_id, second)
        names = [(e.event, e.json.get("params", {}).get("step")) for e in second.events[1:]]
        # The synthetic playbook/state comes with its result (before it), replayed like it.
        assert names[:3] == [("playbook/progress", "while away"), ("playbook/state", None), ("playbook/result", None)]
        assert results(second) == [
            {"requestId": request_id, "executionId": "9001", "status": "COMPLETED", "data": {"answer": 42}}
        ]
        ids = [e.id for e in second.events[1:]]
        assert len(set(ids)) == len(ids) and all(i != before.id for i in ids)
        # Delivered now: the pending request is gone.
        await wait_for(lambda: _missing(gw, request_id))


async def _missing(gw: GatewayInstance, request_id: str) -> bool:
    return await services_of(gw).live.find_request(request_id) is None


@pytest.mark.gen_test
async def test_resume_with_client_id_only(gateway: GatewayInstance, client: aiohttp.ClientSession, token: str) -> None:
    first = await open_stream(client, gateway.url, token)
    client_id = init_of(first)["clientId"]
    done_before = await pending_request(gateway, token, client_id, "tests/done_before")
    assert (await post_result(client, gateway, done_before, headers=callback_headers(done_before)))[0] == 200
    await first.next_named("playbook/result")
    still_running = await pending_request(gateway, token, client_id, "tests/still_running")
    finished_away = await pending_request(gateway, token, client_id, "tests/finished_away")
    await first.close()
    await wait_for(lambda: disconnected(gateway, client_id))

    headers = callback_headers(finished_away)
    assert (await post_progress(client, gateway, finished_away, headers=headers))[0] == 202
    assert (await post_result(client, gateway, finished_away, headers=headers))[0] == 202

    async with streaming(client, gateway.url, token, client_id=client_id) as second:
        init = init_of(second)
        assert init["clientId"] == client_id
        assert init["pendingRequests"] == [
            {"requestId": still_running, "executionId": "9001", "playbookPath": "tests/still_running"}
        ]
        await second.next_named("playbook/result")
        await marker(client, gateway, token, client_id, second)
        assert [r["requestId"] for r in results(second)] == [finished_away]  # the undelivered one only
        assert not [e for e in second.named("playbook/progress") if e.json["params"]["step"] == "s1"]
    await wait_for(lambda: disconnected(gateway, client_id))

    async with streaming(client, gateway.url, token, client_id=client_id) as third:
        await marker(client, gateway, token, client_id, third)
        assert results(third) == []  # delivered once, not again
        listed = [p["requestId"] for p in init_of(third)["pendingRequests"]]
        assert listed[0] == still_running and finished_away not in listed and done_before not in listed


@pytest.mark.gen_test
async def test_client_id_of_another_session_is_refused(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    alice = await login(client, gateway)
    bob = await login(client, gateway, "good:bob@example.com")
    alice_stream = await open_stream(client, gateway.url, alice)
    alice_id = init_of(alice_stream)["clientId"]
    bob_stream = await open_stream(client, gateway.url, bob, client_id=alice_id)
    try:
        bob_id = init_of(bob_stream)["clientId"]
        assert bob_id != alice_id  # a fresh id, not Alice's
        assert "pendingRequests" not in init_of(bob_stream)

        live = services_of(gateway).live
        bob_session = await services_of(gateway).auth.validate(bob, client=None)
        assert bob_session is not None
        with pytest.raises(ClientNotOwned):
            await live.prepare_request(bob_session, alice_id)  # cannot target it either
        with pytest.raises(ClientNotOwned):
            await live.prepare_request(bob_session, "never-registered-client")

        request_id = await pending_request(gateway, alice, alice_id)
        assert (await post_result(client, gateway, request_id, headers=callback_headers(request_id)))[0] == 200
        await alice_stream.next_named("playbook/result")
        await marker(client, gateway, bob, bob_id, bob_stream)
        assert results(bob_stream) == []
    finally:
        await alice_stream.close()
        await bob_stream.close()

    # Bob retrying with Alice's id and a Last-Event-ID gets nothing of hers either.
    async with streaming(client, gateway.url, bob, client_id=alice_id, last_event_id="0") as again:
        assert init_of(again)["clientId"] != alice_id
        await marker(client, gateway, bob, init_of(again)["clientId"], again)
        assert results(again) == []


@pytest.mark.gen_test
@pytest.mark.parametrize("nats", ["nats", "no-nats"])
async def test_reconnect_during_a_burst_gets_every_event_once_in_order(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, nats: str
) -> None:
    gw, token, first, client_id, request_id = await one_pending_request(make_gateway, client, nats)
    headers = callback_headers(request_id)
    total = 120

    async def burst() -> None:
        for step in range(total):
            status, _ = await post_progress(client, gw, request_id, {"step": str(step)}, headers=headers)
            assert status in (200, 202)

    task = asyncio.create_task(burst())
    try:
        await first.wait_for(lambda e: e.event == "playbook/progress" and e.json["params"]["step"] == "20")
        await first.close()
        got_first = [e for e in first.events if e.event == "playbook/progress"]
        # Reconnect while the burst goes on: replay and live overlap.
        second = await open_stream(client, gw.url, token, client_id=client_id, last_event_id=got_first[-1].id)
        await task
        await second.wait_for(lambda e: e.event == "playbook/progress" and e.json["params"]["step"] == str(total - 1))
        got_second = second.named("playbook/progress")
        steps = [int(e.json["params"]["step"]) for e in got_first + got_second]
        assert steps == list(range(total))  # every event, once, in order
        await second.close()
    finally:
        task.cancel()
