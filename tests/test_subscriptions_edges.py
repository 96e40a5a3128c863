"""Two edges of "nothing lost between executePlaybook and the subscription" (issue 17).

* graphql-ws: ``executePlaybook`` right after ``connection_ack`` without a ``clientId`` uses the
  socket's leased client id, whose record the write-behind writes later: the owner check must not
  depend on that write (here the write-behind is stopped, as when it is busy with a long batch).
* A subscription to a request whose result was already delivered (by an ``/events`` stream, or by
  an earlier subscription) replays that request's retained events, then completes — for the same
  session only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.live.store import DELIVERED_TO
from gateway.tasks import stop_tasks
from tests.conftest import Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance
from tests.support.graphql_node import node_run
from tests.support.graphql_ws import WsClient
from tests.support.live import (
    callback_headers,
    pending_request,
    post_progress,
    post_result,
    raw_bucket,
    services_of,
    waiting_client,
)
from tests.support.signin import login
from tests.support.waiting import wait_for
from tests.test_graphql_ws import EVENTS, EXECUTE, signed_in
from tests.test_subscriptions_node import assert_progress_then_result, node_graphql  # noqa: F401


async def stop_write_behind(gw: GatewayInstance) -> None:
    """The write-behind writes nothing from now (its tasks end; the gateway's close still flushes)."""
    await stop_tasks(*services_of(gw).live.writes._tasks)


@pytest.mark.gen_test(timeout=30)
async def test_execute_right_after_the_ack_owns_the_leased_client_before_its_record_is_written(
    gateway: GatewayInstance, standin: Standin, token: str
) -> None:
    standin.state.gates[playbooks.PROGRESS_RESULT] = asyncio.Event()  # the playbook waits: no result
    await stop_write_behind(gateway)
    ws = await signed_in(gateway, token)
    live = services_of(gateway).live
    client_id = next(iter(services_of(gateway).subscriptions.subscribers._clients))
    assert live.writes.backlog == 1 and live.clients.bucket.get_local(client_id) is None  # not written
    started = await ws.run("start", EXECUTE, {"name": playbooks.PROGRESS_RESULT})
    assert started[0]["type"] == "next" and not started[0]["payload"].get("errors"), started
    assert started[0]["payload"]["data"]["executePlaybook"]["requestId"], started
    ws.close()


@pytest.mark.gen_test(timeout=60)
async def test_the_npm_graphql_ws_client_starts_a_playbook_before_its_client_record_is_written(
    node_graphql: str,  # noqa: F811
    gateway: GatewayInstance,
    standin: Standin,
    token: str,
) -> None:
    gate = standin.state.gates[playbooks.PROGRESS_RESULT] = asyncio.Event()
    await stop_write_behind(gateway)
    async with node_run(node_graphql, gateway, token, "wsPlaybook", PLAYBOOK=playbooks.PROGRESS_RESULT) as run:
        started = (await run.until("started"))["started"]
        assert not started.get("errors"), run.seen
        await run.until("event")
        gate.set()
        await run.until("eventComplete")
        assert_progress_then_result(run.events(), started["data"]["executePlaybook"]["executionId"])


async def traced(gw: GatewayInstance, request_id: str) -> dict[str, Any] | None:
    """The request's entry in the bucket as stored, if it is a delivered request's trace."""
    requests = await raw_bucket(gw, gw.config.nats_request_bucket)
    try:
        value = orjson.loads((await requests.get(request_id)).value or b"null")
    except Exception:  # KeyNotFoundError: none (yet)
        return None
    return value if isinstance(value, dict) and value.get(DELIVERED_TO) else None


def events_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert messages[-1]["type"] == "complete", messages
    return [message["payload"]["data"]["playbookEvents"] for message in messages[:-1]]


async def deliver_progress_and_result(client: aiohttp.ClientSession, gw: GatewayInstance, request_id: str) -> None:
    headers = callback_headers(request_id)
    assert (await post_progress(client, gw, request_id, headers=headers))[0] in (200, 202)
    assert (await post_result(client, gw, request_id, headers=headers))[0] in (200, 202)


def assert_replayed(events: list[dict[str, Any]], request_id: str) -> None:
    assert [event["kind"] for event in events] == ["PROGRESS", "STATE", "RESULT"], events
    assert {event["requestId"] for event in events} == {request_id}
    assert events[-1]["status"] == "COMPLETED" and events[-1]["data"] == {"ok": True}


@pytest.mark.gen_test(timeout=40)
async def test_a_request_its_events_stream_delivered_is_replayed_to_the_same_session_only(
    gateway: GatewayInstance, client: aiohttp.ClientSession
) -> None:
    async with waiting_client(client, gateway) as (token, stream, request_id):
        await deliver_progress_and_result(client, gateway, request_id)
        await stream.next_named("playbook/result")  # delivered to /events: the request is over
        trace = await wait_for(lambda: traced(gateway, request_id))
        assert trace["session"] and trace["execution_id"] == "9001", trace
        assert await services_of(gateway).live.requests.get(request_id) is None  # pending for nobody
        ws = await signed_in(gateway, token)
        assert_replayed(events_of(await ws.run("late", EVENTS, {"rid": request_id})), request_id)
        # Exactly once per subscription: a second one gets the same, again.
        assert_replayed(events_of(await ws.run("again", EVENTS, {"rid": request_id})), request_id)
        bob = await login(client, gateway, "good:bob@example.com")
        intruder = await signed_in(gateway, bob)
        refused = await intruder.run("x", EVENTS, {"rid": request_id})
        assert refused[0]["type"] == "error" and refused[0]["payload"][0]["extensions"]["code"] == "NOT_FOUND"
        unknown = await intruder.run("y", EVENTS, {"rid": "7c9e6679-7425-40de-944b-e07fc1f90ae7"})
        assert unknown[0]["payload"] == refused[0]["payload"]  # nothing tells a delivered id from none
        ws.close()
        intruder.close()


@pytest.mark.gen_test(timeout=40)
async def test_a_request_a_subscription_delivered_is_replayed_to_a_later_one(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    first = await WsClient.connect(gateway.url)
    ack = await first.init(token)
    assert ack is not None
    request_id = await pending_request(gateway, token, ack["payload"]["clientId"])  # the socket's request
    await first.send("subscribe", "e", {"query": EVENTS, "variables": {"rid": request_id}})
    await wait_for(lambda: services_of(gateway).subscriptions.requests.count == 1)
    await deliver_progress_and_result(client, gateway, request_id)
    delivered = [await first.receive(10) for _ in range(4)]
    assert [m["type"] for m in delivered if m] == ["next", "next", "next", "complete"], delivered
    await wait_for(lambda: traced(gateway, request_id))  # the subscription delivered it: its trace
    first.close()
    later = await signed_in(gateway, token)  # another connection of the session, within the retention
    assert_replayed(events_of(await later.run("late", EVENTS, {"rid": request_id})), request_id)
    later.close()
