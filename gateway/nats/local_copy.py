"""The in-process copy of a KV bucket: values with their own expiry, bounded in size.

A mirror (fed by the KV watch) or an outage fallback keeps every entry here. It is bounded
(``max_entries``): when full, entries that carry no information go first (expired here, or
``obsolete`` by the owner's rule); if that is not enough the oldest go, and until the last of
them would have expired anyway the copy is *incomplete* (``complete`` is False), so a caller for
whom a miss means something (a revocation) confirms it in the bucket. A full copy costs a
network read, never a forgotten entry.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("gateway.kv")

Obsolete = Callable[[dict[str, Any], float], bool]  # (value, now) -> the entry no longer matters
Entries = dict[str, tuple[dict[str, Any], float]]  # key -> (value, expires at, epoch seconds)


class LocalCopy:
    """Key → (value, expiry) in process memory, at most ``max_entries`` of them."""

    def __init__(self, name: str, ttl_secs: float, max_entries: int, obsolete: Obsolete | None = None) -> None:
        self.name = name
        self.ttl = ttl_secs
        self.max_entries = max(1, max_entries)
        self.entries: Entries = {}
        self._obsolete = obsolete
        self._incomplete_until = 0.0  # entries dropped for room would have expired by then

    @property
    def complete(self) -> bool:
        """False while entries dropped for room may still be live in the bucket."""
        return time.time() >= self._incomplete_until

    def get(self, key: str) -> dict[str, Any] | None:
        """The value, if present and not expired."""
        item = self.entries.get(key)
        if item is None:
            return None
        value, expires = item
        if expires <= time.time():
            self.entries.pop(key, None)
            return None
        return value

    def remember(self, key: str, value: dict[str, Any], stored_at: float | None = None) -> None:
        """Keep a value until ``stored_at`` (now by default) + the bucket's max age."""
        self.put_into(self.entries, key, value, stored_at)

    def put_into(self, target: Entries, key: str, value: dict[str, Any], stored_at: float | None = None) -> None:
        """``remember`` into ``target`` (the copy being rebuilt while a watch syncs), bounded too."""
        if key not in target:
            self._make_room(target)
        target[key] = (value, (time.time() if stored_at is None else stored_at) + self.ttl)

    def pop(self, key: str) -> None:
        self.entries.pop(key, None)

    def clear(self) -> None:
        self.entries.clear()

    def _make_room(self, target: Entries) -> None:
        """Keep ``target`` under ``max_entries``: drop what carries no information, then the oldest.

        One scan frees at least a tenth of the room (the oldest go if need be), so a full copy
        scans once per tenth of its size, not once per entry.
        """
        if len(target) < self.max_entries:
            return
        now = time.time()
        obsolete = self._obsolete
        for key in [k for k, (v, exp) in target.items() if exp <= now or (obsolete is not None and obsolete(v, now))]:
            del target[key]
        excess = len(target) - (self.max_entries - max(1, self.max_entries // 10))
        if excess > 0:
            for key in list(itertools.islice(target, excess)):
                _, expires = target.pop(key)
                self._incomplete_until = max(self._incomplete_until, expires)
            log.warning(
                "KV %s: local copy full (%d entries); %d dropped, misses are read from NATS until %s",
                self.name,
                self.max_entries,
                excess,
                time.strftime("%H:%M:%S", time.localtime(self._incomplete_until)),
            )

    def __len__(self) -> int:
        return len(self.entries)
