"""``playbook/state`` frames: where an execution is, for clients waiting on it (CONTRACT §8).

params ``{"execution_id": <decimal string>, "event_type", "step_name", "status", "at": <RFC 3339>}``.
Three sources build them, all here so they cannot drift apart: the final async callback (the
*synthetic* frame, sent just before ``playbook/result``), NoETL's own events mirrored to
JetStream (``noetl_events.py``), and polling NoETL when that mirror is off (``state_poll.py``).

NoETL's ids exceed 2^53 (a JavaScript number cannot hold them), so ``execution_id`` is always
text; NoETL writes ``created_at`` as ``str(datetime)`` (a space, not a ``T``), normalised here.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import orjson

STEP_EXIT = "step.exit"
COMPLETED = "playbook.completed"
FAILED = "playbook.failed"
CALENDAR_TOUCHED = "calendar.event.touched"  # an app-level event of one SPA; NoETL 4.26 never sends it
FORWARDED = frozenset({STEP_EXIT, COMPLETED, FAILED, CALENDAR_TOUCHED})
PLAYBOOK_END = frozenset({COMPLETED, FAILED})

_EXECUTION_ID_RE = re.compile(r"\d{1,30}")
_DEFAULT_STATUS = {COMPLETED: "completed", FAILED: "failed"}


def now_rfc3339() -> str:
    """This instant, RFC 3339 in UTC."""
    return datetime.now(UTC).isoformat()


def rfc3339(value: Any) -> str | None:
    """A timestamp as RFC 3339 (``T`` separator, an offset; naive means UTC); None if it is none."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.isoformat()


def execution_id_text(value: Any) -> str | None:
    """An execution id as its decimal text (NoETL sends an integer), or None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    if isinstance(value, str) and _EXECUTION_ID_RE.fullmatch(value.strip()):
        return value.strip()
    return None


def state_params(execution_id: str, event_type: str, step_name: str | None, status: str, at: str) -> dict[str, Any]:
    """The params of one ``playbook/state`` notification."""
    return {"execution_id": execution_id, "event_type": event_type, "step_name": step_name, "status": status, "at": at}


def synthetic_state(execution_id: str, status: str, error: Any) -> dict[str, Any]:
    """The frame a final callback implies: failed when its status is FAILED or it carries an error."""
    failed = error is not None or status.upper() == "FAILED"
    event_type = FAILED if failed else COMPLETED
    return state_params(execution_id, event_type, None, _DEFAULT_STATUS[event_type], now_rfc3339())


def decode_event(data: bytes) -> Any:
    """NoETL's JSON (None if it is not JSON); an integer beyond orjson's 64 bits still decodes, exactly."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data)
        except ValueError:
            return None


def state_from_noetl(event: Any, subject_execution_id: str | None = None) -> dict[str, Any] | None:
    """The frame of one NoETL event, or None when it is not one clients are told about.

    ``status`` is lowercased for ``playbook.*`` (NoETL mixes cases) and kept as NoETL says for steps;
    ``step_name`` is the step for ``step.exit`` and null for ``playbook.*`` (whose ``node_name`` is
    the playbook's path).
    """
    if not isinstance(event, dict):
        return None
    event_type = event.get("event_type")
    if event_type not in FORWARDED:
        return None
    execution_id = execution_id_text(event.get("execution_id")) or subject_execution_id
    if execution_id is None:
        return None
    status = _text(event.get("status")) or _DEFAULT_STATUS.get(event_type, "running")
    if event_type in PLAYBOOK_END:
        step_name, status = None, status.lower()
    else:
        step_name = _text(event.get("node_name")) or _text(event.get("step_name"))
    at = rfc3339(event.get("created_at")) or rfc3339(event.get("event_time")) or now_rfc3339()
    return state_params(execution_id, str(event_type), step_name, status, at)


def execution_id_of_subject(subject: str, prefix: str) -> str | None:
    """The id in ``{prefix}{tenant}.{org}.{execution_id}.{shard}`` (NoETL's event subjects)."""
    if not subject.startswith(prefix):
        return None
    parts = subject[len(prefix) :].split(".")
    return execution_id_text(parts[2]) if len(parts) >= 3 else None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
