"""What a session check that misses the cache may cost: a per-client budget and a negative cache.

A cache miss costs one NoETL validate call (or a validate playbook run). A flood of random
tokens must not turn into as many upstream calls (issue 13): each client IP spends from a token
bucket (``GATEWAY_VALIDATE_MISS_PER_MINUTE``, burst ``GATEWAY_VALIDATE_MISS_BURST``), and a token
NoETL called invalid is refused without asking again for ``GATEWAY_NEGATIVE_CACHE_SECS``.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from gateway.auth.rate_limit import RateLimiter

# Invalid token hashes remembered per process (oldest dropped first): 64-character keys, ~10 MB.
NEGATIVE_CACHE_MAX = 50_000


class MissBudget:
    """The budget of cache-missing checks per client, and the token hashes known to be invalid."""

    def __init__(self, per_minute: int, burst: int, negative_ttl_secs: float) -> None:
        self.limiter = RateLimiter(per_minute, burst=burst)
        self._negative_ttl = negative_ttl_secs
        self._invalid: OrderedDict[str, float] = OrderedDict()  # token hash -> until (monotonic)

    def spend(self, client: str) -> float:
        """0 when ``client`` may cause one more NoETL check, else the seconds until it may."""
        return self.limiter.acquire(client)

    def known_invalid(self, hashed: str) -> bool:
        """NoETL called this token invalid a moment ago."""
        until = self._invalid.get(hashed)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._invalid[hashed]
        return False

    def remember_invalid(self, hashed: str) -> None:
        """NoETL said invalid: the same token is refused without asking again for a short while."""
        if self._negative_ttl <= 0:
            return
        self._invalid.pop(hashed, None)
        self._invalid[hashed] = time.monotonic() + self._negative_ttl
        while len(self._invalid) > NEGATIVE_CACHE_MAX:
            self._invalid.popitem(last=False)
