"""``playbook/state`` by polling NoETL, when its event mirror is not there to read.

Only executions that a client waits on are polled, and only by the replica that recorded the
request (it knows the execution id; frames still go through the events stream, so they reach the
client wherever it is). Every ``GATEWAY_PLAYBOOK_STATE_POLL_SECS`` at most
``GATEWAY_PLAYBOOK_STATE_POLL_MAX`` of them are asked ``GET /api/executions/{id}/status`` (the
rest wait their turn, oldest first), ``POLL_CONCURRENCY`` at a time: a bounded rate whatever the
load. Steps NoETL lists in ``completed_steps`` become ``step.exit`` frames (each once), and its
``completed``/``failed`` the final ``playbook.completed``/``playbook.failed`` frame, after which
the execution is no longer polled. An execution whose requests are all answered (or expired) is
dropped without asking NoETL. Polling pauses while the event mirror is read.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.live.by_execution import ExecutionIndex, Pending
from gateway.live.lifecycle import COMPLETED, FAILED, STEP_EXIT, now_rfc3339, rfc3339, state_params
from gateway.metrics import Metrics
from gateway.noetl.client import NoetlClient
from gateway.tasks import stop_tasks

log = logging.getLogger("gateway.live")

POLL_CONCURRENCY = 8
POLL_TIMEOUT_SECS = 5.0
MAX_WATCHED = 10_000
MAX_STEPS = 1000  # step names remembered per execution (each step.exit frame is sent once)

# (the waiting requests, the frame's params) -> publish to their clients.
Emit = Callable[[Pending, dict[str, Any]], Awaitable[None]]


@dataclass
class Watched:
    """An execution clients wait on: their requests, when to give up, the steps already told."""

    request_ids: list[str]
    until: float
    steps: set[str] = field(default_factory=set)


class StatePoller:
    """Polls NoETL for the executions recorded here (see module doc)."""

    def __init__(
        self,
        noetl: NoetlClient | None,  # polling asks GET /api/executions/{id}/status
        interval: float,
        per_round: int,
        ttl_secs: float,
        index: ExecutionIndex,
        emit: Emit,
        metrics: Metrics,
        paused: Callable[[], bool],
    ) -> None:
        self._noetl, self.interval, self.per_round, self.ttl = noetl, interval, per_round, ttl_secs
        self._index, self._emit, self._metrics, self._paused = index, emit, metrics, paused
        self.watched: OrderedDict[str, Watched] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """False when ``GATEWAY_PLAYBOOK_STATE_POLL_SECS`` is 0 (or no NoETL client was given)."""
        return self._noetl is not None and self.interval > 0

    def watch(self, execution_id: str, request_id: str) -> None:
        """A client waits on this execution (recorded here): poll it while the mirror is not read."""
        if not self.enabled:
            return
        watched = self.watched.get(execution_id)
        if watched is None:
            self.watched[execution_id] = Watched([request_id], time.monotonic() + self.ttl)
            while len(self.watched) > MAX_WATCHED:
                self.watched.popitem(last=False)
        elif request_id not in watched.request_ids:
            watched.request_ids.append(request_id)

    def start(self) -> None:
        """Start the polling loop; call once, inside the loop."""
        if self.enabled:
            self._task = asyncio.create_task(self._run(), name="playbook-state-poll")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self._paused() or not self.watched:
                continue
            try:
                await self.poll_round()
            except Exception:
                log.exception("playbook/state polling round failed")

    async def poll_round(self) -> None:
        """Ask NoETL about the next ``per_round`` executions (round robin)."""
        now = time.monotonic()
        for execution_id in [eid for eid, w in self.watched.items() if w.until <= now]:
            del self.watched[execution_id]
        batch = list(itertools.islice(self.watched, self.per_round))
        for execution_id in batch:
            self.watched.move_to_end(execution_id)
        limit = asyncio.Semaphore(POLL_CONCURRENCY)
        await asyncio.gather(*(self._poll(execution_id, limit) for execution_id in batch))

    async def _poll(self, execution_id: str, limit: asyncio.Semaphore) -> None:
        watched = self.watched.get(execution_id)
        if watched is None or self._noetl is None:
            return
        waiting = await self._index.waiting(watched.request_ids)
        if not waiting:  # every request answered or expired: nobody to tell
            self.watched.pop(execution_id, None)
            return
        async with limit:
            try:
                status, answer = await self._noetl.request_json(
                    "GET", f"executions/{execution_id}/status", timeout=POLL_TIMEOUT_SECS
                )
            except Exception as exc:
                self._metrics.playbook_state_polls.labels("error").inc()
                log.debug("status of execution %s not read: %s", execution_id, type(exc).__name__)
                return
        if status != 200 or not isinstance(answer, dict):
            self._metrics.playbook_state_polls.labels("error").inc()
            return
        self._metrics.playbook_state_polls.labels("answered").inc()
        for params in self._frames(execution_id, watched, answer):
            await self._emit(waiting, params)

    def _frames(self, execution_id: str, watched: Watched, answer: dict[str, Any]) -> list[dict[str, Any]]:
        """New steps first, then the end (which ends the polling of this execution)."""
        frames, ended = frames_of_status(execution_id, watched.steps, answer)
        if ended:
            self.watched.pop(execution_id, None)
        return frames

    async def close(self) -> None:
        """Stop polling."""
        await stop_tasks(self._task)


def frames_of_status(
    execution_id: str, steps_told: set[str], answer: dict[str, Any]
) -> tuple[list[dict[str, Any]], bool]:
    """The frames a ``/status`` answer implies that were not told yet (``steps_told`` is updated):
    new steps first, then the end; and whether the execution ended. Also read by executionUpdates."""
    now = now_rfc3339()
    frames = []
    steps = answer.get("completed_steps")
    for step in steps if isinstance(steps, list) else []:
        if isinstance(step, str) and step and step not in steps_told and len(steps_told) < MAX_STEPS:
            steps_told.add(step)
            frames.append(state_params(execution_id, STEP_EXIT, step, "COMPLETED", now))
    end = FAILED if answer.get("failed") is True else COMPLETED if answer.get("completed") is True else None
    if end is not None:
        status = "failed" if end == FAILED else "completed"
        frames.append(state_params(execution_id, end, None, status, rfc3339(answer.get("end_time")) or now))
    return frames, end is not None
