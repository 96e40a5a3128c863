"""``rerunExecution``: start an execution again with what it ran with, the caller's changes merged.

The reference gateway calls ``POST /api/executions/{id}/rerun {workload, ...}``. NoETL 4.26 has no
such route (it answers 404/405), so the gateway falls back to reading the execution
(``GET /api/executions/{id}``: path, version, workload) and starting that playbook version again.
What the gateway injected into the original run — credentials, ``request_id``, ``gateway_url``,
``callback_subject`` — is never sent again: the new run gets fresh ones (with ``clientId``) or none.
Which way NoETL reruns is said once in the log, per way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.access.redaction import CREDENTIAL_KEYS
from gateway.errors import ExecutionRefused
from gateway.noetl.client import NoetlClient, UpstreamError, upstream_detail

log = logging.getLogger("gateway.executions")

# What the gateway puts into workloads (executePlaybook's live results, the auth playbooks).
INJECTED_KEYS = (*CREDENTIAL_KEYS, "request_id", "gateway_url", "callback_subject")
# NoETL's own bookkeeping in a workload snapshot (4.26: the keychain manifest of that run).
_NOETL_INTERNAL_KEYS = frozenset({"_keychain_manifest"})
# NoETL 4.26 hides secret-looking values in its answers; the placeholder is not the value.
_NOETL_REDACTED = "[REDACTED]"
_INITIALIZED_EVENTS = frozenset({"playbook.initialized", "playbook_initialized"})
ROUTE_MISSING = frozenset({404, 405})


class ExecutionNotFound(ExecutionRefused):
    """The execution to rerun does not exist."""

    status = 404

    def __init__(self, execution_id: str) -> None:
        super().__init__(f"Execution {execution_id} not found")


@dataclass(frozen=True, slots=True)
class OriginalExecution:
    """What a rerun needs of the execution it repeats."""

    execution_id: str
    path: str
    version: int | None
    workload: dict[str, Any]


def _json_object(value: Any) -> dict[str, Any]:
    """A JSON object NoETL may give as an object or as JSON text; {} for anything else."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
    return value if isinstance(value, dict) else {}


def workload_of(answer: dict[str, Any]) -> dict[str, Any] | None:
    """The workload an execution started with: a top-level ``workload`` when the server gives one,
    else NoETL 4.26's ``playbook.initialized`` event (``context.result.workload``); None if neither."""
    top = answer.get("workload")
    if isinstance(top, dict):
        return top
    events = answer.get("events")
    for event in events if isinstance(events, list) else []:
        if isinstance(event, dict) and event.get("event_type") in _INITIALIZED_EVENTS:
            context = _json_object(event.get("context"))
            workload = _json_object(context.get("result")).get("workload", context.get("workload"))
            if isinstance(workload, dict):
                return workload
    return None


def original_from(execution_id: str, answer: dict[str, Any]) -> OriginalExecution:
    """The path, version and workload of NoETL's answer, or UpstreamError when it names no playbook."""
    path = answer.get("path")
    if not isinstance(path, str) or not path.strip() or path == "unknown":
        raise UpstreamError(f"NoETL does not say which playbook execution {execution_id} ran", 200, None)
    version = answer.get("version")
    workload = workload_of(answer)
    if workload is None:
        log.info("execution %s: NoETL shows no workload; rerun with the caller's variables only", execution_id)
    return OriginalExecution(
        execution_id=execution_id,
        path=path,
        version=version if isinstance(version, int) and not isinstance(version, bool) and version > 0 else None,
        workload=workload or {},
    )


def reusable(workload: dict[str, Any]) -> dict[str, Any]:
    """The original workload without what must not be sent again (see the module docstring)."""
    return {
        key: value
        for key, value in workload.items()
        if key not in INJECTED_KEYS and key not in _NOETL_INTERNAL_KEYS and value != _NOETL_REDACTED
    }


class Reruns:
    """Reads the execution to rerun and asks NoETL to run it again, by its rerun route or by execute."""

    def __init__(self, noetl: NoetlClient) -> None:
        self.noetl = noetl
        self._announced: set[str] = set()

    async def read(self, execution_id: str) -> OriginalExecution:
        """The execution as NoETL knows it (only its first event: the workload is there in 4.26)."""
        status, answer = await self.noetl.request_json(
            "GET", f"executions/{execution_id}?event_type=playbook.initialized&page_size=10"
        )
        if status == 404:
            raise ExecutionNotFound(execution_id)
        if status >= 400 or not isinstance(answer, dict):
            detail = upstream_detail(answer)
            raise UpstreamError(
                f"NoETL execution lookup failed ({status})" + (f": {detail}" if detail else ""), status, answer
            )
        return original_from(execution_id, answer)

    async def run_again(
        self, original: OriginalExecution, overrides: dict[str, Any], live: dict[str, Any]
    ) -> dict[str, Any]:
        """NoETL's answer for the new execution (``live``: the fresh live-results variables, if any)."""
        # The route merges over the original on NoETL's side: blank what the gateway injected then.
        workload = {**dict.fromkeys(INJECTED_KEYS), **overrides, **live}
        status, answer = await self.noetl.request_json(
            "POST", f"executions/{original.execution_id}/rerun", {"workload": workload}
        )
        if status not in ROUTE_MISSING:
            self._announce("route", "rerunExecution uses NoETL's POST /api/executions/{id}/rerun")
            if status >= 400 or not isinstance(answer, dict):
                detail = upstream_detail(answer)
                raise UpstreamError(
                    f"NoETL rerun failed ({status})" + (f": {detail}" if detail else ""), status, answer
                )
            return answer
        self._announce(
            "fallback",
            f"NoETL has no rerun route (it answered {status}): rerunExecution starts the execution's "
            "playbook version again with its workload (gateway-injected values left out)",
        )
        variables = {**reusable(original.workload), **overrides, **live}
        return await self.noetl.execute(original.path, variables, resource_kind=None, version=original.version)

    def _announce(self, way: str, message: str) -> None:
        if way not in self._announced:
            self._announced.add(way)
            log.info("%s", message)
