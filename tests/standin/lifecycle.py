"""Execution lifecycle as NoETL 4.26 shows it: steps in ``/status``, events on its JetStream mirror.

DEVELOPMENT STAND-IN — not NoETL. ``steps_then_done`` is a playbook that completes steps (listed
by ``/api/executions/{id}/status`` under ``completed_steps``) and ends without any callback, as a
playbook that only NoETL itself reports on. ``noetl_event`` / ``publish_events`` build and publish
events the way NoETL's mirror does (``NOETL_EVENT_MIRROR_ENABLED=true``): stream ``NOETL_EVENTS`` on
``noetl.events.>``, subject ``noetl.events.{tenant}.{org}.{execution_id}.{shard}``, JSON with sorted
keys, an integer ``execution_id``, ``created_at`` as ``str(datetime)`` (a space, not a ``T``).
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.standin.server import PlaybookRun

STEPS_THEN_DONE = "tests/steps_then_done"
STREAM = "NOETL_EVENTS"
SUBJECTS = "noetl.events.>"
CREATED_AT = "2026-07-26 16:40:11.123456+00:00"
_event_ids = itertools.count(612_000_000_000_000_001)


async def steps_then_done(run: PlaybookRun) -> None:
    """Step ``fetch``, the playbook's gate, step ``render``, then done (no callback at all)."""
    run.execution.completed_steps.append("fetch")
    await run.gate()
    run.execution.completed_steps.append("render")


def noetl_event(execution_id: int, event_type: str, node_name: str, status: str) -> dict[str, Any]:
    """One event of NoETL's log, with the keys its mirror publishes."""
    return {
        "catalog_id": 880_000_000_000_000_001,
        "context": {},
        "created_at": CREATED_AT,
        "duration": None,
        "error": None,
        "event_id": next(_event_ids),
        "event_time": CREATED_AT,
        "event_type": event_type,
        "execution_id": execution_id,
        "ingest_time": CREATED_AT,
        "meta": {},
        "node_id": node_name,
        "node_name": node_name,
        "parent_event_id": None,
        "parent_execution_id": None,
        "result": None,
        "status": status,
        "worker_id": "worker-1",
    }


def subject_of(event: dict[str, Any]) -> str:
    """NoETL 4.26's subject: no tenant or organisation yet, one shard."""
    return f"noetl.events.default.default.{event['execution_id']}.0"


async def create_stream(js: Any) -> None:
    """The stream NoETL creates when its mirror starts."""
    await js.add_stream(name=STREAM, subjects=[SUBJECTS], max_age=86400, storage="file")


async def publish_events(js: Any, events: list[dict[str, Any]]) -> None:
    """Publish like NoETL: ``json.dumps(sort_keys=True, default=str)``, so ids stay exact integers."""
    for event in events:
        payload = json.dumps(event, default=str, sort_keys=True, separators=(",", ":")).encode()
        await js.publish(subject_of(event), payload, stream=STREAM)
