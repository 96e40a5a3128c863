"""At most ``GATEWAY_MAX_PENDING_PER_SESSION`` pending requests per session, on every replica.

One key per session in the requests bucket, ``by-session.<token hash>``, value
``{"requests": {request_id: reserved_at}}``. A slot is taken before the playbook starts, with a
compare-and-set on the key's revision, so concurrent executes on several replicas cannot both
take the last slot; it is given back when the start fails, and freed when the result has been
delivered (together with the pending request's deletion). Entries expire with the request TTL.
Only a session at its limit pays more: its entries are checked against the pending requests
themselves, so a release that was lost (a replica died) never locks a session out.

While NATS is away the same accounting runs in process memory (per process, like every other
piece of state then); releases made meanwhile are applied to the bucket when NATS is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from gateway.live.store import RequestStore
from gateway.nats.link import NatsLink
from gateway.tasks import stop_tasks

log = logging.getLogger("gateway.live")

SESSION_PREFIX = "by-session."
_CAS_ATTEMPTS = 10
_RESERVE_GRACE_SECS = 10.0  # a slot is taken just before its provisional request is written
_MAX_LOCAL_SESSIONS = 10_000
_MAX_DEFERRED = 100_000

Held = dict[str, float]


class SessionSlots:
    """Pending-request slots per session (see module doc); ``reserve`` is the only hot-path call."""

    def __init__(self, requests: RequestStore, link: NatsLink, ttl_secs: float, limit: int) -> None:
        self._requests = requests
        self.ttl = float(ttl_secs)
        self.limit = limit
        self._local: dict[str, Held] = {}
        # Read-modify-write per session: serialise within this process, CAS across processes.
        self._locks = [asyncio.Lock() for _ in range(64)]
        self._deferred: dict[tuple[str, str], None] = {}  # releases made while NATS was away
        self._deferred_task: asyncio.Task[None] | None = None
        link.add_state_listener(self._on_link_state)

    async def reserve(self, session: str, request_id: str) -> bool:
        """Take a slot for ``request_id``; False when the session already has ``limit`` pending."""
        async with self._lock(session):
            for _ in range(_CAS_ATTEMPTS):
                held, revision = await self._load(session)
                now = time.time()
                held = {rid: at for rid, at in held.items() if at + self.ttl > now}
                if len(held) >= self.limit:
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
        local = self._local.get(session)
        if local is not None:
            local.pop(request_id, None)
            if not local:
                del self._local[session]
        async with self._lock(session):
            for _ in range(_CAS_ATTEMPTS):
                held, revision = await self._load(session)
                if revision is None:  # the bucket may hold the slot too: free it there once NATS is back
                    self._defer(session, request_id)
                if request_id not in held:
                    return
                del held[request_id]
                if await self._store(session, held, revision):
                    return

    async def count(self, session: str) -> int:
        """Slots the session holds now (tests and diagnostics)."""
        held, _ = await self._load(session)
        now = time.time()
        return sum(1 for at in held.values() if at + self.ttl > now)

    def _defer(self, session: str, request_id: str) -> None:
        self._deferred[(session, request_id)] = None
        while len(self._deferred) > _MAX_DEFERRED:
            del self._deferred[next(iter(self._deferred))]
        if self._requests.cas is not None:  # the read failed across a reconnect: NATS is already back
            self._start_deferred()

    def _on_link_state(self, connected: bool) -> None:
        if connected:
            self._local.clear()  # the outage's own accounting ends with it: the bucket counts again
            self._start_deferred()

    def _start_deferred(self) -> None:
        if self._deferred and (self._deferred_task is None or self._deferred_task.done()):
            self._deferred_task = asyncio.create_task(self._release_deferred(), name="slots-deferred")

    async def _release_deferred(self) -> None:
        while self._deferred and self._requests.cas is not None:
            session, request_id = next(iter(self._deferred))
            del self._deferred[(session, request_id)]
            await self.release(session, request_id)

    async def close(self) -> None:
        """Stop releasing deferred slots (any left expire with the request TTL)."""
        await stop_tasks(self._deferred_task)

    # -- storage ---------------------------------------------------------------------------

    def _lock(self, session: str) -> asyncio.Lock:
        return self._locks[hash(session) % len(self._locks)]

    async def _load(self, session: str) -> tuple[Held, int | None]:
        """The session's slots and the key's revision (0: no key; None: NATS away, process memory)."""
        kv = self._requests.cas
        if kv is not None:
            try:
                entry = await kv.get(SESSION_PREFIX + session)
            except KeyNotFoundError:
                return {}, 0
            except Exception as exc:
                log.warning("pending-request slots unreadable (%s); counting in process", type(exc).__name__)
            else:
                return _decode(entry.value), entry.revision
        return dict(self._local.get(session, {})), None

    async def _store(self, session: str, held: Held, revision: int | None) -> bool:
        """Write if nobody else did since ``_load``; False means: load again."""
        kv = self._requests.cas
        if revision is None and kv is not None:
            return False  # NATS came back since the load: count in the bucket again
        if revision is not None and kv is not None:
            payload = orjson.dumps({"requests": held})
            key = SESSION_PREFIX + session
            try:
                if revision == 0:
                    await kv.create(key, payload)
                else:
                    await kv.update(key, payload, last=revision)
                return True
            except KeyWrongLastSequenceError:
                return False
            except Exception as exc:
                # NATS is up but this write failed (a timeout while JetStream settles): the slot is not
                # counted (fail-open). Refusing the start for a transient error would hurt a user, and a
                # count kept in process would outlive the error (it is cleared only on a reconnect).
                log.warning("pending-request slots not written (%s); this slot is not counted", type(exc).__name__)
                return True
        self._store_local(session, held)
        return True

    def _store_local(self, session: str, held: Held) -> None:
        if not held:
            self._local.pop(session, None)
            return
        if session not in self._local and len(self._local) >= _MAX_LOCAL_SESSIONS:
            now = time.time()
            for key in [k for k, v in self._local.items() if all(at + self.ttl <= now for at in v.values())]:
                del self._local[key]
            if len(self._local) >= _MAX_LOCAL_SESSIONS:
                self._local.pop(next(iter(self._local)))
        self._local[session] = held

    async def _still_pending(self, held: Held, now: float) -> Held:
        """Drop slots whose request no longer exists (delivered, expired, or its release was lost)."""
        ids = list(held)
        records = await asyncio.gather(*(self._requests.get(rid) for rid in ids))
        return {
            rid: held[rid]
            for rid, record in zip(ids, records, strict=True)
            if record is not None or now - held[rid] < _RESERVE_GRACE_SECS
        }


def _decode(raw: bytes | None) -> Held:
    try:
        value: Any = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    requests = value.get("requests") if isinstance(value, dict) else None
    if not isinstance(requests, dict):
        return {}
    return {str(rid): float(at) for rid, at in requests.items() if isinstance(at, int | float)}
