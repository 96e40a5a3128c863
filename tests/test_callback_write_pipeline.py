"""The write-behind's batches are acked once per bucket (issue 19, "Hot paths" → Callbacks).

A drain of the write-behind (gateway/live/writes.py) hands a bucket's writes to NATS without their
own ack and acks only the last, which covers them (gateway/nats/kv_ahead.py). Pinned here: the
batch lands in the bucket with one message per write and nothing else sent; a write NATS cannot
take now is made the usual way (queued, replayed when NATS is back); when the covering ack fails,
every write of the batch is made again with its own ack.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from gateway.live.writes import _pipelined
from tests.conftest import GatewayFactory
from tests.support.gateway import GatewayInstance
from tests.support.live import raw_bucket, services_of
from tests.support.nats_server import NatsServer, message_counts
from tests.support.waiting import wait_for

IDS = [f"0000000{n}-0000-4000-8000-000000000000" for n in range(5)]
RECORD = {"client_id": "c", "session": "s", "execution_id": None, "playbook_path": None, "created_at": 1}


def connected(gw: GatewayInstance) -> bool:
    return services_of(gw).nats.connected


@pytest.mark.gen_test
async def test_a_batch_of_traces_and_of_client_records_is_one_message_per_write(
    make_gateway: GatewayFactory, own_nats: NatsServer, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(NATS_URL=own_nats.url)
    live = services_of(gw).live
    for request_id in IDS:
        await live.requests.put_shared(request_id, RECORD)
    before = await message_counts(client, own_nats)
    traces = [(request_id, "s", "c", None) for request_id in IDS]  # delivered: each request becomes its trace
    await _pipelined(traces, live.requests.trace_ahead, live.requests.trace)
    records = [(f"client-{n}", {"session": "s", "created_at": 1, "delivered": f"{n}-0"}) for n in range(5)]
    await _pipelined(records, lambda item: live.clients.put_ahead(*item), lambda item: live.clients.put(*item))
    after = await message_counts(client, own_nats)
    assert after[0] - before[0] == 10  # no read, no retry: one message per write
    # One ack per bucket (each write acked: 10). At most one more: a consumer's idle heartbeat.
    assert after[1] - before[1] <= 3
    requests = await raw_bucket(gw, gw.config.nats_request_bucket)
    for request_id in IDS:  # every trace landed in place of its request
        assert orjson.loads((await requests.get(request_id)).value)["delivered_to"] == "c"
    clients = await raw_bucket(gw, gw.config.nats_client_bucket)
    for key, record in records:
        assert orjson.loads((await clients.get(key)).value) == record
    assert all(live.requests.stored_here(request_id) is None for request_id in IDS)


@pytest.mark.gen_test(timeout=60)
async def test_while_nats_is_away_the_batch_is_queued_and_replayed_when_it_is_back(
    make_gateway: GatewayFactory, own_nats: NatsServer
) -> None:
    gw = await make_gateway(NATS_URL=own_nats.url)
    live = services_of(gw).live
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, own_nats.stop)
    await wait_for(lambda: not connected(gw), timeout=10)
    records = [(f"client-{n}", {"session": "s", "created_at": 1, "delivered": f"{n}-0"}) for n in range(5)]
    await _pipelined(records, lambda item: live.clients.put_ahead(*item), lambda item: live.clients.put(*item))
    assert live.clients.bucket.backlog == 5  # none handed to a connection that is not there
    assert await live.clients.get("client-3") == records[3][1]  # answered from process memory meanwhile
    await loop.run_in_executor(None, own_nats.start)
    await wait_for(lambda: connected(gw) and live.clients.bucket.backlog == 0, timeout=15)
    clients = await raw_bucket(gw, gw.config.nats_client_bucket)
    for key, record in records:
        assert orjson.loads((await clients.get(key)).value) == record


@pytest.mark.gen_test
async def test_when_the_covering_ack_fails_every_write_is_made_again_with_its_own() -> None:
    sent_ahead: list[int] = []
    acked: list[int] = []

    async def ahead(item: int) -> bool:
        sent_ahead.append(item)
        return item != 2  # item 2: NATS could not take it just then

    def acking(covering_ok: bool):  # type: ignore[no-untyped-def]
        async def write(item: int) -> bool:
            acked.append(item)
            if item == 4 and not covering_ok:
                raise TimeoutError("the covering ack did not come")
            return True

        return write

    await _pipelined([0, 1, 2, 3, 4], ahead, acking(True))
    assert sent_ahead == [0, 1, 2, 3]
    assert acked == [4, 2]  # the last (its ack covers 0, 1, 3), and the one not handed over
    sent_ahead.clear()
    acked.clear()
    await _pipelined([0, 1, 2, 3, 4], ahead, acking(False))
    assert acked == [4, 0, 1, 2, 3]  # fate unknown: each again, with its own ack
    acked.clear()
    await _pipelined([7], ahead, acking(True))
    assert acked == [7]  # a batch of one is one acked write
