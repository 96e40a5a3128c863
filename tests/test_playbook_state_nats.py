"""``playbook/state`` from NoETL's event mirror (stream ``NOETL_EVENTS``) on a real nats-server, two replicas.

The test plays NoETL: it creates the stream and publishes events the way NoETL 4.26 does (integer
ids above 2^53, mixed-case status, ``created_at`` with a space). Each replica reads every event;
the events stream must hold each frame once, in NoETL's order, for the waiting client only.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import nats
import pytest

from tests.conftest import Replicas, ReplicasFactory
from tests.standin.lifecycle import create_stream, noetl_event, publish_events
from tests.support.gateway import GatewayInstance, call
from tests.support.live import callback_headers, post_result, services_of
from tests.support.nats_server import NatsServer
from tests.support.signin import login
from tests.support.sse_client import SseStream, init_of, open_stream, streaming
from tests.support.waiting import wait_for

PATH = "travel/planner"


@asynccontextmanager
async def noetl_mirror(url: str) -> AsyncIterator[Any]:
    """A JetStream context with NoETL's stream in place, as NoETL run with its mirror on leaves it."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await create_stream(js)
        yield js
    finally:
        await nc.close()


async def waiting_request(gw: GatewayInstance, token: str, client_id: str, execution_id: int) -> str:
    """What executePlaybook(clientId) records on ``gw`` once NoETL answered with ``execution_id``."""
    live = services_of(gw).live
    session = await services_of(gw).auth.validate(token, client=None)
    assert session is not None
    request_id = await live.prepare_request(session, client_id)
    await live.record_pending(request_id, client_id, session, str(execution_id), PATH)
    return request_id


@asynccontextmanager
async def mirror_and_replicas(url: str, make_replicas: ReplicasFactory) -> AsyncIterator[tuple[Any, Replicas]]:
    """NoETL's mirror (``noetl_mirror``) and two replicas on ``url``, once both take playbook states from it."""
    async with noetl_mirror(url) as js:
        replicas = await make_replicas(NATS_URL=url)
        await wait_for(lambda: all(services_of(gw).live.playbook_state_source == "nats" for gw in replicas), 15)
        yield js, replicas


def states(stream: SseStream, execution_id: int | None = None) -> list[dict[str, Any]]:
    frames = [e.json["params"] for e in stream.named("playbook/state")]
    return [p for p in frames if execution_id is None or p["execution_id"] == str(execution_id)]


async def state_arrives(stream: SseStream, execution_id: int, step: str | None, event_type: str) -> None:
    def matches(e: Any) -> bool:
        if e.event != "playbook/state":
            return False
        params = e.json["params"]
        return bool(params["execution_id"] == str(execution_id) and params["step_name"] == step) and bool(
            params["event_type"] == event_type
        )

    await stream.wait_for(matches, timeout=10)


def big_id() -> int:
    return 635_758_340_626_186_455 + random.randrange(10**6) * 100  # NoETL's ids: far above 2^53


