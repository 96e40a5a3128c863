"""A JetStream KV bucket of JSON values that keeps working when NATS is away: the one place that knows how.

Process memory (one bounded LocalCopy per bucket; an entry expires the bucket's max age after it was
stored, or read here when the bucket does not say, as expiry may produce no watch event) holds:

* ``mirror``: every entry, fed by a KV watch, so a hit costs no network round trip and a delete on
  one replica is seen by all within milliseconds;
* ``remember``: what this process wrote or read, answered only while NATS is away or a read fails
  (the live stores: a single process keeps working through an outage, CONTRACT §1);
* neither: only what was written while NATS was away, until it is replayed.

Writes while NATS is away (or failing):

* ``put``/``create``/``delete``: in memory at once, queued (bounded) and replayed when NATS returns,
  so e.g. a logout during an outage is not forgotten (gateway/nats/write_queue.py);
* ``swap`` (compare-and-set): decided in process memory and *local-only*: never replayed (its
  comparison meant nothing for the bucket) and dropped when NATS returns. A change the bucket must
  still see is ``defer``red: applied with compare-and-set to the bucket's value once NATS is back.

Versioned reads: ``read`` gives the value and the key's revision (0: no key), or revision None when
the answer came from process memory; a ``swap`` only succeeds against the same source it read.
"""

from __future__ import annotations

import logging

import orjson
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from gateway.nats.acks import kv_write
from gateway.nats.link import NatsLink
from gateway.nats.local_copy import LocalCopy, Obsolete
from gateway.nats.mirror import ChangeListener, Mirror
from gateway.nats.replicas import ensure_bucket
from gateway.nats.versioned import Edit, KvWriteFailed, Value, Versioned, apply_edits, decode
from gateway.nats.write_queue import WriteQueue
from gateway.tracing import kv_operations

log = logging.getLogger("gateway.kv")

_MAX_QUEUED_WRITES = 10_000
_MAX_DEFERRED_EDITS = 100_000
_MAX_LOCAL_ENTRIES = 200_000
_CAS_ATTEMPTS = 10


