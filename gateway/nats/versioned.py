"""Compare-and-set on a KV bucket: versioned values, the failure a caller must decide about, deferred edits.

A ``Versioned`` read says where its answer came from (the key's revision in the bucket, 0 when it
has none, or None for process memory); a compare-and-set against it succeeds only at the same
source. An ``Edit`` is a change kept for later as a function of the bucket's value, so it can be
applied to whatever the bucket holds then (``apply_edits``), not written over it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

Value = dict[str, Any]
Edit = Callable[[Value | None], Value | None]  # the bucket's value -> the new one, or None: nothing to change


@dataclass(frozen=True, slots=True)
class Versioned:
    """A value (None: none) and its revision: 0 no key, None the answer came from process memory."""

    value: Value | None
    revision: int | None


class KvWriteFailed(Exception):
    """NATS is up but the bucket failed a compare-and-set (a timeout while JetStream settles): it may
    or may not have been applied. The caller decides: retry after a new read, or go on without it."""


Read = Callable[[str], Awaitable[Versioned]]
Swap = Callable[[str, Value, int | None], Awaitable[bool]]


async def apply_edits(read: Read, swap: Swap, key: str, edits: list[Edit], attempts: int) -> bool:
    """Apply ``edits`` in order to the bucket's value of ``key`` with compare-and-set; False if the
    key stayed contended for ``attempts`` tries. KvWriteFailed while the bucket cannot be read."""
    for _ in range(attempts):
        current = await read(key)
        if current.revision is None:  # NATS away again, or the read failed: keep them for later
            raise KvWriteFailed("bucket unreadable")
        value, changed = current.value, False
        for edit in edits:
            edited = edit(value)
            if edited is not None:
                value, changed = edited, True
        if not changed or value is None or await swap(key, value, current.revision):
            return True
    return False


def decode(raw: bytes | None) -> Value | None:
    """A stored JSON object; None for an empty (deleted) or foreign value."""
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
