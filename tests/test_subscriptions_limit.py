"""GATEWAY_MAX_SUBSCRIPTIONS_PER_SESSION holds across replicas (one real nats-server, two gateways).

Subscriptions on replica A count on replica B; a subscription that ends (client ``complete``, its
result, the socket closed) frees its place for the other replica; a replica that dies leaves
places that expire once nobody stamps them; with NATS away each replica counts its own (fail-open).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.auth.tokens import token_hash
from gateway.live.subscribers import SLOTS_PREFIX, Subscribers
from tests.conftest import ReplicasFactory
from tests.support.gateway import GatewayInstance, GatewayProcess
from tests.support.graphql_node import NODE_DIR, node_run
from tests.support.graphql_ws import WsClient
from tests.support.live import callback_headers, post_result, services_of, waiting_client
from tests.support.nats_server import NatsServer
from tests.support.node_packages import node_with_packages
from tests.support.signin import login
from tests.support.waiting import wait_for

LIMIT = {"GATEWAY_MAX_SUBSCRIPTIONS_PER_SESSION": "2"}
EVENTS = "subscription($rid: ID) { playbookEvents(requestId: $rid) { kind status } }"


def updates(execution_id: int) -> dict[str, Any]:
    """A subscription that stays open (the stand-in knows no such execution: nothing ever ends it)."""
    return {"query": f'subscription {{ executionUpdates(executionId: "{execution_id}") {{ kind }} }}'}


def subscribers(gw: GatewayInstance) -> Subscribers:
    return services_of(gw).subscriptions.subscribers


async def in_bucket(gw: GatewayInstance, token: str) -> int:
    """The session's places counted in NATS (every replica's), as ``gw`` reads them."""
    return await subscribers(gw).slots.count(token_hash(token))


async def stamps(gw: GatewayInstance, token: str) -> dict[str, float]:
    """The session's KV record: slot id -> when its holder last stamped it alive."""
    current = await subscribers(gw).slots.bucket.read(SLOTS_PREFIX + token_hash(token))
    held = (current.value or {}).get("requests") or {}
    return {str(slot): float(at) for slot, at in held.items()}


async def signed_in(url_of: Any, token: str) -> WsClient:
    ws = await WsClient.connect(url_of.url)
    ack = await ws.init(token)
    assert ack is not None and ack["type"] == "connection_ack", ack
    return ws


async def refused(ws: WsClient, op_id: str, execution_id: int) -> None:
    """The subscribe is answered with the per-session limit's error."""
    messages = await ws.run(op_id, updates(execution_id)["query"])
    assert messages[-1]["type"] == "error", messages
    assert messages[-1]["payload"][0]["extensions"]["code"] == "RATE_LIMITED", messages


@pytest.fixture(scope="session")
def node_graphql() -> str:
    return node_with_packages(NODE_DIR)


@pytest.mark.gen_test(timeout=90)
async def test_graphql_ws_subscriptions_on_replica_a_count_on_replica_b(
    node_graphql: str, make_replicas: ReplicasFactory, client: aiohttp.ClientSession
) -> None:
    a, b = await make_replicas(**LIMIT)
    token = await login(client, a)
    mine = token_hash(token)
    async with node_run(node_graphql, a, token, "wsHold", COUNT="2") as on_a:
        await on_a.until("subscribing")
        await wait_for(lambda: subscribers(a).open_of(mine) == 2, 10)
        async with node_run(node_graphql, b, token, "wsHold", COUNT="1", FIRST="3") as on_b:
            refusal = (await on_b.until("refused"))["refused"]
            assert refusal["errors"][0]["extensions"]["code"] == "RATE_LIMITED", refusal
            assert "(limit 2)" in refusal["errors"][0]["message"]
            await on_b.go()
            await on_b.until("disposed")
        assert subscribers(b).open_of(mine) == 0
        await on_a.go()
        await on_a.until("disposed")  # the client closed its socket: A's subscriptions end
    await wait_for(lambda: _count_is(b, token, 0), 10, interval=0.05)
    async with node_run(node_graphql, b, token, "wsHold", COUNT="2", FIRST="5") as on_b:
        await wait_for(lambda: subscribers(b).open_of(mine) == 2, 10)  # both places, on B now
        await on_b.go()
        await on_b.until("disposed")
    assert not any("refused" in line for line in on_b.seen), on_b.seen


