"""Subscriptions and the live layer: NoETL's lifecycle (executionUpdates, an execution without a request),
a NATS restart, and whose requests a session may watch."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.conftest import GatewayFactory, ReplicasFactory, Standin
from tests.standin.lifecycle import STEPS_THEN_DONE, steps_then_done
from tests.support.graphql_ws import WsClient
from tests.support.live import callback_headers, pending_request, post_progress, post_result, services_of
from tests.support.nats_server import NatsServer
from tests.support.signin import login
from tests.support.waiting import wait_for
from tests.test_graphql_ws import EVENTS, signed_in
from tests.test_sse_roundtrip import execute

UPDATES = "subscription($eid: ID!) { executionUpdates(executionId: $eid) { kind executionId status step message } }"
BY_EXECUTION = (
    "subscription($eid: ID) { playbookEvents(executionId: $eid) { kind requestId status step message data } }"
)


async def events_until_complete(ws: WsClient, op_id: str) -> list[dict[str, Any]]:
    events = []
    while True:
        message = await ws.receive(10)
        assert message is not None and message["type"] != "error", message
        if message["type"] == "complete":
            return events
        assert not message["payload"].get("errors"), message
        events.append(next(iter(message["payload"]["data"].values())))


@pytest.mark.gen_test(timeout=40)
async def test_execution_updates_and_an_execution_without_request_through_noetl(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(GATEWAY_PLAYBOOK_STATE_POLL_SECS="0.05")
    assert services_of(gw).live.playbook_state_source == "polling"  # no NOETL_EVENTS stream on this server
    standin.state.playbooks[STEPS_THEN_DONE] = steps_then_done  # no callback: only NoETL knows where it is
    gate = standin.state.gates[STEPS_THEN_DONE] = asyncio.Event()
    token = await login(client, gw)
    started = await execute(client, gw, token, STEPS_THEN_DONE, {}, None)  # no clientId: no request
    execution_id = started["executionId"]
    viewer = await login(client, gw, "member-viewer")  # another user may view it (the route policy)
    updates, by_execution = await signed_in(gw, viewer), await signed_in(gw, token)
    await updates.send("subscribe", "u", {"query": UPDATES, "variables": {"eid": execution_id}})
    await by_execution.send("subscribe", "p", {"query": BY_EXECUTION, "variables": {"eid": execution_id}})
    first = await updates.receive(10)
    assert first is not None and first["payload"]["data"]["executionUpdates"]["step"] == "fetch", first
    gate.set()
    rest = await events_until_complete(updates, "u")
    assert [(e["message"], e["step"], e["status"]) for e in rest] == [
        ("step.exit", "render", "COMPLETED"),
        ("playbook.completed", None, "completed"),
    ]
    assert {e["executionId"] for e in rest} == {execution_id}
    through_noetl = await events_until_complete(by_execution, "p")
    assert [e["kind"] for e in through_noetl] == ["STATE", "STATE", "STATE", "RESULT"], through_noetl
    assert through_noetl[-1]["status"] == "COMPLETED" and through_noetl[-1]["requestId"] is None


@pytest.mark.gen_test(timeout=90)
async def test_a_subscription_survives_a_nats_restart(
    make_replicas: ReplicasFactory, own_nats: NatsServer, client: aiohttp.ClientSession
) -> None:
    a, b = await make_replicas(NATS_URL=own_nats.url)
    token = await login(client, a)
    ws = await WsClient.connect(a.url)
    ack = await ws.init(token)
    assert ack is not None
    request_id = await pending_request(a, token, ack["payload"]["clientId"])  # the socket is the request's client
    await ws.send("subscribe", "e", {"query": EVENTS, "variables": {"rid": request_id}})
    await wait_for(lambda: services_of(a).subscriptions.requests.count == 1)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, own_nats.stop)
    await wait_for(lambda: not services_of(a).nats.connected, timeout=10)
    headers = callback_headers(request_id)
    # In-process while NATS is away (202: the socket is not an /events stream, so "not connected" to that
    # check; the subscription's tap gets it all the same).
    assert (await post_progress(client, a, request_id, headers=headers))[0] in (200, 202)
    during = await ws.receive(10)
    assert during is not None and during["payload"]["data"]["playbookEvents"]["kind"] == "PROGRESS", during
    await loop.run_in_executor(None, own_nats.start)
    await wait_for(lambda: services_of(a).nats.connected and services_of(b).nats.connected, timeout=15)
    assert (await post_result(client, b, request_id, headers=headers))[0] == 200  # through NATS again, from B
    rest = await events_until_complete(ws, "e")
    assert [e["kind"] for e in rest] == ["STATE", "RESULT"], rest
    ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_request_of_another_session_cannot_be_watched(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway()
    alice, bob = await login(client, gw), await login(client, gw, "good:bob@example.com")
    ws = await signed_in(gw, alice)
    ack_client = services_of(gw).subscriptions.subscribers._clients
    request_id = await pending_request(gw, alice, next(iter(ack_client)))
    intruder = await signed_in(gw, bob)
    refused = await intruder.run("x", EVENTS, {"rid": request_id})
    assert refused[0]["type"] == "error" and refused[0]["payload"][0]["extensions"]["code"] == "NOT_FOUND", refused
    unknown = await intruder.run("y", EVENTS, {"rid": "7c9e6679-7425-40de-944b-e07fc1f90ae7"})
    assert unknown[0]["payload"][0]["message"] == refused[0]["payload"][0]["message"]  # nothing to tell them apart
    ws.close()
    intruder.close()
