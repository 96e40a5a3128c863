"""Idempotency: one execution per delivery id, whichever replica the redelivery reaches.

The window is a NATS KV bucket (``NATS_INGRESS_BUCKET``, max age
``GATEWAY_INGRESS_IDEMPOTENCY_SECS``), used through ``KvBucket``'s ``create``/``get``/``put`` only.
The key is a hash of (listener, delivery id). The first delivery *claims* it with an atomic
``create`` (``starting``), starts the playbook, and records ``started`` with the execution id;
a redelivery finds that record and answers with the same id. A start that failed is recorded
``failed`` and the next redelivery claims attempt 2 under ``{key}.2`` (atomically again, so
two concurrent retries still start one execution), and so on; a claimant that died mid-start is
taken over once its claim is older than the NoETL timeout. A redelivery that arrives while the
first is still starting waits for it a little, then is told to retry (409).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from gateway.ingress.rejections import IngressRejected
from gateway.nats.kv import KvBucket

MAX_ATTEMPTS = 20
WAIT_FOR_OTHER_SECS = 5.0
POLL_SECS = 0.05


@dataclass(frozen=True, slots=True)
class Claim:
    """This process may start the delivery's execution (attempt ``attempt`` under ``key``)."""

    base: str
    key: str
    attempt: int


class DeliveryLedger:
    """``claim`` → ``Claim`` (start it) or the execution id an earlier delivery started."""

    def __init__(self, bucket: KvBucket, claim_secs: float) -> None:
        self.bucket = bucket
        self.claim_secs = claim_secs

    async def claim(self, listener: str, delivery_id: str) -> Claim | str:
        """A claim on this delivery, or the id of the execution it already started."""
        base = hashlib.sha256(f"{listener}\n{delivery_id}".encode()).hexdigest()
        attempt = 1
        deadline = time.monotonic() + WAIT_FOR_OTHER_SECS
        while attempt <= MAX_ATTEMPTS:
            key = base if attempt == 1 else f"{base}.{attempt}"
            if await self.bucket.create(key, {"state": "starting", "until": time.time() + self.claim_secs}):
                return Claim(base, key, attempt)
            record = await self.bucket.get(key)
            state = _state(record)
            if state == "started":
                assert record is not None
                return str(record["execution_id"])
            if state == "failed" or (state == "starting" and _claim_expired(record)):
                attempt += 1
                continue
            if time.monotonic() >= deadline:  # another replica is starting it right now
                raise IngressRejected(409, "in_progress", "This delivery is being started; retry later", retry_after=5)
            await asyncio.sleep(POLL_SECS)  # a record that vanished (expired) or is still starting: look again
        raise IngressRejected(503, "too_many_attempts", "This delivery failed too often; retry later", retry_after=60)

    async def settle(self, claim: Claim, execution_id: str) -> None:
        """Record the execution; later attempts and the first key both name it."""
        record = {"state": "started", "execution_id": execution_id}
        await self.bucket.put(claim.key, record)
        if claim.key != claim.base:
            await self.bucket.put(claim.base, record)  # redeliveries find it in one read

    async def release(self, claim: Claim) -> None:
        """The start failed: the next redelivery may try again (as the next attempt)."""
        await self.bucket.put(claim.key, {"state": "failed"})


def _state(record: dict[str, Any] | None) -> str | None:
    if record is None:
        return None
    state = record.get("state")
    if state == "started" and record.get("execution_id") is not None:
        return "started"
    return state if state in ("starting", "failed") else "failed"


def _claim_expired(record: dict[str, Any] | None) -> bool:
    until = record.get("until") if record else None
    return not isinstance(until, int | float) or until < time.time()
