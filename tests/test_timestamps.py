"""One reading of NoETL's times for the session cache and execution(id) (issue 14: the two copies
disagreed on when a number is milliseconds, and a huge number crashed execution(id))."""

from __future__ import annotations

import pytest

from gateway.auth.sessions import parse_expiry
from gateway.executions.describe import describe_execution
from gateway.timestamps import epoch_seconds, iso_utc


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (1_796_000_000, 1_796_000_000.0),  # seconds (2026)
        (1_796_000_000_000, 1_796_000_000.0),  # the same in milliseconds
        (50_000_000_000, 50_000_000_000.0),  # seconds, year 3554: not taken for milliseconds
        ("2026-12-05T10:00:00Z", 1_796_464_800.0),
        ("2026-12-05T10:00:00", 1_796_464_800.0),  # naive = UTC
        ("2026-12-05 10:00:00+00:00", 1_796_464_800.0),  # str(datetime), as NoETL writes it
        ("soon", None),
        ("", None),
        (None, None),
        (True, None),
        (float("nan"), None),
        (float("inf"), None),
    ],
)
def test_one_rule_for_every_caller(raw: object, seconds: float | None) -> None:
    assert epoch_seconds(raw) == seconds
    assert parse_expiry(raw) == seconds  # the session cache reads expiries by the same rule


def test_execution_times_follow_the_same_rule_and_never_crash() -> None:
    described = describe_execution("1", {"status": "RUNNING", "start_time": 1_796_464_800_000, "end_time": 1e300})
    assert described["startTime"] == "2026-12-05T10:00:00Z"
    assert described["endTime"] == str(1e300)  # no calendar date holds it: shown as sent, no crash
    assert described["durationSeconds"] is None
    assert iso_utc(1e300) is None
