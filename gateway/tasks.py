"""Background tasks: the one way a service stops the tasks it started, and the one retry pace."""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_tasks(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel the tasks and wait until they have ended; how they end no longer matters."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass


class Backoff:
    """Growing pauses between retries of background work that failed while NATS is up (JetStream
    settling after a reconnect): 0.1 s, doubling, at most 5 s."""

    def __init__(self) -> None:
        self.delay = 0.1

    async def pause(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, 5.0)
