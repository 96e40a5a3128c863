"""KvBucket's one fallback mechanism, against a real nats-server: versioned reads and compare-and-set,
what a bucket remembers for an outage, compare-and-set decided locally during one, deferred edits."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
import orjson
import pytest
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from gateway.config import load_config
from gateway.nats.kv import KvBucket
from gateway.nats.link import NatsLink
from gateway.nats.versioned import KvWriteFailed, Versioned
from gateway.nats.write_queue import WriteQueue
from tests.support.nats_server import NatsServer
from tests.support.waiting import wait_for


class Rig:
    """A link with buckets of unique names, and the same buckets as another client sees them."""

    def __init__(self, server: NatsServer) -> None:
        self.server = server
        self.link = NatsLink(load_config({"NATS_URL": server.url}))
        self.buckets: list[KvBucket] = []
        self._others: list[Any] = []  # the other clients' connections

    def bucket(self, **options: Any) -> KvBucket:
        bucket = KvBucket(self.link, f"t_{uuid.uuid4().hex[:12]}", 300, mirror=False, **options)
        self.buckets.append(bucket)
        return bucket

    async def raw(self, bucket: KvBucket) -> KeyValue:
        """The bucket over a connection of its own (another replica, bytes as stored)."""
        nc = await nats.connect(self.server.url)
        self._others.append(nc)
        return await nc.jetstream().key_value(bucket.name)

    async def close_others(self) -> None:
        for nc in self._others:
            await nc.close()

    async def stop_nats(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.server.stop)
        await wait_for(lambda: not self.link.connected, timeout=10)

    async def start_nats(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.server.start)
        await wait_for(lambda: self.link.connected, timeout=10)


@asynccontextmanager
async def rig(server: NatsServer, *specs: dict[str, Any]) -> AsyncIterator[tuple[Rig, list[KvBucket]]]:
    """Buckets as ``specs`` (KvBucket options), connected; everything closed after."""
    setup = Rig(server)
    buckets = [setup.bucket(**spec) for spec in specs]
    await setup.link.start(first_attempt_timeout=5)
    try:
        assert setup.link.connected
        yield setup, buckets
    finally:
        await setup.close_others()
        for bucket in buckets:
            await bucket.close()
        await setup.link.close()


async def stored(kv: KeyValue, key: str) -> bytes | None:
    try:
        return (await kv.get(key)).value
    except KeyNotFoundError:
        return None


def stopped(pid: int) -> bool:
    """Every thread of ``pid`` is stopped (SIGSTOP reaches them one by one)."""
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat", encoding="ascii") as stat:
            states.append(stat.read().rsplit(")", 1)[1].split()[0])
    return all(state in ("T", "t") for state in states)


@pytest.mark.gen_test(timeout=30)
async def test_versioned_reads_and_compare_and_set(nats_server: NatsServer) -> None:
    async with rig(nats_server, {}) as (setup, (bucket,)):
        other = await setup.raw(bucket)
        assert await bucket.read("k") == Versioned(None, 0)
        assert await bucket.swap("k", {"n": 1}, 0)  # created
        assert not await bucket.swap("k", {"n": 2}, 0)  # exists now
        first = await bucket.read("k")
        assert first.value == {"n": 1} and first.revision
        await other.put("k", b'{"n":"other"}')  # another replica wrote meanwhile
        assert not await bucket.swap("k", {"n": 3}, first.revision)
        again = await bucket.read("k")
        assert again.value == {"n": "other"}
        assert await bucket.swap("k", {"n": 3}, again.revision)
        assert await stored(other, "k") == b'{"n":3}'
        # A process-memory revision means nothing while NATS is up: read again.
        assert not await bucket.swap("k", {"n": 4}, None)
        # A deleted key reads as absent and is created again with revision 0.
        await other.delete("k")
        assert await bucket.read("k") == Versioned(None, 0)
        assert await bucket.swap("k", {"n": 5}, 0)
        assert await stored(other, "k") == b'{"n":5}'


@pytest.mark.gen_test(timeout=60)
async def test_a_remembering_bucket_answers_an_outage_with_what_this_process_wrote_or_read(
    own_nats: NatsServer,
) -> None:
    async with rig(own_nats, {"remember": True}, {}) as (setup, (remembers, plain)):
        other = await setup.raw(remembers)
        await remembers.put("written", {"v": 1})
        await other.put("read", b'{"v":"theirs"}')
        await other.put("unseen", b'{"v":"unseen"}')
        assert (await remembers.read("read")).value == {"v": "theirs"}
        # Online the bucket answers: a remembered copy never hides a newer value.
        await other.put("written", b'{"v":2}')
        assert (await remembers.read("written")).value == {"v": 2}
        await plain.put("written", {"v": 1})

        await setup.stop_nats()
        assert await remembers.read("written") == Versioned({"v": 2}, None)
        assert await remembers.read("read") == Versioned({"v": "theirs"}, None)
        assert await remembers.read("unseen") == Versioned(None, None)
        assert await plain.read("written") == Versioned(None, None)  # remembers nothing
        await setup.start_nats()
        assert (await remembers.read("unseen")).value == {"v": "unseen"}


@pytest.mark.parametrize("remember", [False, True])
@pytest.mark.gen_test(timeout=60)
async def test_compare_and_set_during_an_outage_is_local_only(own_nats: NatsServer, remember: bool) -> None:
    async with rig(own_nats, {"remember": remember}) as (setup, (bucket,)):
        other = await setup.raw(bucket)
        assert await bucket.swap("slots", {"v": "before"}, 0)
        before = await bucket.read("slots")

        await setup.stop_nats()
        assert not await bucket.swap("slots", {"v": "x"}, before.revision)  # read in NATS, now gone: read again
        if not remember:
            assert await bucket.read("slots") == Versioned(None, None)  # the outage counts from nothing
        assert await bucket.swap("slots", {"v": "outage"}, None)
        assert await bucket.read("slots") == Versioned({"v": "outage"}, None)
        await bucket.put("plain", {"v": "outage"})  # a plain write, for contrast: replayed
        assert bucket.backlog == 1

        await setup.start_nats()
        await wait_for(lambda: bucket.backlog == 0, timeout=10)
        assert await stored(other, "plain") == b'{"v":"outage"}'
        assert await stored(other, "slots") == b'{"v":"before"}'  # never replayed
        assert bucket.get_local("slots") is None  # dropped with the outage
        assert await bucket.read("slots") == before


@pytest.mark.gen_test(timeout=60)
async def test_deferred_edits_apply_to_the_bucket_value_when_nats_returns(own_nats: NatsServer) -> None:
    def without(item: str) -> Any:
        def edit(value: dict[str, Any] | None) -> dict[str, Any] | None:
            items = dict((value or {}).get("items", {}))
            return {"items": {k: v for k, v in items.items() if k != item}} if item in items else None

        return edit

    async with rig(own_nats, {}) as (setup, (bucket,)):
        other = await setup.raw(bucket)
        await other.put("d", b'{"items":{"a":1,"b":1,"c":1}}')
        await setup.stop_nats()
        assert await bucket.swap("d", {"items": {}}, None)  # the outage's own view of the key
        for item in ("a", "nothing", "c"):
            bucket.defer("d", without(item))
        bucket.defer("absent", without("a"))
        assert bucket.backlog == 4
        await setup.start_nats()
        await wait_for(lambda: bucket.backlog == 0, timeout=10)
        # Applied to what the bucket held, not written over it with the outage's view.
        assert orjson.loads(await stored(other, "d") or b"null") == {"items": {"b": 1}}
        assert await stored(other, "absent") is None  # nothing to change: nothing written


@pytest.mark.gen_test(timeout=60)
async def test_a_compare_and_set_failing_while_connected_is_reported(own_nats: NatsServer) -> None:
    """NATS stops answering (paused) before the link notices: the write times out. It is reported
    (KvWriteFailed: the caller retries or fails open), and the read meanwhile answers from memory."""
    async with rig(own_nats, {"remember": True}) as (setup, (bucket,)):
        await bucket.put("k", {"v": 1})
        current = await bucket.read("k")
        assert own_nats.proc is not None
        pid = own_nats.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            await wait_for(lambda: stopped(pid), timeout=5)  # every thread: kill() does not wait for that
            write, read = await asyncio.gather(
                bucket.swap("k", {"v": 2}, current.revision), bucket.read("k"), return_exceptions=True
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        assert isinstance(write, KvWriteFailed), write
        assert read == Versioned({"v": 1}, None)


@pytest.mark.gen_test(timeout=10)
async def test_the_write_queue_is_bounded_and_keeps_failed_edits_first() -> None:
    queue = WriteQueue(max_writes=2, max_edits=3)
    for key in ("a", "b", "c"):
        queue.queue(key, {"k": key})
    assert list(queue.writes) == ["b", "c"]  # the oldest went
    queue.discard("b")
    assert list(queue.writes) == ["c"]
    for key in ("x", "x", "y", "y"):
        queue.defer(key, lambda value: value)
    assert list(queue.edits) == ["y"] and len(queue) == 1 + 2  # x's edits went, whole

    applied: list[str] = []

    async def apply(key: str, edits: list[Any]) -> None:
        if key == "z":
            raise KvWriteFailed("unreadable")
        applied.append(key)

    queue.defer("z", lambda value: value)
    with pytest.raises(KvWriteFailed):
        await queue.replay_edits(apply)
    assert applied == ["y"] and list(queue.edits) == ["z"] and len(queue) == 2
