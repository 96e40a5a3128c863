"""Reading an execution: NoETL's answer as typed GraphQL fields, tolerant of its spellings."""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.errors import BadExecutionInput
from gateway.timestamps import epoch_seconds, iso_utc

_EXECUTION_ID_RE = re.compile(r"[0-9]{1,40}")

_STATES: dict[str, str] = {}
for _state, _words in {
    "PENDING": ("PENDING", "QUEUED", "CREATED", "INITIALIZED", "SCHEDULED", "WAITING"),
    "RUNNING": ("RUNNING", "STARTED", "IN_PROGRESS", "ACTIVE", "PROCESSING"),
    "COMPLETED": ("COMPLETED", "COMPLETE", "SUCCESS", "SUCCEEDED", "DONE", "FINISHED", "OK"),
    "FAILED": ("FAILED", "FAILURE", "ERROR", "ERRORED", "TIMEOUT", "TIMED_OUT"),
    "CANCELLED": ("CANCELLED", "CANCELED", "ABORTED", "STOPPED", "KILLED", "TERMINATED"),
}.items():
    for _word in _words:
        _STATES[_word] = _state
_FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


def check_execution_id(execution_id: str) -> str:
    """Only digits reach NoETL (it answers 500 to anything else)."""
    execution_id = execution_id.strip()
    if not _EXECUTION_ID_RE.fullmatch(execution_id):
        raise BadExecutionInput("Execution id must be numeric")
    return execution_id


def describe_execution(execution_id: str, answer: dict[str, Any]) -> dict[str, Any]:
    """Typed fields (GraphQL names) from NoETL's answer, tolerant of its spellings."""
    raw_status = _first(answer, "status", "state", "execution_status")
    status = str(raw_status).strip().upper() if raw_status is not None else None
    state = _STATES.get(status or "", "UNKNOWN")
    start = _timestamp(_first(answer, "start_time", "started_at", "startTime", "created_at", "timestamp"))
    end = _timestamp(_first(answer, "end_time", "ended_at", "completed_at", "endTime", "finished_at"))
    duration = _number(_first(answer, "duration_seconds", "duration", "durationSeconds"))
    if duration is None and start is not None and end is not None and start[1] is not None and end[1] is not None:
        duration = max(0.0, end[1] - start[1])
    error = _first(answer, "error", "error_message", "errorMessage")
    parent = _first(answer, "parent_execution_id", "parentExecutionId")
    return {
        "id": str(_first(answer, "execution_id", "executionId", "id") or execution_id),
        "executionId": str(_first(answer, "execution_id", "executionId", "id") or execution_id),
        "path": _text(_first(answer, "path", "playbook_path", "name")),
        "status": status,
        "state": state,
        "finished": state in _FINISHED,
        "progress": _number(_first(answer, "progress", "progress_percent")),
        "startTime": start[0] if start else None,
        "endTime": end[0] if end else None,
        "durationSeconds": duration,
        "result": _first(answer, "result", "results", "output"),
        "error": _error_text(error),
        "errorDetails": error,
        "parentExecutionId": None if parent is None else str(parent),
        "raw": answer,
    }


def _first(answer: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = answer.get(key)
        if value is not None:
            return value
    return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _timestamp(value: Any) -> tuple[str, float | None] | None:
    """(ISO 8601 text, epoch seconds) from an ISO string or an epoch number (gateway.timestamps)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        epoch = epoch_seconds(value)
        text = iso_utc(epoch) if epoch is not None else None
        return (text, epoch) if text is not None else (str(value), None)
    text = str(value).strip()
    return (text, epoch_seconds(text)) if text else None


def _error_text(error: Any) -> str | None:
    if error is None or error == "":
        return None
    if isinstance(error, dict):
        for key in ("message", "error", "detail"):
            if isinstance(error.get(key), str) and error[key]:
                return str(error[key])
    if isinstance(error, str):
        return error
    return orjson.dumps(error).decode()
