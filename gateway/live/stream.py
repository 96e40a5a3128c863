"""The state of one open SSE connection: a bounded queue of events, deduplicated by position.

Producers (the event bus, local callbacks, timers) only ever *offer* and never wait, so a slow
client cannot hold anyone up; the connection's own writer (the handler's ``get``) takes from
the queue, writes and awaits ``flush()``. A client that falls more than ``limit`` events
behind is ended with reason ``slow``: its queue is dropped (memory stays bounded), it is told,
and it can resume with ``Last-Event-ID``.

While the stream replays missed events, live events are *held* (same bound) and released
after the replay, skipping any the replay already sent: every event once, in order.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from gateway.live.events import ZERO, LiveEvent, Pos

# Why a stream ended; the writer turns each into its last words (see handlers/events.py).
GONE = "gone"  # the client went away
SLOW = "slow"  # too far behind
REVOKED = "revoked"  # session logged out
EXPIRED = "expired"  # session expired
SHUTDOWN = "shutdown"  # process stopping

SLOW_GRACE_SECS = 2.0  # how long a slow client gets to read its "too slow" notice


class LiveStream:
    """One SSE connection's queue and lifecycle; no I/O here."""

    __slots__ = (
        "_force_close",
        "_queue",
        "_timers",
        "_waiter",
        "client_id",
        "created_at",
        "dropped",
        "held",
        "last_pos",
        "limit",
        "ping_due",
        "reason",
        "sent_pos",
        "session",
    )

    def __init__(self, client_id: str, session: str, limit: int, start: Pos = ZERO) -> None:
        self.client_id = client_id
        self.session = session  # token hash; events carry their owner's, and must match it
        self.limit = limit
        # An idle stream (the common case: 10k of them) holds neither a deque nor an Event
        # (≈ 760 and ≈ 1,100 bytes): the queue exists while events wait, the waiter while the
        # writer sleeps (bench/sse_bench.py: RSS per idle stream).
        self._queue: deque[LiveEvent] | None = None
        self.held: list[LiveEvent] | None = []  # not None while replaying
        self.last_pos: Pos = start  # highest position queued or sent
        self.sent_pos: Pos = start  # highest position flushed to the client
        self.created_at = int(time.time())
        self.reason: str | None = None
        self.ping_due = False
        self.dropped = 0
        self._waiter: asyncio.Future[None] | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._force_close: Callable[[], None] | None = None

    @property
    def queue(self) -> deque[LiveEvent] | tuple[()]:
        """Events waiting for the writer (read-only view; empty tuple when none)."""
        return self._queue if self._queue is not None else ()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- producers -------------------------------------------------------------------------

    def offer(self, event: LiveEvent) -> None:
        """Queue an event for this connection (never blocks)."""
        if self.reason is not None or event.session != self.session:
            return
        if self.held is not None:
            self.held.append(event)
            if len(self.held) > self.limit:
                self.end(SLOW)
            return
        if event.pos <= self.last_pos:
            return  # already queued or sent (replay/live overlap, or a second delivery path)
        self.last_pos = event.pos
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(event)
        if len(queue) > self.limit:
            self.end(SLOW)
            return
        self._wake()

    def replayed(self, event: LiveEvent) -> bool:
        """Record that the replay is sending ``event``; False if it is not newer than what was sent."""
        if event.pos <= self.last_pos:
            return False
        self.last_pos = event.pos
        return True

    def go_live(self) -> None:
        """End of replay: release held live events that the replay did not already cover."""
        held, self.held = self.held or [], None
        for event in held:
            self.offer(event)

    def request_ping(self) -> None:
        """Heartbeat due (flag, not a queued event: pings never pile up behind a slow client)."""
        self.ping_due = True
        self._wake()

    def end(self, reason: str) -> None:
        """Stop this stream; the writer says goodbye according to ``reason``."""
        if self.reason is not None:
            return
        self.reason = reason
        self.dropped = len(self.queue) + len(self.held or ())
        self._queue = None
        if self.held is not None:
            self.held.clear()
        self._wake()
        if reason == SLOW and self._force_close is not None:
            # The writer may be stuck in flush() on a client that stopped reading.
            self.set_timer("grace", asyncio.get_running_loop().call_later(SLOW_GRACE_SECS, self._force_close))

    # -- the writer ------------------------------------------------------------------------

    def take(self) -> LiveEvent | None:
        """Next queued event, or None."""
        queue = self._queue
        if not queue:
            return None
        event = queue.popleft()
        if not queue:
            self._queue = None  # drained: an idle stream keeps no deque
        return event

    async def wait(self) -> None:
        """Sleep until something is offered, a ping is due or the stream ends."""
        if self._queue or self.ping_due or self.reason is not None:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # -- timers (referenced, cancelled on close) -------------------------------------------

    def set_force_close(self, callback: Callable[[], None]) -> None:
        """How to drop the connection when the writer cannot finish politely."""
        self._force_close = callback

    def set_timer(self, name: str, handle: asyncio.TimerHandle) -> None:
        """Keep a timer (replacing the previous one of that name) so close() can cancel it."""
        previous = self._timers.get(name)
        if previous is not None:
            previous.cancel()
        if self.reason is not None and name != "grace":
            handle.cancel()
            return
        self._timers[name] = handle

    def close(self) -> None:
        """Cancel every timer; the stream is finished."""
        if self.reason is None:
            self.reason = GONE
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._force_close = None
        self._queue = None
        self.held = None


def expires_in(expires_epoch: float | None) -> float | None:
    """Seconds until a session expires (None if it never does)."""
    if expires_epoch is None:
        return None
    return max(0.0, expires_epoch - time.time())
