"""Live events as GraphQL ``PlaybookEvent`` fields (kind, requestId, executionId, status, step,
message, progress, data, error, at): one shape for progress, state and result, whatever their source.

* ``playbook/progress`` → PROGRESS (step, message, progress);
* ``playbook/state`` → STATE: ``status`` and ``step`` (``step_name``) as in the frame, ``message`` its
  ``event_type`` (``step.exit``, ``playbook.completed``, …), ``data`` the whole frame, ``at`` NoETL's time;
* ``playbook/result`` → RESULT: ``status`` (``FAILED`` with ``error`` {code, message, data}), ``data``;
* NoETL's own view of a finished execution (``execution(id)``) → RESULT, for a watch that had no
  request to receive a callback.

``at`` of progress and results is when the gateway hands the event out (they carry no time).
"""

from __future__ import annotations

from typing import Any

from gateway.live.events import KIND_PROGRESS, KIND_RESULT, KIND_STATE, PLAYBOOK_FAILED, LiveEvent
from gateway.live.lifecycle import now_rfc3339
from gateway.live.watch import params_of

PROGRESS, STATE, RESULT = "PROGRESS", "STATE", "RESULT"


def _empty(kind: str, request_id: str | None, execution_id: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "requestId": request_id,
        "executionId": None if execution_id is None else str(execution_id),
        "status": None,
        "step": None,
        "message": None,
        "progress": None,
        "data": None,
        "error": None,
        "at": now_rfc3339(),
    }


def from_live_event(event: LiveEvent, request_id: str) -> dict[str, Any] | None:
    """The fields of one event of a request's client (None for one that is not progress/state/result)."""
    params = params_of(event)
    if event.kind == KIND_PROGRESS:
        fields = _empty(PROGRESS, request_id, params.get("executionId"))
        progress = params.get("progress")
        fields.update(
            step=params.get("step"),
            message=params.get("message"),
            progress=float(progress) if isinstance(progress, int | float) and not isinstance(progress, bool) else None,
        )
        return fields
    if event.kind == KIND_STATE:
        return from_state(params, request_id)
    if event.kind == KIND_RESULT:
        fields = _empty(RESULT, request_id, params.get("executionId"))
        fields.update(status=params.get("status"), data=params.get("data"), error=params.get("error"))
        return fields
    return None


def from_state(params: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """A ``playbook/state`` frame's fields."""
    fields = _empty(STATE, request_id, params.get("execution_id"))
    fields.update(
        status=params.get("status"),
        step=params.get("step_name"),
        message=params.get("event_type"),
        data=params,
        at=params.get("at") or fields["at"],
    )
    return fields


def from_execution(execution_id: str, described: dict[str, Any] | None) -> dict[str, Any]:
    """RESULT from NoETL's view of a finished execution (``Executions.get``: credentials for admins only)."""
    fields = _empty(RESULT, None, execution_id)
    if described is None:
        fields.update(status="UNKNOWN")
        return fields
    state = str(described.get("state") or "UNKNOWN")
    fields["status"] = state
    if state == "FAILED":
        message = described.get("error") or "Playbook execution failed"
        fields["error"] = {"code": PLAYBOOK_FAILED, "message": message, "data": described.get("errorDetails")}
    else:
        fields["data"] = described.get("result")
    return fields
