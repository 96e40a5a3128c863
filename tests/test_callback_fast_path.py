"""The result callback's fast path (issue 19, "Hot paths" → Callbacks) keeps its guarantees.

* A request this process stored is looked up in its own copy (no bucket read); a request another
  replica stored is read from the bucket. The single-use spend stays the atomic step across
  replicas: a result accepted on one replica is refused on the other although that one's copy of
  the request was never deleted.
* The synthetic ``playbook/state`` frame is published without waiting for its own ack, the
  result's covers it: both land in the events stream in order, once each; when the result cannot
  be published both are delivered in-process, in order.
* The slots of one session's requests delivered together are freed with one write; a slot this
  process took is freed without a read, and slots another replica wrote are read from the bucket.
"""

from __future__ import annotations

import aiohttp
import nats
import orjson
import pytest

from tests.conftest import GatewayFactory, ReplicasFactory
from tests.support.live import (
    callback_headers,
    hashed,
    pending_request,
    post_progress,
    post_result,
    raw_bucket,
    services_of,
    stream_on_a,
    waiting_client,
)
from tests.support.nats_server import NatsServer, message_counts
from tests.support.signin import login
from tests.support.sse_client import init_of, streaming
from tests.support.waiting import wait_for

SPENT = {"error": "Callback token already used"}


@pytest.mark.gen_test
async def test_a_request_stored_here_is_answered_from_this_process_only(
    make_replicas: ReplicasFactory, nats_server: NatsServer, client: aiohttp.ClientSession
) -> None:
    """The record is removed from the bucket behind both replicas' backs: the replica that stored it
    still answers the callback from its own copy; the other one, which must read the bucket, cannot."""
    async with stream_on_a(make_replicas, nats_server.url, client) as (a, b, token, stream, client_id):
        request_id = await pending_request(a, token, client_id)
        await (await raw_bucket(a, a.config.nats_request_bucket)).delete(request_id)
        headers = callback_headers(request_id)
        assert await post_progress(client, b, request_id, headers=headers) == (404, {"error": "Request not found"})
        assert await post_result(client, a, request_id, headers=headers) == (200, {"status": "delivered"})
        result = await stream.next_named("playbook/result")
        assert result.json["params"]["requestId"] == request_id
        assert result.json["params"]["executionId"] == "9001"  # as this process completed it


@pytest.mark.gen_test
async def test_a_result_taken_by_another_replica_is_refused_by_the_one_that_stored_the_request(
    make_replicas: ReplicasFactory, nats_server: NatsServer, client: aiohttp.ClientSession
) -> None:
    """Stored on A, client streaming from B, result accepted by B (B turns the request into its trace
    when it has delivered it; A's own copy is never told): A refuses the token, for results and progress alike."""
    # The helper's first replica is the one streaming: B here.
    async with stream_on_a(make_replicas, nats_server.url, client) as (b, a, token, stream, client_id):
        request_id = await pending_request(a, token, client_id)
        assert services_of(a).live.requests.stored_here(request_id) is not None
        headers = callback_headers(request_id)
        assert await post_result(client, b, request_id, headers=headers) == (200, {"status": "delivered"})
        await stream.next_named("playbook/result")
        requests = await raw_bucket(a, a.config.nats_request_bucket)

        async def delivered() -> bool:
            try:
                entry = await requests.get(request_id)
            except Exception:  # KeyNotFoundError: deleted (or purged)
                return True
            return not entry.value or b'"client_id"' not in entry.value  # its trace: pending no more

        await wait_for(delivered)
        assert services_of(a).live.requests.stored_here(request_id) is not None  # A still has its copy
        assert await post_result(client, a, request_id, headers=headers) == (401, SPENT)
        assert await post_progress(client, a, request_id, headers=headers) == (401, SPENT)
        assert len(stream.named("playbook/result")) == 1


