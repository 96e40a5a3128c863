"""Reading NoETL's times: one rule for epoch numbers (seconds or milliseconds) and ISO-8601 text.

NoETL and the auth playbooks send times as ISO-8601 (naive = UTC) or as epoch numbers, in
seconds or in milliseconds. A number above ``MILLISECONDS_ABOVE`` is milliseconds: 1e11 seconds
is the year 5138 and 1e11 milliseconds is 1973, so no real time of either kind is misread.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

MILLISECONDS_ABOVE = 1e11


def epoch_seconds(value: Any) -> float | None:
    """Epoch seconds from an epoch number (s or ms) or ISO-8601 text; None when it is neither."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            return None
        return number / 1000.0 if abs(number) > MILLISECONDS_ABOVE else number
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return None


def iso_utc(epoch: float) -> str | None:
    """``2026-12-05T10:00:00Z`` for an epoch, or None when no calendar date holds it."""
    try:
        return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return None
