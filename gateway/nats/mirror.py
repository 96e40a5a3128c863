"""A mirrored KV bucket's watch: every entry into process memory, every later change to listeners.

The initial values are collected apart and swapped in at once when the watch says they are all
there (``synced`` is set then), so a reconnect never shows a half-filled mirror.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from gateway.nats.local_copy import Entries, LocalCopy
from gateway.tasks import stop_tasks

log = logging.getLogger("gateway.kv")

ChangeListener = Callable[[str, dict[str, Any] | None], None]


class Mirror:
    """Keeps ``copy`` equal to the bucket through a KV watch, restarted on every (re)connect."""

    def __init__(self, name: str, copy: LocalCopy) -> None:
        self.name = name
        self._copy = copy
        self.synced = asyncio.Event()
        self._listeners: list[ChangeListener] = []
        self._task: asyncio.Task[None] | None = None

    def add_listener(self, listener: ChangeListener) -> None:
        """Called with (key, value-or-None) for every change seen after the initial sync."""
        self._listeners.append(listener)

    async def restart(self, kv: KeyValue) -> None:
        """Watch ``kv`` afresh; wait (briefly) for its initial values."""
        if self._task is not None:
            self._task.cancel()
        self.synced.clear()
        watcher = await kv.watchall()
        self._task = asyncio.create_task(self._follow(watcher), name=f"kv-watch-{self.name}")
        try:
            await asyncio.wait_for(asyncio.shield(self.synced.wait()), 5.0)
        except TimeoutError:
            log.warning("KV %s: initial sync slow; continuing", self.name)

    async def close(self) -> None:
        await stop_tasks(self._task)

    async def _follow(self, watcher: Any) -> None:
        fresh: Entries = {}
        syncing = True
        try:
            async for entry in watcher:
                if entry is None:  # end of the initial values
                    if syncing:
                        syncing = False
                        self._copy.entries = fresh
                        self.synced.set()
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

    def _notify(self, key: str, value: dict[str, Any] | None) -> None:
        for listener in self._listeners:
            try:
                listener(key, value)
            except Exception:
                log.exception("KV %s listener failed", self.name)
