"""A real JavaScript client: Node runs what the travel SPA does for a chat turn (tests/node/travel_spa.mjs).

EventSource (the npm ``eventsource`` package, installed from tests/node's lock file with ``npm ci``),
``executePlaybook`` with Node's fetch, then the wait for ``playbook.completed`` of that execution id.
Against the reference-era gateway without ``playbook/state`` it waits out its ceiling; here it must
finish in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance
from tests.support.node_packages import node_with_packages

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "travel_spa.mjs"


@pytest.fixture(scope="session")
def node_spa() -> str:
    """The node binary, with tests/node's packages installed (``npm ci``, once, when missing or stale)."""
    return node_with_packages(NODE_DIR)


async def line_of(process: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    assert process.stdout is not None
    raw = await asyncio.wait_for(process.stdout.readline(), timeout)
    assert raw, "the script ended without a word"
    line: dict[str, Any] = json.loads(raw)
    return line


@pytest.mark.gen_test(timeout=60)
async def test_travel_spa_turn_ends_on_playbook_completed_in_seconds(
    node_spa: str, gateway: GatewayInstance, standin: Standin, token: str
) -> None:
    # The playbook holds its result until the script waits: like a real one, slower than the UI.
    gate = standin.state.gates[playbooks.PROGRESS_RESULT] = asyncio.Event()
    env = {
        **os.environ,
        "GATEWAY_URL": gateway.url,
        "SESSION_TOKEN": token,
        "PLAYBOOK": playbooks.PROGRESS_RESULT,
        "WAIT_MS": "30000",  # a failure shows in 30 s, not at the SPA's 180 s
    }
    process = await asyncio.create_subprocess_exec(
        node_spa, str(SCRIPT), cwd=NODE_DIR, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        waiting = await line_of(process, 20)
        assert "waiting" in waiting, waiting
        execution_id = waiting["waiting"]
        assert execution_id in standin.state.executions
        gate.set()
        done = await line_of(process, 20)
        assert "done" in done, done
        assert done["done"]["execution_id"] == execution_id
        assert done["done"]["event_type"] == "playbook.completed"
        assert done["ms"] < 10_000, done
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            with contextlib.suppress(Exception):
                await process.wait()
