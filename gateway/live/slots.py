"""At most ``GATEWAY_MAX_PENDING_PER_SESSION`` pending requests per session, on every replica.

One key per session in the requests bucket, ``by-session.<token hash>``, value
``{"requests": {request_id: reserved_at}}``. A slot is taken before the playbook starts, with a
compare-and-set on the key's revision, so concurrent executes on several replicas cannot both
take the last slot; it is given back when the start fails, and freed when the result has been
delivered (together with the pending request's deletion). Entries expire with the request TTL.
Only a session at its limit pays more: its entries are checked against the pending requests
themselves, so a release that was lost (a replica died) never locks a session out. Each process
remembers the value and revision it last wrote for a session, and its next compare-and-set starts
from them without a read (one replica serving a session: reserve and release are one write each);
if another replica wrote since, the compare-and-set fails and the key is read as before.

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
        # Each session's slots as this process last wrote them, and the key's revision then: the next
        # compare-and-set starts from it without a read (it fails if anyone wrote since: then a read).
        self._written: dict[str, tuple[Held, int]] = {}
        link.add_state_listener(lambda _connected: self._written.clear())  # a bucket after an outage: read it

    def sibling(self, prefix: str, limit: int, *, hold_secs: float, confirm: bool) -> SessionSlots:
        """Slots of something else per session: the same bucket and link, keys under ``prefix``."""
        return SessionSlots(
            self._requests, self._link, self.ttl, limit, prefix=prefix, hold_secs=hold_secs, confirm=confirm
        )

    async def reserve(self, session: str, request_id: str) -> bool:
        """Take a slot for ``request_id``; False when the session already has ``limit`` pending."""
        async with self._lock(session):
            for attempt in range(_CAS_ATTEMPTS):
                remembered = attempt == 0 and session in self._written
                held, revision = await self._load(session, remembered)
                if revision is None and self._link.connected:
                    # The read failed although NATS looks up (a node hung or failing over): like a
                    # failed write, the slot is not counted (fail-open) rather than retried into a stall.
                    log.warning("%s slots unreadable while NATS is up; this slot is not counted", self.prefix)
                    return True
                now = time.time()
                held = {rid: at for rid, at in held.items() if at + self.hold > now}
                if len(held) >= self.limit and self._confirm:
                    held = await self._still_pending(held, now)
                if len(held) >= self.limit:
                    if remembered:  # another replica may have freed some since this process wrote: ask the bucket
                        continue
                    return False
                held[request_id] = now
                if await self._store(session, held, revision):
                    return True
        log.warning("%s slots of a session stayed contended; refusing one", self.prefix)
        return False

    async def release(self, session: str, *request_ids: str) -> None:
        """Give the slots back (results delivered, or the start failed): one read and one
        compare-and-set for all of a session's (the write-behind frees a batch at once)."""
        async with self._lock(session):
            for attempt in range(_CAS_ATTEMPTS):
                remembered = attempt == 0 and session in self._written
                held, revision = await self._load(session, remembered)
                if revision is None:  # the bucket may hold the slots too: free them there once NATS is back
                    self.bucket.defer(self.prefix + session, partial(_without, request_ids))
                freed = [request_id for request_id in request_ids if request_id in held]
                if not freed:
                    if remembered:  # another replica may have taken them meanwhile: ask the bucket
                        continue
                    return
                for request_id in freed:
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
                if await self._store(session, held, revision):
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

    async def _load(self, session: str, as_written: bool = False) -> tuple[Held, int | None]:
        """The session's slots and the key's revision (0: no key; None: NATS away, process memory);
        ``as_written``: what this process last wrote, if it remembers it, instead of a read."""
        written = self._written.get(session) if as_written else None
        if written is not None:
            return dict(written[0]), written[1]
        current = await self.bucket.read(self.prefix + session)
        return _decode(current.value), current.revision

    async def _store(self, session: str, held: Held, revision: int | None) -> bool:
        """Write if nobody else did since ``_load``; False means: load again."""
        self._written.pop(session, None)
        try:
            stored = await self.bucket.swap_versioned(self.prefix + session, {"requests": held}, revision)
        except KvWriteFailed as exc:
            # NATS is up but this write failed (a timeout while JetStream settles): the slot is not
            # counted (fail-open). Refusing the start for a transient error would hurt a user, and a
            # count kept in process would outlive the error (it is dropped only on a reconnect).
            log.warning("%s slots not written (%s); this slot is not counted", self.prefix, exc)
            return True
        if stored is None:
            return False
        if stored.revision is not None:  # in the bucket (not process memory during an outage)
            self._written[session] = (held, stored.revision)
            if len(self._written) > _MAX_LOCAL_SESSIONS:
                del self._written[next(iter(self._written))]
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


def _without(request_ids: tuple[str, ...], value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A deferred release: the bucket's slots without ``request_ids`` (None: it holds none of them)."""
    held = _decode(value)
    freed = [request_id for request_id in request_ids if request_id in held]
    if not freed:
        return None
    for request_id in freed:
        del held[request_id]
    return {"requests": held}
