"""What a KV bucket still owes NATS: writes made while it was away (or failing), replayed when it returns.

Two kinds, both bounded (the oldest go first):

* plain writes, the newest per key (a value, or None for a delete), replayed as put/delete. A key
  written online meanwhile is discarded from here first, so an older value never overwrites it;
* deferred edits, for keys written with compare-and-set: a plain put would overwrite what other
  replicas wrote meanwhile, so the change is kept as a function of the bucket's value and applied
  to whatever the bucket holds once NATS is back (gateway/nats/kv.py: ``KvBucket.defer``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from gateway.nats.versioned import Edit, Value
from gateway.tasks import Backoff, stop_tasks

log = logging.getLogger("gateway.kv")

WriteOne = Callable[[str, Value | None], Awaitable[None]]
ApplyEdits = Callable[[str, list[Edit]], Awaitable[None]]
Replay = Callable[[], Awaitable[None]]


class WriteQueue:
    """Queued plain writes and deferred edits, by key; ``len`` counts both."""

    def __init__(self, max_writes: int, max_edits: int) -> None:
        self.writes: OrderedDict[str, Value | None] = OrderedDict()
        self.edits: OrderedDict[str, list[Edit]] = OrderedDict()
        self._max_writes = max_writes
        self._max_edits = max_edits
        self._edit_count = 0
        self._task: asyncio.Task[None] | None = None

    def queue(self, key: str, value: Value | None) -> None:
        """Replay ``value`` (None: a delete) for ``key``, replacing an older queued write."""
        self.writes.pop(key, None)
        self.writes[key] = value
        while len(self.writes) > self._max_writes:
            self.writes.popitem(last=False)

    def discard(self, key: str) -> None:
        """The bucket got a newer value for ``key``: the queued one must not be replayed over it."""
        self.writes.pop(key, None)

    def defer(self, key: str, edit: Edit) -> None:
        """Apply ``edit`` to the bucket's value of ``key`` when NATS is back (after earlier edits of it)."""
        self.edits.setdefault(key, []).append(edit)
        self._edit_count += 1
        while self._edit_count > self._max_edits:
            _, dropped = self.edits.popitem(last=False)
            self._edit_count -= len(dropped)

    async def replay_writes(self, write: WriteOne) -> None:
        """Write the keys queued *now*. Writes queued meanwhile (the link is not ready until every
        setup hook ran) follow once it is: draining until empty never ends under load, nor would setup."""
        for key in list(self.writes):
            if key not in self.writes:
                continue  # written online meanwhile: the bucket has the newer value
            value = self.writes.pop(key)
            try:
                await write(key, value)
            except BaseException:
                if key not in self.writes:
                    self.writes[key] = value
                    self.writes.move_to_end(key, last=False)
                raise

    async def replay_edits(self, apply: ApplyEdits) -> None:
        """Apply the deferred edits, key by key; a failed key keeps its edits (first in line) for the next try."""
        for key in list(self.edits):
            edits = self.edits.pop(key, None)
            if edits is None:
                continue
            self._edit_count -= len(edits)
            try:
                await apply(key, edits)
            except BaseException:
                later = self.edits.pop(key, [])
                self.edits[key] = edits + later
                self.edits.move_to_end(key, last=False)
                self._edit_count += len(edits)
                raise

    def start_replay(self, name: str, replay: Replay, online: Callable[[], bool]) -> None:
        """Run ``replay`` in the background until nothing is owed or NATS goes away: a write that times
        out just after a reconnect (JetStream still settling) is retried, not left until the next outage."""
        if self and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._replay_rest(name, replay, online), name=f"kv-replay-{name}")

    async def _replay_rest(self, name: str, replay: Replay, online: Callable[[], bool]) -> None:
        backoff = Backoff()
        while self and online():
            try:
                await replay()
            except Exception as exc:
                log.warning("KV %s: queued writes not replayed yet (%s); retrying", name, type(exc).__name__)
                await backoff.pause()

    async def close(self) -> None:
        """Stop replaying (what is left is owed until the next start)."""
        await stop_tasks(self._task)

    def __len__(self) -> int:
        return len(self.writes) + self._edit_count
