"""playbook/state with the real NoETL, its event mirror on (NOETL_EVENT_MIRROR_ENABLED=true, stream NOETL_EVENTS).

Frames for real steps and a real end, in order, before the result; for playbooks that never call
back, NoETL's own playbook.completed / playbook.failed end the client's wait.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp
import pytest
from tornado.ioloop import IOLoop

from tests.e2e.conftest import Login
from tests.e2e.stack import http_json
from tests.e2e.test_live import params, run_live
from tests.support.gateway import GatewayProcess
from tests.support.sse_client import SseStream
from tests.support.waiting import wait_for

STEPS = "e2e/state_steps"
FAIL = "e2e/state_fail"
ECHO = "e2e/echo"


async def mirror_is_read(gw: GatewayProcess) -> None:
    """The gateway reads NoETL's event stream (NoETL creates it with its first mirrored event: a login)."""

    def source() -> bool:
        status, body = http_json("GET", f"{gw.url}/health/ready", timeout=5)
        return status == 200 and body["playbook_state"] == "nats"

    await wait_for(source, timeout=30, interval=0.5)


@pytest.fixture
def mirrored(io_loop: IOLoop, gw: GatewayProcess) -> GatewayProcess:
    """The gateway, once it reads NoETL's event stream: where every test here starts."""
    io_loop.run_sync(lambda: mirror_is_read(gw), timeout=40)
    return gw


def states(stream: SseStream, execution_id: str) -> list[dict[str, Any]]:
    frames = [params(e) for e in stream.named("playbook/state")]
    return [frame for frame in frames if frame["execution_id"] == execution_id]


def assert_shape(frame: dict[str, Any], execution_id: str) -> None:
    assert set(frame) == {"execution_id", "event_type", "step_name", "status", "at"}, frame
    assert frame["execution_id"] == execution_id and execution_id.isdigit()
    assert "T" in frame["at"] and datetime.fromisoformat(frame["at"]).tzinfo is not None, frame


@pytest.mark.gen_test(timeout=90)
async def test_real_steps_then_the_end_before_the_result(
    mirrored: GatewayProcess, alice: Login, client: aiohttp.ClientSession
) -> None:
    async with run_live(client, mirrored, alice, STEPS, {"label": "planner"}) as (stream, request_id, execution_id):
        result = await stream.next_named("playbook/result", timeout=60)
        assert params(result)["data"] == {"answer": "PLANNER"} and params(result)["requestId"] == request_id
        frames = states(stream, execution_id)
        for frame in frames:
            assert_shape(frame, execution_id)
        kinds = [(f["event_type"], f["step_name"]) for f in frames]
        assert ("step.exit", "start") in kinds, kinds  # from NoETL's own events
        assert kinds[-1] == ("playbook.completed", None), kinds  # the end, last
        assert all(kind == "step.exit" for kind, _ in kinds[:-1]), kinds
        assert frames[-1]["status"] == "completed"
        # All of it before the result, in the stream's order.
        state_events = [e for e in stream.named("playbook/state") if params(e)["execution_id"] == execution_id]
        assert all(stream.events.index(e) < stream.events.index(result) for e in state_events)
        assert [int(e.id or 0) for e in state_events] == sorted(int(e.id or 0) for e in state_events)


async def _ended(stream: SseStream, execution_id: str, event_type: str) -> dict[str, Any]:
    event = await stream.wait_for(
        lambda e: (
            e.event == "playbook/state"
            and params(e)["execution_id"] == execution_id
            and params(e)["event_type"] == event_type
        ),
        timeout=60,
    )
    return params(event)


@pytest.mark.gen_test(timeout=90)
async def test_noetl_own_completion_ends_the_wait_of_a_playbook_without_callback(
    mirrored: GatewayProcess, alice: Login, client: aiohttp.ClientSession
) -> None:
    async with run_live(client, mirrored, alice, ECHO, {"message": "no callback"}) as (stream, _, execution_id):
        end = await _ended(stream, execution_id, "playbook.completed")
        assert_shape(end, execution_id)
        assert (end["step_name"], end["status"]) == (None, "completed")
        kinds = [(f["event_type"], f["step_name"]) for f in states(stream, execution_id)]
        assert ("step.exit", "start") in kinds and kinds.index(("step.exit", "start")) < len(kinds) - 1, kinds
        assert not stream.named("playbook/result")


@pytest.mark.gen_test(timeout=90)
async def test_noetl_own_failure_ends_the_wait(
    mirrored: GatewayProcess, alice: Login, client: aiohttp.ClientSession
) -> None:
    async with run_live(client, mirrored, alice, FAIL, {"reason": "no coffee"}) as (stream, _, execution_id):
        end = await _ended(stream, execution_id, "playbook.failed")
        assert_shape(end, execution_id)
        assert (end["step_name"], end["status"]) == (None, "failed")
        kinds = [(f["event_type"], f["step_name"]) for f in states(stream, execution_id)]
        assert kinds.index(("step.exit", "start")) < kinds.index(("playbook.failed", None)), kinds
