"""``playbook/state`` frames of one execution, for whoever may view it (GraphQL ``executionUpdates``).

No request needs to wait on the execution (it may be anyone's, started through the proxy or
by another user), so the frames come straight from where NoETL's lifecycle is read, never from a
client's subject:

* NoETL's event mirror, which **every** replica reads in order (``noetl_events.py``): its frames
  are handed to the watches of this process (``NoetlEventFeed.on_frame``), so a watch on any
  replica sees them all;
* ``GET /api/executions/{id}/status`` — once when the watch starts (the steps done so far, or the
  end of an execution that is already over), and every ``GATEWAY_PLAYBOOK_STATE_POLL_SECS`` while
  the mirror is not read (the same rule as ``state_poll.py``: ``frames_of_status``).

Each step's ``step.exit`` is told once (by name), the end once; the watch ends after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

from gateway.live.lifecycle import PLAYBOOK_END, STEP_EXIT
from gateway.live.noetl_events import NoetlEventFeed
from gateway.live.state_poll import MAX_STEPS, POLL_TIMEOUT_SECS, frames_of_status
from gateway.noetl.client import NoetlClient

log = logging.getLogger("gateway.subscriptions")

MAX_QUEUED = 1000  # frames waiting for one slow reader; beyond it the oldest step frames go
IDLE_RECHECK_SECS = 30.0  # with the mirror read: how often a watch still asks NoETL (a missed end)


class ExecutionWatch:
    """One watch's queue of frames and what it told already."""

    __slots__ = ("_waiter", "ended", "execution_id", "queue", "steps")

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        self.queue: deque[dict[str, Any]] = deque(maxlen=MAX_QUEUED)
        self.steps: set[str] = set()
        self.ended = False
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, params: dict[str, Any]) -> None:
        """A frame of its execution: queued unless told already."""
        if self.ended:
            return
        event_type = params.get("event_type")
        if event_type == STEP_EXIT:
            step = params.get("step_name")
            if isinstance(step, str):
                if step in self.steps or len(self.steps) >= MAX_STEPS:
                    return
                self.steps.add(step)
        elif event_type in PLAYBOOK_END:
            self.ended = True
        self.queue.append(params)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until a frame is queued, or ``timeout``."""
        if self.queue:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        except TimeoutError:
            pass
        finally:
            self._waiter = None


class ExecutionWatches:
    """Frames of the executions watched in this process (see module doc)."""

    def __init__(self, feed: NoetlEventFeed, noetl: NoetlClient, poll_secs: float) -> None:
        self._feed = feed
        self._noetl = noetl
        self.poll_secs = poll_secs if poll_secs > 0 else 2.0
        self._by_execution: dict[str, set[ExecutionWatch]] = {}
        feed.on_frame = self._on_frame

    @property
    def count(self) -> int:
        """Open execution watches in this process."""
        return sum(len(watches) for watches in self._by_execution.values())

    def _on_frame(self, params: dict[str, Any]) -> None:
        for watch in list(self._by_execution.get(str(params.get("execution_id")), ())):
            watch.offer(params)

    async def frames(self, execution_id: str) -> AsyncGenerator[dict[str, Any], None]:
        """The execution's frames from now on (and what NoETL says it did so far); ends after its end."""
        watch = ExecutionWatch(execution_id)
        self._by_execution.setdefault(execution_id, set()).add(watch)
        try:
            await self._ask(watch)
            while True:
                while watch.queue:
                    frame = watch.queue.popleft()
                    yield frame
                    if frame.get("event_type") in PLAYBOOK_END:
                        return
                await watch.wait(IDLE_RECHECK_SECS if self._feed.active else self.poll_secs)
                if not watch.queue:
                    await self._ask(watch)
        finally:
            peers = self._by_execution.get(execution_id)
            if peers is not None:
                peers.discard(watch)
                if not peers:
                    del self._by_execution[execution_id]

    async def _ask(self, watch: ExecutionWatch) -> None:
        """NoETL's ``/status`` of the execution, as frames not told yet (nothing when it cannot say)."""
        try:
            status, answer = await self._noetl.request_json(
                "GET", f"executions/{watch.execution_id}/status", timeout=POLL_TIMEOUT_SECS
            )
        except Exception as exc:
            log.debug("status of execution %s not read: %s", watch.execution_id, type(exc).__name__)
            return
        if status != 200 or not isinstance(answer, dict):
            return
        frames, _ended = frames_of_status(watch.execution_id, set(watch.steps), answer)
        for params in frames:
            watch.offer(params)