@pytest.mark.gen_test
async def test_the_state_frame_and_the_result_land_in_the_stream_in_order_once_each(
    make_gateway: GatewayFactory, nats_server: NatsServer, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(NATS_URL=nats_server.url)
    async with waiting_client(client, gw) as (_, stream, request_id):
        client_id = init_of(stream)["clientId"]
        assert await post_result(client, gw, request_id, headers=callback_headers(request_id)) == (
            200,
            {"status": "delivered"},
        )
        await stream.next_named("playbook/result")
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            config = gw.config
            subject = f"{config.nats_events_subject_prefix.rstrip('.')}.{client_id}"
            stored: list[tuple[int, str]] = []
            seq = 1
            while True:
                try:
                    msg = await js.get_msg(config.nats_events_stream, seq=seq, subject=subject, next=True)
                except nats.js.errors.NotFoundError:
                    break
                assert msg.seq is not None and msg.headers is not None
                stored.append((msg.seq, msg.headers["Gw-Method"]))
                seq = msg.seq + 1
        finally:
            await nc.close()
        assert [method for _, method in stored] == ["playbook/state", "playbook/result"]
        # What the client read: the stream's events, by their sequence, state first.
        events = [event for event in stream.events if event.event in ("playbook/state", "playbook/result")]
        assert [(int(str(event.id)), event.event) for event in events] == stored


@pytest.mark.gen_test
async def test_when_the_result_cannot_be_published_both_frames_are_delivered_in_process_in_order(
    make_gateway: GatewayFactory, own_nats: NatsServer, client: aiohttp.ClientSession
) -> None:
    """The events stream is deleted behind the gateway's back: the state frame handed to NATS
    without an ack goes nowhere, the result's publish fails; the client still gets both, in order."""
    gw = await make_gateway(NATS_URL=own_nats.url)
    async with waiting_client(client, gw) as (_, stream, request_id):
        nc = await nats.connect(own_nats.url)
        try:
            await nc.jetstream().delete_stream(gw.config.nats_events_stream)
        finally:
            await nc.close()
        assert await post_result(client, gw, request_id, headers=callback_headers(request_id)) == (
            200,
            {"status": "delivered"},
        )
        await stream.next_named("playbook/result")
        frames = [event for event in stream.events if event.event in ("playbook/state", "playbook/result")]
        assert [event.event for event in frames] == ["playbook/state", "playbook/result"]
        state, result = (orjson.loads(event.data)["params"] for event in frames)
        assert state["execution_id"] == "9001" and result["requestId"] == request_id


@pytest.mark.gen_test
async def test_a_sessions_slots_delivered_together_are_freed_with_one_write(
    make_gateway: GatewayFactory, own_nats: NatsServer, client: aiohttp.ClientSession
) -> None:
    """The write-behind frees a batch of one session's slots with one read and one compare-and-set."""
    gw = await make_gateway(NATS_URL=own_nats.url)
    token = await login(client, gw)
    slots = services_of(gw).live.slots
    async with streaming(client, gw.url, token) as stream:
        request_ids = [await pending_request(gw, token, init_of(stream)["clientId"]) for _ in range(3)]
        assert await slots.count(hashed(token)) == 3
        nc = await nats.connect(own_nats.url)
        try:
            js = nc.jetstream()
            bucket_stream = f"KV_{gw.config.nats_request_bucket}"
            before = (await js.stream_info(bucket_stream)).state.last_seq
            await slots.release(hashed(token), *request_ids)
            after = (await js.stream_info(bucket_stream)).state.last_seq
        finally:
            await nc.close()
        assert after - before == 1  # one write for the three
        assert await slots.count(hashed(token)) == 0


@pytest.mark.gen_test
async def test_a_slot_this_process_took_is_given_back_without_reading_the_bucket(
    make_gateway: GatewayFactory, own_nats: NatsServer, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(NATS_URL=own_nats.url)
    live = services_of(gw).live
    async with waiting_client(client, gw) as (token, _, request_id):
        await wait_for(lambda: live.writes.backlog == 0)  # the stream's client record is written
        before = (await message_counts(client, own_nats))[0]
        await live.slots.release(hashed(token), request_id)
        assert (await message_counts(client, own_nats))[0] - before == 1  # the compare-and-set alone
        assert await live.slots.count(hashed(token)) == 0


@pytest.mark.gen_test
async def test_slots_taken_on_another_replica_are_freed_from_the_bucket_not_from_this_copy(
    make_replicas: ReplicasFactory, own_nats: NatsServer, client: aiohttp.ClientSession
) -> None:
    """A remembers the session's slots as it wrote them; B takes one more. A asked to free B's slot
    (A holds the stream that delivered it) reads the bucket instead of trusting its copy; B's next
    write, from its own copy that A's write made stale, fails its compare-and-set and is retried."""
    async with stream_on_a(make_replicas, own_nats.url, client) as (a, b, token, _, client_id):
        on_a = await pending_request(a, token, client_id)
        on_b = await pending_request(b, token, client_id)
        slots_a, slots_b = services_of(a).live.slots, services_of(b).live.slots
        assert await slots_a.count(hashed(token)) == 2
        await slots_a.release(hashed(token), on_b)
        assert await slots_a.count(hashed(token)) == 1
        await slots_b.release(hashed(token), on_a)
        assert await slots_b.count(hashed(token)) == 0
