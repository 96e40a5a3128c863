"""A JetStream KV bucket of JSON values that keeps working when NATS is away.

* Connected: reads and writes go to the bucket; a *mirrored* bucket also keeps every
  entry in process memory, fed by a KV watch, so a hit costs no network round trip and
  a delete on one replica is seen by all within milliseconds.
* Disconnected: the same calls use process memory, and writes are queued (bounded) and
  replayed when NATS returns, so e.g. a logout during an outage is not forgotten.

Entries carry their own local expiry (bucket max age from the entry's store time): the
bucket's max-age expiry may produce no watch event, and a mirror must never serve
past it.

The in-process copy is bounded (``max_local`` entries; gateway/nats/local_copy.py says what
goes first when it is full, and when a miss must be confirmed with ``fetch``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from gateway.nats.link import NatsLink
from gateway.nats.local_copy import Entries, LocalCopy, Obsolete
from gateway.nats.replicas import ensure_bucket
from gateway.tasks import Backoff, stop_tasks

log = logging.getLogger("gateway.kv")

ChangeListener = Callable[[str, dict[str, Any] | None], None]
_MAX_QUEUED_WRITES = 10_000
_MAX_LOCAL_ENTRIES = 200_000


class KvBucket:
    """JSON values by key, in NATS KV when connected, in memory otherwise."""

    def __init__(
        self,
        link: NatsLink,
        name: str,
        ttl_secs: float,
        *,
        mirror: bool,
        history: int = 1,
        max_local: int = _MAX_LOCAL_ENTRIES,
        obsolete: Obsolete | None = None,
    ) -> None:
        self.name = name
        self.ttl = float(ttl_secs)
        self.mirrored = mirror
        self._copy = LocalCopy(name, self.ttl, max_local, obsolete)
        self._link = link
        self._history = history
        self._kv: KeyValue | None = None
        self._queued: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._watch_task: asyncio.Task[None] | None = None
        self._listeners: list[ChangeListener] = []
        self.mirror_synced = asyncio.Event()
        self._replay_task: asyncio.Task[None] | None = None
        link.add_setup_hook(f"kv:{name}", self._setup)
        link.add_state_listener(self._on_link_state)

    # -- lifecycle -------------------------------------------------------------------------

    async def _setup(self, link: NatsLink) -> None:
        assert link.js is not None
        kv = await ensure_bucket(link, self.name, history=self._history, ttl=self.ttl)  # NATS_REPLICAS copies
        self._kv = kv
        await self._replay_queued(kv)
        if self.mirrored:
            await self._restart_watch(kv)

    async def _replay_queued(self, kv: KeyValue) -> None:
        """Write the keys queued *now*. Writes queued meanwhile (the link is not ready until every
        hook ran) follow once it is: draining until empty never ends under load, nor would setup."""
        for key in list(self._queued):
            if key not in self._queued:
                continue  # written online meanwhile: the bucket has the newer value
            value = self._queued.pop(key)
            try:
                if value is None:
                    await kv.delete(key)
                else:
                    await kv.put(key, orjson.dumps(value))
            except BaseException:
                if key not in self._queued:
                    self._queued[key] = value
                    self._queued.move_to_end(key, last=False)
                raise
            if not self.mirrored and key not in self._queued:
                self._copy.pop(key)
        if not self.mirrored and not self._queued:
            # The outage copies are in the bucket now; a stale copy must not hide later writes.
            self._copy.clear()

    def _on_link_state(self, connected: bool) -> None:
        if connected and self._queued and self._kv is not None:
            if self._replay_task is None or self._replay_task.done():
                self._replay_task = asyncio.create_task(self._replay_rest(self._kv), name=f"kv-replay-{self.name}")

    async def _replay_rest(self, kv: KeyValue) -> None:
        """Replay until the queue is empty or NATS goes away: a write that times out just after a
        reconnect (JetStream still settling) is retried, not left queued until the next outage."""
        backoff = Backoff()
        while self._queued and self._link.connected:
            try:
                await self._replay_queued(self._kv or kv)
            except Exception as exc:
                log.warning("KV %s: queued writes not replayed yet (%s); retrying", self.name, type(exc).__name__)
                await backoff.pause()

    async def _restart_watch(self, kv: KeyValue) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
        self.mirror_synced.clear()
        watcher = await kv.watchall()
        self._watch_task = asyncio.create_task(self._consume(watcher), name=f"kv-watch-{self.name}")
        try:
            await asyncio.wait_for(asyncio.shield(self.mirror_synced.wait()), 5.0)
        except TimeoutError:
            log.warning("KV %s: initial sync slow; continuing", self.name)

    async def _consume(self, watcher: Any) -> None:
        fresh: Entries = {}
        syncing = True
        try:
            async for entry in watcher:
                if entry is None:  # end of the initial values
                    if syncing:
                        syncing = False
                        self._copy.entries = fresh
                        self.mirror_synced.set()
                    continue
                target = fresh if syncing else self._copy.entries
                if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                    target.pop(entry.key, None)
                    if not syncing:
                        self._notify(entry.key, None)
                    continue
                try:
                    value = orjson.loads(entry.value)
                except orjson.JSONDecodeError:
                    log.warning("KV %s: undecodable value ignored", self.name)
                    continue
                stored_at = entry.created.timestamp() if entry.created is not None else time.time()
                self._copy.put_into(target, entry.key, value, stored_at)
                if not syncing:
                    self._notify(entry.key, value)
        except asyncio.CancelledError:
            try:
                await watcher.stop()
            except Exception:
                pass
            raise
        except Exception as exc:  # connection lost mid-watch: setup restarts it
            log.debug("KV %s watch ended: %s", self.name, type(exc).__name__)

    async def close(self) -> None:
        """Stop the watch (the link drains the connection)."""
        if self._replay_task is not None:
            self._replay_task.cancel()
        await stop_tasks(self._watch_task)

    # -- listeners -------------------------------------------------------------------------

    def add_listener(self, listener: ChangeListener) -> None:
        """Called with (key, value-or-None) for every change seen after the initial sync."""
        self._listeners.append(listener)

    def _notify(self, key: str, value: dict[str, Any] | None) -> None:
        for listener in self._listeners:
            try:
                listener(key, value)
            except Exception:
                log.exception("KV %s listener failed", self.name)

    # -- data ------------------------------------------------------------------------------

    @property
    def _online(self) -> KeyValue | None:
        return self._kv if self._link.connected else None

    @property
    def complete(self) -> bool:
        """False while entries dropped for room (a full mirror) may still be live in the bucket."""
        return self._copy.complete

    async def fetch(self, key: str) -> dict[str, Any] | None:
        """The bucket's value, bypassing the local copy (None when absent or NATS is away)."""
        kv = self._online
        if kv is None:
            return None
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return None
        except Exception as exc:
            log.warning("KV %s get failed (%s); treating as a miss", self.name, type(exc).__name__)
            return None
        return orjson.loads(entry.value) if entry.value else None

    def get_local(self, key: str) -> dict[str, Any] | None:
        """The in-process copy (mirror or fallback), if present and not expired."""
        return self._copy.get(key)

    async def get(self, key: str) -> dict[str, Any] | None:
        """Local copy first; then the bucket (covers a watch that has not caught up yet)."""
        value = self.get_local(key)
        if value is not None:
            return value
        value = await self.fetch(key)
        if value is not None and self.mirrored:
            self._copy.remember(key, value)
        return value

    async def put(self, key: str, value: dict[str, Any]) -> None:
        """Store a value; locally at once, in the bucket now or after reconnect."""
        if self.mirrored or self._online is None:
            self._copy.remember(key, value)
        kv = self._online
        if kv is not None:
            self._queued.pop(key, None)  # before sending: an older queued value must not be replayed over it
            try:
                await kv.put(key, orjson.dumps(value))
                if not self.mirrored:
                    self._copy.pop(key)
                return
            except Exception as exc:
                log.warning("KV %s put failed (%s); queued for replay", self.name, type(exc).__name__)
                self._copy.remember(key, value)
        self._queue(key, value)

    async def create(self, key: str, value: dict[str, Any]) -> bool:
        """Store ``value`` only if ``key`` holds nothing yet; False if it does (atomic in NATS).

        Without NATS (or when the bucket fails) this process's copy decides, and the write is
        queued for the bucket like ``put``'s.
        """
        if self.get_local(key) is not None:
            return False
        kv = self._online
        if kv is not None:
            try:
                await kv.create(key, orjson.dumps(value))
            except KeyWrongLastSequenceError:
                return False
            except Exception as exc:
                log.warning("KV %s create failed (%s); decided in process memory", self.name, type(exc).__name__)
            else:
                self._copy.remember(key, value)
                return True
        self._copy.remember(key, value)
        self._queue(key, value)
        return True

    async def delete(self, key: str) -> None:
        """Remove a value everywhere; queued if NATS is away."""
        self._copy.pop(key)
        kv = self._online
        if kv is not None:
            self._queued.pop(key, None)
            try:
                await kv.delete(key)
                return
            except Exception as exc:
                log.warning("KV %s delete failed (%s); queued for replay", self.name, type(exc).__name__)
        self._queue(key, None)

    def _queue(self, key: str, value: dict[str, Any] | None) -> None:
        self._queued.pop(key, None)
        self._queued[key] = value
        while len(self._queued) > _MAX_QUEUED_WRITES:
            self._queued.popitem(last=False)
        if self._link.connected:  # failed across a reconnect (a timeout): NATS is back, replay now
            self._on_link_state(True)

    def __len__(self) -> int:
        return len(self._copy)
