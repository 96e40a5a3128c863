"""Write-behind of live state: client records and delivered requests' traces, coalesced in one task.

Never on a connection's critical path: a stream that opens, delivers or closes only notes what
changed; the task writes it to NATS (or the buckets' local fallback) soon after. A second task
refreshes the records of the clients held here (their max age) and purges the event journal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from gateway.live.events import format_pos
from gateway.live.state import LiveState
from gateway.live.stream import LiveStream
from gateway.live.streams import StreamRegistry
from gateway.tasks import stop_tasks

log = logging.getLogger("gateway.live")

Item = TypeVar("Item")


class RecordWriter:
    """Notes changes to client records and finished requests; writes them behind, in batches."""

    def __init__(self, state: LiveState, streams: StreamRegistry) -> None:
        self._clients, self._requests, self._slots = state.clients, state.requests, state.slots
        self._journal, self._streams = state.journal, streams
        self._records: dict[str, dict[str, Any]] = {}
        # request id -> (session hash (frees its slot), client id, execution id if known): its trace
        self._deletes: dict[str, tuple[str, str, str | None]] = {}
        self._due = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def backlog(self) -> int:
        """Writes noted but not done yet."""
        return len(self._records) + len(self._deletes)

    def start(self) -> None:
        """Start the write-behind and housekeeping tasks."""
        self._tasks = [
            asyncio.create_task(self._write_behind(), name="live-write-behind"),
            asyncio.create_task(self._housekeeping(), name="live-housekeeping"),
        ]

    def note_record(self, stream: LiveStream, *, connected: bool) -> None:
        """The client's record (owner, presence, delivered position) is to be written."""
        self._records[stream.client_id] = {
            "session": stream.session,
            "created_at": stream.created_at,
            "connected": connected,
            "seen": int(time.time()),
            "delivered": format_pos(stream.sent_pos),
        }
        self._due.set()

    def note_delivered(
        self, request_id: str, session_hash: str, client_id: str, execution_id: str | None = None
    ) -> None:
        """The request's result reached its client: the request becomes its trace (``store.py``:
        a subscription of the session may still replay it) and its slot is freed (a session's
        slots freed in one pass are given back together)."""
        self._deletes[request_id] = (session_hash, client_id, execution_id)
        self._due.set()

    async def _write_behind(self) -> None:
        while True:
            await self._due.wait()
            self._due.clear()
            await self._flush()

    async def _flush(self) -> None:
        records, self._records = self._records, {}
        deletes, self._deletes = self._deletes, {}
        by_session: dict[str, list[str]] = {}
        traces = [(rid, session, client_id, eid) for rid, (session, client_id, eid) in deletes.items()]
        for rid, session, _, _ in traces:
            by_session.setdefault(session, []).append(rid)
        clients, requests = self._clients, self._requests
        # A bucket's batch is acked once, by its last write (gateway/nats/kv_ahead.py); slots: one
        # compare-and-set per session.
        jobs: list[Callable[[], Awaitable[None]]] = [
            partial(_pipelined, list(records.items()), _star(clients.put_ahead), _star(clients.put)),
            partial(_pipelined, traces, requests.trace_ahead, requests.trace),
        ]
        jobs += [partial(self._slots.release, session, *rids) for session, rids in by_session.items()]
        await _each(lambda job: job(), jobs)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self._streams.refresh_secs)
            self._journal.purge()
            for stream in self._streams.one_per_client():
                self.note_record(stream, connected=True)  # keeps the record alive (max age)

    async def close(self) -> None:
        """Cancel the tasks, then one last write-behind pass (bounded)."""
        await stop_tasks(*self._tasks)
        try:
            await asyncio.wait_for(self._flush(), 2.0)
        except (TimeoutError, Exception) as exc:
            log.warning("live state not fully written at close: %s", type(exc).__name__)


async def _pipelined(
    items: list[Item], ahead: Callable[[Item], Awaitable[bool]], acked: Callable[[Item], Awaitable[bool]]
) -> None:
    """Write one bucket's batch: all but the last handed to NATS without their own ack, then the
    last with its ack, which covers them (one connection, one stream: stored in that order). If
    that ack fails, each is written again with its own (queued for replay if that fails too)."""
    if not items:
        return
    *rest, last = items
    unsent = [item for item in rest if not await ahead(item)]  # NATS away now: acked (queued) writes
    try:
        covered = await acked(last)
    except Exception as exc:
        log.warning("live state write failed: %s", type(exc).__name__)
        covered = False
    await _each(acked, unsent if covered else rest)


async def _each(write: Callable[[Item], Awaitable[object]], items: list[Item]) -> None:
    """``write`` every item, 64 at a time; a failure is logged (the bucket queued it for replay)."""
    for start in range(0, len(items), 64):
        results = await asyncio.gather(*(write(item) for item in items[start : start + 64]), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("live state write failed: %s", type(result).__name__)


def _star(
    write: Callable[[str, dict[str, Any]], Awaitable[bool]],
) -> Callable[[tuple[str, dict[str, Any]]], Awaitable[bool]]:
    """``write(key, value)`` taking one ``(key, value)`` item."""
    return lambda item: write(*item)
