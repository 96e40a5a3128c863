"""KV writes handed to NATS without waiting for their own ack: for a batch whose last write is acked.

An acknowledged KV write costs the gateway a request (reply inbox, timer, the ack parsed) on top of
the publish; the write-behind (gateway/live/writes.py) writes a batch of keys of one bucket at a
time. NATS keeps one connection's messages in order and the bucket's stream stores what it is
handed in that order, so when the batch's last write (acked, on the same connection) is stored,
the ones handed over before it were stored too. If that ack fails, their fate is unknown: the
caller writes each again on its own (idempotent: the same value).
"""

from __future__ import annotations

import orjson

from gateway.nats.kv import KvBucket
from gateway.nats.versioned import Value


class AheadKvBucket(KvBucket):
    """A ``KvBucket`` that can also hand a put to NATS without waiting for its ack."""

    async def put_ahead(self, key: str, value: Value) -> bool:
        """``put`` without its ack; False when not handed to NATS (away now): ``put`` it instead."""
        kv, nc = self._online, self._link.nc
        if kv is None or nc is None:
            return False
        self._queued.discard(key)  # before sending: an older queued value must not be replayed over it
        if self._keeps:
            self._copy.remember(key, value)
        try:
            await nc.publish(kv._pre + key, orjson.dumps(value))  # the subject as nats-py's KeyValue writes it
        except Exception:
            return False  # the caller writes it with an ack (queued for replay if that fails too)
        return True

    def forget_local(self, key: str) -> None:
        """Drop the key from process memory (a value the bucket holds that this process needs not answer)."""
        self._copy.pop(key)