@pytest.mark.gen_test(timeout=60)
async def test_an_ended_subscription_frees_its_place_on_the_other_replica(
    make_replicas: ReplicasFactory, client: aiohttp.ClientSession
) -> None:
    a, b = await make_replicas(**LIMIT)
    async with waiting_client(client, a) as waiting:
        token, mine = waiting.token, token_hash(waiting.token)
        on_a = await signed_in(a, token)
        await on_a.send("subscribe", "events", {"query": EVENTS, "variables": {"rid": waiting.request_id}})
        await on_a.send("subscribe", "updates", updates(1))
        await wait_for(lambda: subscribers(a).open_of(mine) == 2, 10)
        on_b = await signed_in(b, token)
        await refused(on_b, "over", 2)

        await on_a.send("complete", "updates")  # the client's unsubscribe
        await wait_for(lambda: subscribers(a).open_of(mine) == 1, 10)
        await wait_for(lambda: _count_is(b, token, 1), 10, interval=0.05)
        await on_b.send("subscribe", "b1", updates(3))
        await wait_for(lambda: subscribers(b).open_of(mine) == 1, 10)
        await refused(on_b, "over-again", 4)  # A 1 + B 1

        # The result ends A's playbookEvents (``complete``): its place goes to B.
        status, _ = await post_result(client, b, waiting.request_id, headers=callback_headers(waiting.request_id))
        assert status == 200
        kinds = []
        while (message := await on_a.receive(10)) is not None and message["type"] != "complete":
            kinds.append(message["payload"]["data"]["playbookEvents"]["kind"])
        assert kinds[-1] == "RESULT", kinds
        await wait_for(lambda: _count_is(b, token, 1), 10, interval=0.05)
        await on_b.send("subscribe", "b2", updates(5))
        await wait_for(lambda: subscribers(b).open_of(mine) == 2, 10)

        on_b.close()  # the socket closed: both of B's places are free again
        await wait_for(lambda: _count_is(a, token, 0), 10, interval=0.05)
        on_a.close()


async def _count_is(gw: GatewayInstance, token: str, expected: int) -> bool:
    return await in_bucket(gw, token) == expected


@pytest.mark.gen_test(timeout=90)
async def test_a_replica_that_dies_leaves_places_that_expire(
    gateway_env: dict[str, str],
    own_nats: NatsServer,
    make_gateway: Any,
    client: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    # A third of a 3 s retention: open places are stamped every second and count 3 s after the last stamp.
    short = {**LIMIT, "NATS_URL": own_nats.url, "GATEWAY_EVENT_RETENTION_SECS": "3"}
    a = GatewayProcess({**gateway_env, **short, "GATEWAY_LOG_LEVEL": "WARNING"}).start(str(tmp_path / "a.log"))
    try:
        b = await make_gateway(**short)
        hold = subscribers(b).slots.hold
        assert hold == 3.0
        token = await login(client, b)
        on_a = await signed_in(a, token)
        await on_a.send("subscribe", "1", updates(1))
        await on_a.send("subscribe", "2", updates(2))
        first = await wait_for(lambda: _two_stamps(b, token), 10, interval=0.05)
        # Alive, A keeps stamping them: they outlive their hold.
        await wait_for(lambda: _stamped_after(b, token, max(first.values()) + hold), 10, interval=0.1)
        on_b = await signed_in(b, token)
        await refused(on_b, "over", 3)

        assert a.proc is not None
        a.proc.kill()  # no release, no goodbye
        await asyncio.get_running_loop().run_in_executor(None, a.proc.wait)
        killed = asyncio.get_running_loop().time()
        await wait_for(lambda: _count_is(b, token, 0), 3 * hold, interval=0.1)
        assert asyncio.get_running_loop().time() - killed <= hold + 1.5  # expired, not released
        await on_b.send("subscribe", "b1", updates(4))
        await wait_for(lambda: subscribers(b).open_of(token_hash(token)) == 1, 10)
        on_b.close()
    finally:
        a.stop()


async def _two_stamps(gw: GatewayInstance, token: str) -> dict[str, float] | None:
    held = await stamps(gw, token)
    return held if len(held) == 2 else None


async def _stamped_after(gw: GatewayInstance, token: str, moment: float) -> bool:
    held = await stamps(gw, token)
    return len(held) == 2 and min(held.values()) > moment


@pytest.mark.gen_test(timeout=90)
async def test_nats_away_each_replica_counts_its_own(
    make_replicas: ReplicasFactory, own_nats: NatsServer, client: aiohttp.ClientSession
) -> None:
    a, b = await make_replicas(NATS_URL=own_nats.url, **LIMIT)
    token = await login(client, a)
    mine = token_hash(token)
    on_a = await signed_in(a, token)
    await on_a.send("subscribe", "1", updates(1))
    await on_a.send("subscribe", "2", updates(2))
    await wait_for(lambda: _count_is(b, token, 2), 10, interval=0.05)
    on_b = await signed_in(b, token)
    await refused(on_b, "over", 3)

    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, own_nats.stop)
    await wait_for(lambda: not services_of(a).nats.connected and not services_of(b).nats.connected, 10)
    # Fail-open: B cannot read the shared count, so it counts only its own subscriptions...
    await on_b.send("subscribe", "b1", updates(4))
    await on_b.send("subscribe", "b2", updates(5))
    await wait_for(lambda: subscribers(b).open_of(mine) == 2, 10)
    await refused(on_b, "b3", 6)  # ...up to the limit
    await loop.run_in_executor(None, own_nats.start)
    await wait_for(lambda: services_of(a).nats.connected and services_of(b).nats.connected, 15)
    on_a.close()
    on_b.close()