@kv_operations("read", "fetch", "put", "create", "swap_versioned", "delete")  # a span each inside a traced request
class KvBucket:
    """JSON values by key, in NATS KV when connected, in process memory otherwise (see module doc)."""

    def __init__(
        self,
        link: NatsLink,
        name: str,
        ttl_secs: float,
        *,
        mirror: bool,
        remember: bool = False,
        history: int = 1,
        max_local: int = _MAX_LOCAL_ENTRIES,
        obsolete: Obsolete | None = None,
    ) -> None:
        self.name = name
        self.ttl = float(ttl_secs)
        self.mirrored = mirror
        self._keeps = mirror or remember  # the copy outlives a replay and answers a failed read
        self._copy = LocalCopy(name, self.ttl, max_local, obsolete)
        self._link = link
        self._history = history
        self._kv: KeyValue | None = None
        self._queued = WriteQueue(_MAX_QUEUED_WRITES, _MAX_DEFERRED_EDITS)
        self._local_only: dict[str, None] = {}  # keys swapped while NATS was away
        self._mirror = Mirror(name, self._copy)
        link.add_setup_hook(f"kv:{name}", self._setup)
        link.add_state_listener(self._on_link_state)

    # -- lifecycle -------------------------------------------------------------------------

    async def _setup(self, link: NatsLink) -> None:
        assert link.js is not None
        kv = await ensure_bucket(link, self.name, history=self._history, ttl=self.ttl)  # NATS_REPLICAS copies
        self._kv = kv
        await self._replay_writes(kv)
        if self.mirrored:
            await self._mirror.restart(kv)

    async def _replay_writes(self, kv: KeyValue) -> None:
        async def write(key: str, value: Value | None) -> None:
            if value is None:
                await kv.delete(key)
            else:
                await kv.put(key, orjson.dumps(value))
            if not self._keeps and key not in self._queued.writes:
                self._copy.pop(key)

        await self._queued.replay_writes(write)
        if not self._keeps and not self._queued.writes:
            # The outage copies are in the bucket now; a stale copy must not hide later writes.
            self._copy.clear()

    def _on_link_state(self, connected: bool) -> None:
        if not connected:
            return
        if not self.mirrored:  # the outage's own decisions end with it (a mirror was rebuilt by its watch)
            for key in self._local_only:
                self._copy.pop(key)
        self._local_only.clear()
        self._start_replay()

    def _start_replay(self) -> None:
        if self._kv is not None:
            self._queued.start_replay(self.name, self._replay_all, lambda: self._link.connected)

    async def _replay_all(self) -> None:
        assert self._kv is not None
        await self._replay_writes(self._kv)
        await self._queued.replay_edits(self._apply_edits)

    async def _apply_edits(self, key: str, edits: list[Edit]) -> None:
        if not await apply_edits(self.read, self.swap, key, edits, _CAS_ATTEMPTS):
            log.warning("KV %s: deferred edits of a contended key dropped", self.name)

    async def close(self) -> None:
        """Stop the watch and the replay (the link drains the connection)."""
        await self._queued.close()
        await self._mirror.close()

    def add_listener(self, listener: ChangeListener) -> None:
        """A mirror's listener: called with (key, value-or-None) for every change after the initial sync."""
        self._mirror.add_listener(listener)

    # -- reads -----------------------------------------------------------------------------

    @property
    def _online(self) -> KeyValue | None:
        return self._kv if self._link.connected else None

    @property
    def complete(self) -> bool:
        """False while entries dropped for room (a full mirror) may still be live in the bucket."""
        return self._copy.complete

    @property
    def backlog(self) -> int:
        """Writes and edits not in the bucket yet (made while NATS was away, or failed)."""
        return len(self._queued)

    async def _lookup(self, kv: KeyValue, key: str, *, keep: bool) -> Versioned | None:
        """The bucket's entry for ``key`` (kept in the copy if ``keep``); None when the read failed,
        which is not a miss."""
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:  # never written, deleted, or purged
            return Versioned(None, 0)
        except Exception as exc:
            log.warning("KV %s get failed (%s); answering from process memory", self.name, type(exc).__name__)
            return None
        value = decode(entry.value)
        if value is not None and keep:
            self._copy.remember(key, value)  # from now: a get does not tell the entry's store time
        return Versioned(value, entry.revision)

    async def read(self, key: str) -> Versioned:
        """The bucket's value and revision; process memory's (revision None) while NATS is away, when
        the read fails (a callback answered 404 then would lose its result), or while a write made
        during an outage is not replayed yet."""
        kv = self._online
        if kv is not None:
            if key in self._queued.writes:
                return Versioned(self._queued.writes[key], None)
            found = await self._lookup(kv, key, keep=self._keeps)
            if found is not None:
                return found
        return Versioned(self._copy.get(key), None)

    async def fetch(self, key: str) -> Value | None:
        """The bucket's value, bypassing process memory (None when absent or NATS is away)."""
        kv = self._online
        found = await self._lookup(kv, key, keep=False) if kv is not None else None
        return found.value if found is not None else None

    def get_local(self, key: str) -> Value | None:
        """The in-process copy (mirror, remembered, or written during an outage), if not expired."""
        return self._copy.get(key)

    async def get(self, key: str) -> Value | None:
        """A mirror's copy first (the watch may not have caught up: then the bucket); else ``read``."""
        if self.mirrored:
            value = self.get_local(key)
            if value is not None:
                return value
        return (await self.read(key)).value

    async def put(self, key: str, value: Value) -> bool:
        """Store a value: locally at once, in the bucket now or after reconnect. False: it waits here for NATS."""
        if self._keeps or self._online is None:
            self._copy.remember(key, value)
        kv = self._online
        if kv is not None:
            self._queued.discard(key)  # before sending: an older queued value must not be replayed over it
            try:
                await kv.put(key, orjson.dumps(value))
                if not self._keeps:
                    self._copy.pop(key)
                return True
            except Exception as exc:
                log.warning("KV %s put failed (%s); queued for replay", self.name, type(exc).__name__)
                self._copy.remember(key, value)
        self._queue(key, value)
        return not self._link.enabled

    async def create(self, key: str, value: Value) -> bool:
        """Store ``value`` only if ``key`` holds nothing yet; False if it does (atomic in NATS).

        The copy is asked first (a mirror's answers without a round trip). Without NATS (or when
        the bucket fails) this process's copy decides, and the write is queued like ``put``'s.
        """
        if self.get_local(key) is not None:
            return False
        kv = self._online
        if kv is not None:
            try:
                await kv_write(self._link.nc, kv, key, orjson.dumps(value), 0)
            except KeyWrongLastSequenceError:
                return False
            except Exception as exc:
                log.warning("KV %s create failed (%s); decided in process memory", self.name, type(exc).__name__)
                kv = None
        self._copy.remember(key, value)
        if kv is None:
            self._queue(key, value)
        return True

    async def swap(self, key: str, value: Value, revision: int | None) -> bool:
        """Compare-and-set: store ``value`` if ``key`` is still at ``revision`` (0: absent) — atomic
        across replicas. False: changed meanwhile, or NATS came or went since the read; read again.

        Raises KvWriteFailed when NATS is up and the write failed. While NATS is away (``revision``
        None) process memory decides, local-only: not replayed, dropped when NATS returns
        (the caller serialises its read-modify-write within the process).
        """
        return await self.swap_versioned(key, value, revision) is not None

    async def swap_versioned(self, key: str, value: Value, revision: int | None) -> Versioned | None:
        """``swap`` that answers what it wrote as a ``read`` would now (the key's new revision, or
        None for process memory), so the writer's next compare-and-set needs no read; None: not written."""
        kv = self._online
        if kv is None or revision is None:
            if kv is not None or revision is not None:
                return None
            self._copy.remember(key, value)
            self._local_only[key] = None
            if len(self._local_only) > self._copy.max_entries:  # evicted from the copy by now anyway
                del self._local_only[next(iter(self._local_only))]
            return Versioned(value, None)
        payload = orjson.dumps(value)
        try:
            written = await kv_write(self._link.nc, kv, key, payload, revision)  # gateway/nats/acks.py: create if 0
        except KeyWrongLastSequenceError:
            return None
        except Exception as exc:
            raise KvWriteFailed(type(exc).__name__) from exc
        self._queued.discard(key)
        if self._keeps:
            self._copy.remember(key, value)
        return Versioned(value, int(written))

    def defer(self, key: str, edit: Edit) -> None:
        """Apply ``edit`` to the bucket's value of ``key`` with compare-and-set once NATS is back (or
        now, if it is: the read that needed this failed across a reconnect); retried while NATS is up."""
        self._queued.defer(key, edit)
        if self._link.connected:
            self._start_replay()

    async def delete(self, key: str) -> bool:
        """Remove a value everywhere; queued if NATS is away. True: the bucket acknowledged it."""
        self._copy.pop(key)
        kv = self._online
        if kv is not None:
            self._queued.discard(key)
            try:
                await kv.delete(key)
                return True
            except Exception as exc:
                log.warning("KV %s delete failed (%s); queued for replay", self.name, type(exc).__name__)
        self._queue(key, None)
        return False

    def _queue(self, key: str, value: Value | None) -> None:
        self._queued.queue(key, value)
        if self._link.connected:  # failed across a reconnect (a timeout): NATS is back, replay now
            self._start_replay()

    def __len__(self) -> int:
        return len(self._copy)
