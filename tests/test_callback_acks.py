"""The ack inbox (gateway/nats/acks.py) answers as nats-py's JetStream calls do (issue 19, callbacks).

The result callback's acknowledged writes (the spend, the result's publish, the slots'
compare-and-set) wait for their acks on one inbox subscription per connection instead of a
``request()`` each. Pinned against a real nats-server: the revisions, the compare-and-set and
create refusals (a deleted key can be created again, as with nats-py), the duplicate of a
``Nats-Msg-Id``, no stream behind a subject, and an ack that never comes.
"""

from __future__ import annotations

import uuid

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import InvalidKeyError, KeyWrongLastSequenceError, NoStreamResponseError

from gateway.nats.acks import ack_inbox, kv_write
from tests.support.nats_server import NatsServer
from tests.support.waiting import wait_for


@pytest.mark.gen_test
async def test_kv_writes_give_revisions_and_refuse_like_nats_py(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        kv = await nc.jetstream().create_key_value(bucket=f"acks-{uuid.uuid4().hex[:8]}")
        first = await kv_write(nc, kv, "k", b"1", 0)
        assert (await kv.get("k")).revision == first
        with pytest.raises(KeyWrongLastSequenceError):
            await kv_write(nc, kv, "k", b"2", 0)  # create: the key holds a value
        with pytest.raises(KeyWrongLastSequenceError):
            await kv_write(nc, kv, "k", b"2", first + 100)  # compare-and-set against another revision
        second = await kv_write(nc, kv, "k", b"2", first)
        assert second > first and (await kv.get("k")).value == b"2"
        await kv.delete("k")
        third = await kv_write(nc, kv, "k", b"3", 0)  # a deleted key is created again (its tombstone)
        assert (await kv.get("k")).value == b"3" and third > second
        for key in ("a b", "a.*", "a.>", ".a"):  # not a key: nats-py's own path refuses it
            with pytest.raises(InvalidKeyError):
                await kv_write(nc, kv, key, b"x", 0)
    finally:
        await nc.close()


@pytest.mark.gen_test
async def test_stream_publishes_ack_deduplicate_and_fail_like_nats_py(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        subject = f"acks{uuid.uuid4().hex[:8]}"
        await nc.jetstream().add_stream(name=subject.upper(), subjects=[f"{subject}.*"])
        inbox = ack_inbox(nc)
        assert ack_inbox(nc) is inbox  # one per connection
        headers = {"Nats-Msg-Id": "result:1"}
        first = await inbox.publish(f"{subject}.a", b"x", headers, 2.0)
        again = await inbox.publish(f"{subject}.a", b"x", headers, 2.0)
        assert again["seq"] == first["seq"] and again.get("duplicate") is True
        with pytest.raises(NoStreamResponseError):
            await inbox.publish(f"nostream{uuid.uuid4().hex[:8]}", b"x", None, 2.0)
        silent = f"silent{uuid.uuid4().hex[:8]}"
        await nc.subscribe(silent)  # a subscriber that never answers: the ack never comes
        with pytest.raises(NatsTimeout):
            await inbox.publish(silent, b"x", None, 0.2)
        assert not inbox._waiting  # nothing left behind by the answered, refused or timed-out calls
        await wait_for(lambda: not inbox._sweeping)  # and no timer runs once nothing waits
    finally:
        await nc.close()
