"""Live state across a NATS outage, one fault at a time (each found by the drills in test_fault_drills.py):

* results posted during the outage to a replica that does not hold the client are forwarded when
  NATS returns (they stayed in that replica's memory before), and replayed once, not twice;
* a replica that has checked a client's owner keeps knowing it through the outage;
* writes queued during the outage do not keep the gateway from becoming ready under load;
* a KV read that fails (NATS paused) is not a miss: the callback still finds its request;
* slots freed during the outage are freed in NATS too when it returns.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal

import aiohttp
import pytest

from tests.conftest import GatewayFactory, ReplicasFactory
from tests.support.gateway import GatewayInstance
from tests.support.live import (
    callback_headers,
    hashed,
    pending_request,
    post_result,
    raw_bucket,
    services_of,
    stream_on_a,
)
from tests.support.nats_server import NatsServer
from tests.support.signin import login
from tests.support.sse_client import init_of, open_stream, streaming
from tests.support.waiting import wait_for


def up(*gateways: GatewayInstance) -> bool:
    return all(services_of(gw).nats.connected for gw in gateways)


def down(*gateways: GatewayInstance) -> bool:
    return not any(services_of(gw).nats.connected for gw in gateways)


async def stop(server: NatsServer, *gateways: GatewayInstance) -> None:
    await asyncio.get_running_loop().run_in_executor(None, server.stop)
    await wait_for(lambda: down(*gateways), timeout=10)


async def restart(server: NatsServer, *gateways: GatewayInstance) -> None:
    await asyncio.get_running_loop().run_in_executor(None, server.start)
    await wait_for(lambda: up(*gateways), timeout=10)


@pytest.mark.gen_test(timeout=60)
async def test_result_for_a_client_on_another_replica_is_forwarded_when_nats_returns(
    make_replicas: ReplicasFactory, own_nats: NatsServer, client: aiohttp.ClientSession
) -> None:
    async with stream_on_a(make_replicas, own_nats.url, client) as (a, b, token, stream, client_id):
        request_id = await pending_request(b, token, client_id)  # executePlaybook ran through B
        await stop(own_nats, a, b)
        status, answer = await post_result(client, b, request_id, headers=callback_headers(request_id))
        assert (status, answer) == (202, {"status": "queued", "clientDisconnected": True})
        assert not stream.named("playbook/result")
        await restart(own_nats, a, b)
        event = await stream.next_named("playbook/result", timeout=5)
        assert event.json["params"]["requestId"] == request_id
        await wait_for(lambda: _gone(a, request_id), timeout=5)
        # B kept its own copy (journal) and the stream has the forwarded one: a replay shows it once.
        async with streaming(client, b.url, token, client_id=client_id, last_event_id="0") as again:
            marker = await pending_request(a, token, client_id)  # a live event after the replay
            assert (await post_result(client, a, marker, headers=callback_headers(marker)))[0] == 200
            await again.wait_for(lambda e: e.event == "playbook/result" and e.json["params"]["requestId"] == marker)
            assert [e.json["params"]["requestId"] for e in again.named("playbook/result")] == [request_id, marker]
        await stream.wait_for(lambda e: e.event == "playbook/result" and e.json["params"]["requestId"] == marker)
        assert [e.json["params"]["requestId"] for e in stream.named("playbook/result")] == [request_id, marker]


async def _gone(gw: GatewayInstance, request_id: str) -> bool:
    return await services_of(gw).live.find_request(request_id) is None


@pytest.mark.gen_test(timeout=60)
async def test_a_replica_knows_the_owners_it_checked_through_an_outage(
    make_replicas: ReplicasFactory, own_nats: NatsServer, client: aiohttp.ClientSession
) -> None:
    async with stream_on_a(make_replicas, own_nats.url, client) as (a, b, token, _stream, client_id):
        other = await login(client, a, "good:bob@example.com")
        await pending_request(b, token, client_id)  # B checked the owner in NATS once
        await stop(own_nats, a, b)
        assert await pending_request(b, token, client_id)  # still known to B: the request is accepted
        with pytest.raises(Exception, match="not an event stream of this session"):
            await pending_request(b, other, client_id)  # and still refused to another session
        await restart(own_nats, a, b)


@pytest.mark.gen_test(timeout=60)
async def test_ready_again_while_writes_keep_coming(
    make_gateway: GatewayFactory, own_nats: NatsServer, client: aiohttp.ClientSession
) -> None:
    """Writes queued while NATS is away are replayed at reconnect. Under a steady stream of writes the
    replay used to chase the queue forever, and the gateway never became ready again."""
    gw = await make_gateway(NATS_URL=own_nats.url)
    bucket = services_of(gw).live.requests.bucket
    counter = itertools.count()
    stop_writing = asyncio.Event()
    last: dict[str, int] = {}

    async def writer(worker: int) -> None:
        while not stop_writing.is_set():
            n = next(counter)
            key = f"load-{worker}-{n % 25}"
            await bucket.put(key, {"n": n})
            last[key] = n
            await asyncio.sleep(0)  # a handler awaits something between writes too

    await stop(own_nats, gw)
    writers = [asyncio.create_task(writer(w)) for w in range(8)]
    try:
        await wait_for(lambda: len(bucket._queued) >= 200, timeout=5)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, own_nats.start)
        back = loop.time()
        await wait_for(lambda: up(gw), timeout=10)
        assert loop.time() - back < 5.0
    finally:
        stop_writing.set()
        await asyncio.gather(*writers)
    # Every key ends with its last value in NATS, whether it was queued, replayed or written online.
    kv = await raw_bucket(gw, bucket.name)
    await wait_for(lambda: not bucket._queued, timeout=5)
    for key, n in last.items():
        entry = await kv.get(key)
        assert entry.value == b'{"n":%d}' % n, (key, entry.value, n)


@pytest.mark.gen_test(timeout=60)
async def test_a_failed_read_is_not_a_missing_request(
    make_gateway: GatewayFactory, own_nats: NatsServer, client: aiohttp.ClientSession
) -> None:
    """NATS stops answering (paused, a partition) before the gateway notices: the request read times out.
    That used to count as "no such request" (404, result lost)."""
    gw = await make_gateway(NATS_URL=own_nats.url)
    token = await login(client, gw)
    stream = await open_stream(client, gw.url, token)
    assert own_nats.proc is not None
    pid = own_nats.proc.pid
    try:
        client_id = init_of(stream)["clientId"]
        request_id = await pending_request(gw, token, client_id)
        os.kill(pid, signal.SIGSTOP)
        try:
            status, _ = await post_result(client, gw, request_id, headers=callback_headers(request_id))
        finally:
            os.kill(pid, signal.SIGCONT)
        assert status in (200, 202)
        await stream.wait_for(lambda e: e.event == "playbook/result", timeout=10)
    finally:
        await stream.close()


@pytest.mark.gen_test(timeout=60)
async def test_slots_freed_during_the_outage_are_freed_in_nats(
    make_gateway: GatewayFactory, own_nats: NatsServer, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(NATS_URL=own_nats.url)
    token = await login(client, gw)
    stream = await open_stream(client, gw.url, token)
    slots = services_of(gw).live.slots
    try:
        client_id = init_of(stream)["clientId"]
        request_id = await pending_request(gw, token, client_id)  # its slot is in NATS
        assert await slots.count(hashed(token)) == 1
        await stop(own_nats, gw)
        assert (await post_result(client, gw, request_id, headers=callback_headers(request_id)))[0] == 200
        await stream.next_named("playbook/result")  # delivered in-process: the slot is freed (locally)
        await restart(own_nats, gw)
        await wait_for(lambda: _count_is(slots.count(hashed(token)), 0), timeout=5)
    finally:
        await stream.close()


async def _count_is(count: object, expected: int) -> bool:
    return await count == expected  # type: ignore[misc]
