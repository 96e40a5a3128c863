"""At most ``GATEWAY_MAX_PENDING_PER_SESSION`` pending requests per session, on every replica.

One key per session in the requests bucket, ``by-session.<token hash>``, value
``{"requests": {request_id: reserved_at}}``. A slot is taken before the playbook starts, with a
compare-and-set on the key's revision, so concurrent executes on several replicas cannot both
take the last slot; it is given back when the start fails, and freed when the result has been
delivered (together with the pending request's deletion). Entries expire with the request TTL.
Only a session at its limit pays more: its entries are checked against the pending requests
themselves, so a release that was lost (a replica died) never locks a session out.

While NATS is away the same accounting runs in process memory (per process, like every other
piece of state then, and from zero: the slots' view of the bucket remembers nothing from before),
and is dropped when NATS returns; releases made meanwhile are deferred to the bucket
(``KvBucket.defer``), applied with compare-and-set when NATS is back.

The same mechanism counts other per-session things under another key ``prefix``: GraphQL
subscriptions (gateway/live/subscribers.py). Their holder stamps its entries again every so often
(``refresh``) and an entry counts ``hold_secs`` after its last stamp, so a replica that dies leaves
entries that expire; ``confirm=False``: at the limit there is nothing else to check them against.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from functools import partial
from typing import Any

from gateway.live.store import RequestStore
from gateway.nats.kv import KvBucket, KvWriteFailed
from gateway.nats.link import NatsLink

log = logging.getLogger("gateway.live")

SESSION_PREFIX = "by-session."
_CAS_ATTEMPTS = 10
_RESERVE_GRACE_SECS = 10.0  # a slot is taken just before its provisional request is written
_MAX_LOCAL_SESSIONS = 10_000

Held = dict[str, float]


class SessionSlots:
    """Pending-request slots per session (see module doc); ``reserve`` is the only hot-path call."""

    def __init__(
        self,
        requests: RequestStore,
        link: NatsLink,
        ttl_secs: float,
        limit: int,
        *,
        prefix: str = SESSION_PREFIX,
        hold_secs: float | None = None,
        confirm: bool = True,
    ) -> None:
        self._requests = requests
        self._link = link
        self.ttl = float(ttl_secs)
        self.limit = limit
        self.prefix = prefix
        self.hold = self.ttl if hold_secs is None else float(hold_secs)  # an entry counts this long after its stamp
        self._confirm = confirm  # at the limit, drop entries whose pending request is gone
        # The requests' bucket, seen with nothing remembered: an outage's count starts empty.
        self.bucket = KvBucket(
            link,
            requests.bucket.name,
            ttl_secs,
            mirror=False,
            max_local=_MAX_LOCAL_SESSIONS,
            obsolete=self._all_expired,
        )
        # Read-modify-write per session: serialise within this process, CAS across processes.
        self._locks = [asyncio.Lock() for _ in range(64)]

    def sibling(self, prefix: str, limit: int, *, hold_secs: float, confirm: bool) -> SessionSlots:
        """Slots of something else per session: the same bucket and link, keys under ``prefix``."""
        return SessionSlots(
            self._requests, self._link, self.ttl, limit, prefix=prefix, hold_secs=hold_secs, confirm=confirm
        )

    async def reserve(self, session: str, request_id: str) -> bool:
        """Take a slot for ``request_id``; False when the session already has ``limit`` pending."""
        async with self._lock(session):
            for _ in range(_CAS_ATTEMPTS):
                held, revision = await self._load(session)
                if revision is None and self._link.connected:
                    # The read failed although NATS looks up (a node hung or failing over): like a
                    # failed write, the slot is not counted (fail-open) rather than retried into a stall.
                    log.warning("pending-request slots unreadable while NATS is up; this slot is not counted")
                    return True
                now = time.time()
                held = {rid: at for rid, at in held.items() if at + self.hold > now}
                if len(held) >= self.limit and self._confirm:
                    held = await self._still_pending(held, now)
                if len(held) >= self.limit:
                    return False
                held[request_id] = now
                if await self._store(session, held, revision):
                    return True
        log.warning("pending-request slots of a session stayed contended; refusing one execute")
        return False

    async def release(self, session: str, request_id: str) -> None:
        """Give the slot back (result delivered, or the start failed)."""
        async with self._lock(session):
            for _ in range(_CAS_ATTEMPTS):
                held, revision = await self._load(session)
                if revision is None:  # the bucket may hold the slot too: free it there once NATS is back
                    self.bucket.defer(self.prefix + session, partial(_without, request_id))
                if request_id not in held:
                    return
                del held[request_id]
                if await self._store(session, held, revision):
                    return

    async def refresh(self, session: str, ids: Collection[str]) -> None:
        """Stamp the session's slots ``ids`` as alive now, dropping expired entries; a failure waits
        for the next refresh. ``ids`` is read when the write is made: pass the holder's live
        collection, so a slot released meanwhile is not stamped back."""
        async with self._lock(session):
            for _ in range(_CAS_ATTEMPTS):
                held, revision = await self._load(session)
                if revision is None and self._link.connected:
                    return
                now = time.time()
                held = {rid: at for rid, at in held.items() if at + self.hold > now}
                held.update(dict.fromkeys(ids, now))
                try:
                    if await self.bucket.swap(self.prefix + session, {"requests": held}, revision):
                        return
                except KvWriteFailed:
                    return

    async def count(self, session: str) -> int:
        """Slots the session holds now (tests and diagnostics)."""
        held, _ = await self._load(session)
        now = time.time()
        return sum(1 for at in held.values() if at + self.hold > now)

    async def close(self) -> None:
        """Stop replaying deferred releases (any left expire with the request TTL)."""
        await self.bucket.close()

    # -- storage ---------------------------------------------------------------------------

    def _lock(self, session: str) -> asyncio.Lock:
        return self._locks[hash(session) % len(self._locks)]

    async def _load(self, session: str) -> tuple[Held, int | None]:
        """The session's slots and the key's revision (0: no key; None: NATS away, process memory)."""
        current = await self.bucket.read(self.prefix + session)
        return _decode(current.value), current.revision

    async def _store(self, session: str, held: Held, revision: int | None) -> bool:
        """Write if nobody else did since ``_load``; False means: load again."""
        try:
            return await self.bucket.swap(self.prefix + session, {"requests": held}, revision)
        except KvWriteFailed as exc:
            # NATS is up but this write failed (a timeout while JetStream settles): the slot is not
            # counted (fail-open). Refusing the start for a transient error would hurt a user, and a
            # count kept in process would outlive the error (it is dropped only on a reconnect).
            log.warning("pending-request slots not written (%s); this slot is not counted", exc)
            return True

    def _all_expired(self, value: dict[str, Any], now: float) -> bool:
        """A session whose slots have all expired carries no information (the first to go when full)."""
        return all(at + self.hold <= now for at in _decode(value).values())

    async def _still_pending(self, held: Held, now: float) -> Held:
        """Drop slots whose request no longer exists (delivered, expired, or its release was lost)."""
        ids = list(held)
        records = await asyncio.gather(*(self._requests.get(rid) for rid in ids))
        return {
            rid: held[rid]
            for rid, record in zip(ids, records, strict=True)
            if record is not None or now - held[rid] < _RESERVE_GRACE_SECS
        }


def _decode(value: dict[str, Any] | None) -> Held:
    requests = value.get("requests") if value is not None else None
    if not isinstance(requests, dict):
        return {}
    return {str(rid): float(at) for rid, at in requests.items() if isinstance(at, int | float)}


def _without(request_id: str, value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A deferred release: the bucket's slots without ``request_id`` (None: it holds no such slot)."""
    held = _decode(value)
    if request_id not in held:
        return None
    del held[request_id]
    return {"requests": held}
