"""Starting and reading playbook executions, shared by GraphQL and the REST proxy.

The access check is the authorization module's (gateway/access/); here are the
live-results seam (``clientId``) and the call to NoETL. Callers map the exceptions below to
their own wire format: each carries a GraphQL ``code`` and an HTTP ``status``; NoETL failures stay ``UpstreamFailure``.

The live results: when a ``clientId`` is given, ``services.live`` provides :class:`LiveResults`.
"""

# layout: over 300 lines until the trust-boundary work (which moves the access rules out) is merged;
# then reading an execution (describe_execution and its helpers) moves to its own module.
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from gateway.auth.sessions import Session
from gateway.errors import BadExecutionInput
from gateway.noetl.client import UpstreamError
from gateway.timestamps import epoch_seconds, iso_utc

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("gateway.executions")

MAX_PLAYBOOK_PATH = 1024
_EXECUTION_ID_RE = re.compile(r"[0-9]{1,40}")


class LiveResults(Protocol):
    """What the SSE module provides as ``services.live`` for ``clientId`` executions."""

    async def prepare_request(self, session: Session, client_id: str) -> str:
        """Check the client belongs to the session (else ClientNotOwned), take a pending slot (else
        TooManyPending), store the request provisionally; return its new request_id."""
        ...

    async def release_request(self, session: Session, request_id: str) -> None:
        """The start failed after ``prepare_request``: forget the request and free its slot."""
        ...

    async def record_pending(
        self, request_id: str, client_id: str, session: Session, execution_id: str, playbook_path: str
    ) -> None:
        """Store the pending request so the playbook's callback reaches the client."""
        ...


@dataclass(frozen=True, slots=True)
class StartedExecution:
    """What NoETL answered to an execute, plus our request id (live results only)."""

    execution_id: str
    name: str
    status: str | None
    request_id: str | None
    answer: dict[str, Any]


def check_playbook_name(name: str) -> str:
    """A usable catalog path, or BadExecutionInput."""
    name = name.strip()
    if not name:
        raise BadExecutionInput("Playbook name must not be empty")
    if len(name) > MAX_PLAYBOOK_PATH:
        raise BadExecutionInput(f"Playbook name is longer than {MAX_PLAYBOOK_PATH} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise BadExecutionInput("Playbook name must not contain control characters")
    return name


async def require_access(services: Services, token: str, playbook_path: str) -> None:
    """The playbook access check of the one authorization module (no-op when enforcement is off)."""
    await services.access.check_playbook(token, playbook_path)


async def execute_playbook(
    services: Services,
    session: Session,
    token: str,
    name: str,
    variables: Any = None,
    client_id: str | None = None,
) -> StartedExecution:
    """Check, start, and (with ``client_id``) register a playbook execution."""
    name = check_playbook_name(name)
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise BadExecutionInput("variables must be a JSON object")
    live: LiveResults | None = None
    request_id: str | None = None
    if client_id is not None:
        live = services.live
        if not client_id.strip():
            raise BadExecutionInput("clientId must not be empty")
        request_id = await live.prepare_request(session, client_id)
    try:
        answer = await _start(services, token, name, variables, request_id)
        execution_id = _execution_id_of(answer)
    except BaseException:
        if live is not None and request_id is not None:
            await live.release_request(session, request_id)
        raise
    started = StartedExecution(
        execution_id=str(execution_id),
        name=str(answer.get("name") or name),
        status=None if answer.get("status") is None else str(answer.get("status")),
        request_id=request_id,
        answer=answer,
    )
    if live is not None and request_id is not None and client_id is not None:
        await live.record_pending(request_id, client_id, session, started.execution_id, name)
    log.info("playbook %s started (execution %s)", name, started.execution_id)
    return started


async def _start(
    services: Services, token: str, name: str, variables: dict[str, Any], request_id: str | None
) -> dict[str, Any]:
    """Access check, then NoETL's execute call (with the live-results variables); NoETL's answer."""
    await require_access(services, token, name)
    if request_id is not None:
        variables = {
            **variables,
            "request_id": request_id,
            "gateway_url": services.config.public_url,
            "callback_token": services.signer.issue(request_id),
        }
    try:
        answer = await services.noetl.execute(name, variables)
    except orjson.JSONEncodeError:
        raise BadExecutionInput("variables cannot be sent as JSON (nested too deeply?)") from None
    return answer


def _execution_id_of(answer: dict[str, Any]) -> Any:
    execution_id = answer.get("execution_id") or answer.get("executionId") or answer.get("id")
    if execution_id is None or isinstance(execution_id, bool | dict | list):
        raise UpstreamError("NoETL answered the execute call without an execution id", 502, answer)
    return execution_id


# -- reading an execution -----------------------------------------------------------------

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


async def get_execution(services: Services, execution_id: str) -> dict[str, Any] | None:
    """NoETL's view of one execution, normalised; None when NoETL does not know it."""
    execution_id = check_execution_id(execution_id)
    try:
        answer = await services.noetl.get_execution(execution_id)
    except UpstreamError as exc:
        if exc.upstream_status == 404:
            return None
        raise
    described = describe_execution(execution_id, answer)
    if described["finished"] and await _completion_only_inferred(services, execution_id):
        # NoETL's summary says done too early; its /status knows the completion is only inferred.
        described["finished"] = False
        described["state"] = "RUNNING"
    return described


async def _completion_only_inferred(services: Services, execution_id: str) -> bool:
    """True when ``/api/executions/{id}/status`` says ``completion_inferred`` (not finished yet)."""
    status, answer = await services.noetl.request_json("GET", f"executions/{execution_id}/status")
    return status == 200 and isinstance(answer, dict) and answer.get("completion_inferred") is True


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
