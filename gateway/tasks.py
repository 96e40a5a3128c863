"""Background tasks: the one way a service stops the tasks it started."""

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
