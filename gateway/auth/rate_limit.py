"""Per-key token buckets (login attempts, cache-missing session checks per client IP).

Per process: each replica limits alone.
"""

from __future__ import annotations

import time


class RateLimiter:
    """``per_minute`` events per minute per key, bursting up to ``burst`` (default: ``per_minute``);
    memory bounded."""

    def __init__(self, per_minute: int, max_keys: int = 100_000, *, burst: int | None = None) -> None:
        self.capacity = float(per_minute if burst is None or per_minute <= 0 else max(1, burst))
        self.refill_per_sec = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._max_keys = max_keys

    def acquire(self, key: str) -> float:
        """0 if allowed now, else the seconds to wait (for ``Retry-After``)."""
        if self.capacity <= 0:
            return 0.0
        now = time.monotonic()
        tokens, stamp = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.refill_per_sec)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return 0.0
        self._store(key, tokens, now)
        return (1.0 - tokens) / self.refill_per_sec

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            # Drop full buckets first (they carry no information), else the oldest entry.
            for old in [k for k, (t, _) in self._buckets.items() if t >= self.capacity][:1000] or [
                next(iter(self._buckets))
            ]:
                del self._buckets[old]
        self._buckets[key] = (tokens, now)
