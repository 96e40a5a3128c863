"""JetStream consumers' small rules: which message is new (its stream sequence, once, in order),
and ending a subscription whose connection may be gone."""

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


async def unsubscribe_quietly(subscription: Any) -> None:
    """End a subscription that may already be gone with its connection (nothing to report then)."""
    if subscription is None:
        return
    try:
        await subscription.unsubscribe()
    except Exception:
        pass
