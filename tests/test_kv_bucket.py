"""KvBucket: in-memory fallback while NATS is away, replay on return, no stale local copies."""

from __future__ import annotations

import asyncio

import nats
import orjson
import pytest

from gateway.config import load_config
from gateway.nats.kv import KvBucket
from gateway.nats.link import NatsLink
from tests.support.nats_server import NatsServer
from tests.support.waiting import wait_for


@pytest.mark.gen_test(timeout=60)
async def test_outage_writes_replayed_and_never_shadow_later_values(own_nats: NatsServer) -> None:
    link = NatsLink(load_config({"NATS_URL": own_nats.url}))
    plain = KvBucket(link, "plain_test", 300, mirror=False)
    mirrored = KvBucket(link, "mirrored_test", 300, mirror=True)
    await link.start(first_attempt_timeout=5)
    try:
        assert link.connected
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, own_nats.stop)
        await wait_for(lambda: not link.connected, timeout=10)
        # During the outage: process memory.
        await plain.put("k", {"v": 1})
        await mirrored.put("k", {"v": 1})
        await mirrored.delete("gone")
        assert await plain.get("k") == {"v": 1}
        await loop.run_in_executor(None, own_nats.start)
        await wait_for(lambda: link.connected, timeout=10)
        # The outage write reached NATS.
        nc = await nats.connect(own_nats.url)
        try:
            kv = await nc.jetstream().key_value("plain_test")
            assert orjson.loads((await kv.get("k")).value) == {"v": 1}
            # A newer value written by another replica is what this one reads now.
            await kv.put("k", orjson.dumps({"v": 2}))
            assert await plain.get("k") == {"v": 2}
            await plain.put("k", {"v": 3})
            await kv.put("k", orjson.dumps({"v": 4}))
            assert await plain.get("k") == {"v": 4}
            # The mirror follows the bucket.
            mkv = await nc.jetstream().key_value("mirrored_test")
            await mkv.put("m", orjson.dumps({"x": 1}))
            await wait_for(lambda: mirrored.get_local("m") == {"x": 1}, timeout=5)
            await mkv.delete("m")
            await wait_for(lambda: mirrored.get_local("m") is None, timeout=5)
        finally:
            await nc.close()
    finally:
        await plain.close()
        await mirrored.close()
        await link.close()
