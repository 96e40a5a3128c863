"""NATS_REPLICAS: every bucket and the events stream at that many copies — created, scaled, or reported."""

from __future__ import annotations

import logging

import nats
import pytest
from nats.js import api

from gateway.config import GatewayConfig
from tests.conftest import GatewayFactory
from tests.support.live import services_of
from tests.support.nats_cluster import NatsCluster
from tests.support.nats_server import NatsServer
from tests.support.waiting import wait_for

# Every bucket the gateway keeps: each setting that names one (a new bucket is covered by itself).
BUCKETS = tuple(str(getattr(GatewayConfig(), name)) for name in GatewayConfig.model_fields if name.endswith("_bucket"))
STREAMS = (*(f"KV_{bucket}" for bucket in BUCKETS), "GATEWAY_EVENTS")


async def replica_counts(url: str) -> dict[str, int]:
    nc = await nats.connect(url.split(","))
    try:
        js = nc.jetstream()
        return {name: int((await js.stream_info(name)).config.num_replicas or 1) for name in STREAMS}
    finally:
        await nc.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_gateway_creates_every_bucket_and_the_stream_with_three_replicas(
    make_gateway: GatewayFactory, nats_cluster: NatsCluster
) -> None:
    gw = await make_gateway(NATS_URL=nats_cluster.url, NATS_REPLICAS="3")
    await wait_for(lambda: services_of(gw).nats.connected, timeout=30)  # set-up of every bucket: slow when loaded
    assert await replica_counts(nats_cluster.url) == dict.fromkeys(STREAMS, 3)
    assert not services_of(gw).nats.replica_shortfalls
    leader, peers = nats_cluster.stream_replicas("KV_sessions")
    assert leader is not None and len(peers) >= 2, (leader, peers)  # placed on three nodes


@pytest.mark.gen_test(timeout=60)
async def test_existing_single_replica_buckets_and_stream_are_scaled_up(
    make_gateway: GatewayFactory, nats_cluster: NatsCluster
) -> None:
    """What an upgrade from a single-node deployment meets: R1 buckets and stream, left from before."""
    nc = await nats.connect(nats_cluster.url.split(","))
    try:
        js = nc.jetstream()
        for bucket in BUCKETS:
            await js.create_key_value(bucket=bucket, history=1, ttl=60, replicas=1)
        await js.add_stream(api.StreamConfig(name="GATEWAY_EVENTS", subjects=["gateway.events.*"], num_replicas=1))
        await (await js.key_value("sessions")).put("kept", b'{"kept": true}')
    finally:
        await nc.close()
    assert set((await replica_counts(nats_cluster.url)).values()) == {1}

    gw = await make_gateway(NATS_URL=nats_cluster.url, NATS_REPLICAS="3")
    await wait_for(lambda: services_of(gw).nats.connected, timeout=30)  # set-up of every bucket: slow when loaded
    assert await replica_counts(nats_cluster.url) == dict.fromkeys(STREAMS, 3)
    assert await services_of(gw).sessions.sessions.fetch("kept") == {"kept": True}  # the data moved with it


@pytest.mark.gen_test(timeout=60)
async def test_a_single_server_refusing_three_replicas_is_reported_not_silent(
    make_gateway: GatewayFactory, own_nats: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """One nats-server takes no more than one replica: the gateway runs, and says so as an error."""
    caplog.set_level(logging.ERROR, logger="gateway.nats")
    gw = await make_gateway(NATS_URL=own_nats.url, NATS_REPLICAS="3")
    link = services_of(gw).nats
    await wait_for(lambda: link.connected, timeout=30)
    assert set(link.replica_shortfalls) == {*(f"KV bucket {b}" for b in BUCKETS), "stream GATEWAY_EVENTS"}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("KV bucket sessions has 1 replica(s) but NATS_REPLICAS=3" in line for line in errors), errors
    assert any("stream GATEWAY_EVENTS has 1 replica(s)" in line for line in errors), errors
    assert set((await replica_counts(own_nats.url)).values()) == {1}
