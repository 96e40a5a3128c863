"""Which JetStream message is new: its stream sequence, once, in order."""

from __future__ import annotations

from typing import Any


def newer_sequence(message: Any, last: int) -> int | None:
    """The message's stream sequence if it comes after ``last`` — else None (a redelivery after a
    consumer was made again, or a message without JetStream metadata: nothing to hand on)."""
    try:
        seq = int(message.metadata.sequence.stream)
    except Exception:
        return None
    return seq if seq > last else None