@pytest.mark.gen_test(timeout=60)
async def test_noetl_events_reach_the_waiting_client_on_another_replica_once_in_order_and_resumable(
    own_nats: NatsServer, make_replicas: ReplicasFactory, client: aiohttp.ClientSession
) -> None:
    async with mirror_and_replicas(own_nats.url, make_replicas) as (js, (a, b)):
        status, body, _ = await call(client, "GET", f"{b.url}/health/ready")
        assert status == 200 and body["playbook_state"] == "nats"

        token = await login(client, a)
        bystander_token = await login(client, b, "good:bob@example.com")
        execution, elsewhere = big_id(), big_id() + 1
        async with streaming(client, a.url, token) as stream, streaming(client, b.url, bystander_token) as bystander:
            client_id = init_of(stream)["clientId"]
            await waiting_request(b, token, client_id, execution)  # recorded on B, client held by A
            await publish_events(
                js,
                [
                    noetl_event(execution, "step.enter", "fetch_offers", "RUNNING"),  # not forwarded
                    noetl_event(execution, "step.exit", "fetch_offers", "COMPLETED"),
                    noetl_event(elsewhere, "step.exit", "fetch_offers", "COMPLETED"),  # nobody waits on it
                    noetl_event(execution, "workflow.completed", PATH, "completed"),  # not forwarded
                    noetl_event(execution, "playbook.completed", PATH, "Completed"),
                    noetl_event(execution, "step.exit", "marker", "COMPLETED"),
                ],
            )
            await state_arrives(stream, execution, "marker", "step.exit")
            at = "2026-07-26T16:40:11.123456+00:00"
            expected = [
                {
                    "execution_id": str(execution),
                    "event_type": "step.exit",
                    "step_name": "fetch_offers",
                    "status": "COMPLETED",
                    "at": at,
                },
                {"execution_id": str(execution), "event_type": "playbook.completed", "step_name": None}
                | {"status": "completed", "at": at},
                {"execution_id": str(execution), "event_type": "step.exit", "step_name": "marker"}
                | {"status": "COMPLETED", "at": at},
            ]
            assert states(stream) == expected  # once each, although both replicas read every event
            live_ids = [e.id for e in stream.named("playbook/state")]
            assert not bystander.named("playbook/state")  # no pending request there: nothing

        # Retained: a reconnect (on the other replica) with Last-Event-ID gets them again, in order.
        async with streaming(client, b.url, token, client_id=client_id, last_event_id=stream.events[0].id) as again:
            await state_arrives(again, execution, "marker", "step.exit")
            assert states(again) == expected
            assert [e.id for e in again.named("playbook/state")] == live_ids


@pytest.mark.gen_test(timeout=60)
async def test_no_frames_once_the_request_is_answered(
    own_nats: NatsServer, make_replicas: ReplicasFactory, client: aiohttp.ClientSession
) -> None:
    async with mirror_and_replicas(own_nats.url, make_replicas) as (js, (a, b)):
        token = await login(client, a)
        answered, still_running = big_id(), big_id() + 7
        stream = await open_stream(client, a.url, token)
        try:
            client_id = init_of(stream)["clientId"]
            request_id = await waiting_request(a, token, client_id, answered)
            await waiting_request(b, token, client_id, still_running)
            status, _ = await post_result(
                client, b, request_id, {"execution_id": str(answered)}, headers=callback_headers(request_id)
            )
            assert status == 200
            await stream.next_named("playbook/result")
            await wait_for(lambda: _gone(a, request_id))
            # NoETL's own end of the answered execution comes after the callback (it always does).
            await publish_events(
                js,
                [
                    noetl_event(answered, "playbook.completed", PATH, "COMPLETED"),
                    noetl_event(still_running, "step.exit", "marker", "COMPLETED"),
                ],
            )
            await state_arrives(stream, still_running, "marker", "step.exit")
            assert [p["status"] for p in states(stream, answered)] == ["completed"]  # the synthetic one only
            assert [e.event for e in stream.events[1:]] == ["playbook/state", "playbook/result", "playbook/state"]
        finally:
            await stream.close()


async def _gone(gw: GatewayInstance, request_id: str) -> bool:
    return await services_of(gw).live.find_request(request_id) is None


@pytest.mark.gen_test(timeout=60)
async def test_after_a_nats_restart_the_feed_reads_again_and_the_reconnect_is_counted(
    make_gateway: Any, own_nats: NatsServer
) -> None:
    async with noetl_mirror(own_nats.url):
        pass
    gw = await make_gateway(NATS_URL=own_nats.url)
    feed = services_of(gw).live.states.feed
    await wait_for(lambda: feed.active, timeout=10)
    registry = services_of(gw).metrics.registry

    def reconnects(reason: str) -> float:
        value = registry.get_sample_value("noetl_gateway_event_feed_reconnect_total", {"reason": reason})
        return value or 0.0

    assert reconnects("ended") == 0
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, own_nats.stop)
    await wait_for(lambda: not feed.active, timeout=10)
    await loop.run_in_executor(None, own_nats.start)
    await wait_for(lambda: feed.active and reconnects("ended") == 1, timeout=30)
