"""``playbook/state``: the synthetic frame before each result, its shape, and NoETL events mapped to frames."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from gateway.live.lifecycle import execution_id_of_subject, rfc3339, state_from_noetl
from tests.standin import playbooks
from tests.standin.lifecycle import CREATED_AT, noetl_event
from tests.support.gateway import GatewayInstance, call
from tests.support.live import callback_headers, pending_request, post_result
from tests.support.sse_client import SseStream, init_of, open_stream, streaming
from tests.support.waiting import wait_for
from tests.test_live_resume import disconnected
from tests.test_sse_roundtrip import execute

BIG_ID = 2**53 + 1  # a JavaScript number would turn it into 9007199254740992


def lifecycle(stream: SseStream) -> list[str]:
    return [e.event for e in stream.events if e.event.startswith("playbook/")]


def assert_recent(at: str) -> None:
    moment = datetime.fromisoformat(at)
    assert "T" in at and moment.tzinfo is not None, at
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=1)


@pytest.mark.gen_test
async def test_completed_frame_before_the_result_with_the_execution_id_as_text(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    async with streaming(client, gateway.url, token) as stream:
        client_id = init_of(stream)["clientId"]
        started = await execute(client, gateway, token, playbooks.PROGRESS_RESULT, {"q": 1}, client_id)
        result = await stream.next_named("playbook/result")
        assert lifecycle(stream) == ["playbook/progress", "playbook/state", "playbook/result"]
        state = stream.named("playbook/state")[0]
        params = state.json["params"]
        assert state.json == {
            "jsonrpc": "2.0",
            "method": "playbook/state",
            "params": {
                "execution_id": started["executionId"],
                "event_type": "playbook.completed",
                "step_name": None,
                "status": "completed",
                "at": params["at"],
            },
        }
        assert isinstance(params["execution_id"], str) and params["execution_id"].isdigit()
        assert_recent(params["at"])
        assert state.id is not None and result.id is not None and int(state.id) < int(result.id)


@pytest.mark.gen_test
async def test_failed_callback_gives_a_failed_frame(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    async with streaming(client, gateway.url, token) as stream:
        started = await execute(client, gateway, token, playbooks.FAILING, {}, init_of(stream)["clientId"])
        result = await stream.next_named("playbook/result")
        assert result.json["params"]["status"] == "FAILED"
        assert lifecycle(stream) == ["playbook/state", "playbook/result"]
        params = stream.named("playbook/state")[0].json["params"]
        assert (params["execution_id"], params["event_type"], params["status"], params["step_name"]) == (
            started["executionId"],
            "playbook.failed",
            "failed",
            None,
        )


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"execution_id": None}, ("9001", "playbook.completed")),  # from the pending request
        ({"execution_id": BIG_ID}, (str(BIG_ID), "playbook.completed")),  # a JSON integer above 2^53, exact
        ({"status": "COMPLETED", "error": {"message": "half done"}}, ("9001", "playbook.failed")),  # an error fails
    ],
)
async def test_callback_fields_decide_the_frame(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str, body: dict[str, Any], expected: tuple[str, str]
) -> None:
    async with streaming(client, gateway.url, token) as stream:
        request_id = await pending_request(gateway, token, init_of(stream)["clientId"])
        status, _ = await post_result(client, gateway, request_id, body, headers=callback_headers(request_id))
        assert status == 200
        await stream.next_named("playbook/result")
        state = stream.named("playbook/state")
        assert len(state) == 1
        assert (state[0].json["params"]["execution_id"], state[0].json["params"]["event_type"]) == expected


@pytest.mark.gen_test
async def test_client_id_resume_replays_the_frame_with_its_queued_result(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    first = await open_stream(client, gateway.url, token)
    client_id = init_of(first)["clientId"]
    request_id = await pending_request(gateway, token, client_id)
    await first.close()
    await wait_for(lambda: disconnected(gateway, client_id))
    status, answer = await post_result(client, gateway, request_id, headers=callback_headers(request_id))
    assert (status, answer) == (202, {"status": "queued", "clientDisconnected": True})
    async with streaming(client, gateway.url, token, client_id=client_id) as again:  # a page reload
        await again.next_named("playbook/result")
        assert lifecycle(again) == ["playbook/state", "playbook/result"]
        assert again.named("playbook/state")[0].json["params"]["execution_id"] == "9001"


@pytest.mark.gen_test
async def test_init_advertises_playbook_state_and_ready_names_its_source(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    async with streaming(client, gateway.url, token) as stream:
        assert init_of(stream)["capabilities"] == {
            "playbooks": True,
            "callbacks": True,
            "subscriptions": True,  # GraphQL subscriptions: graphql-ws and graphql-sse
            "playbookState": True,
        }
    # The shared test nats-server has no NOETL_EVENTS stream: NoETL's mirror is off, so polling.
    status, body, _ = await call(client, "GET", f"{gateway.url}/health/ready")
    assert status == 200 and body["playbook_state"] == "polling"


# -- NoETL events to frames (what the JetStream reader and the e2e suite rely on) ------------


def test_noetl_playbook_end_is_lowercased_with_a_null_step_and_an_rfc3339_time() -> None:
    event = json.loads(json.dumps(noetl_event(BIG_ID, "playbook.completed", "travel/planner", "Completed")))
    assert state_from_noetl(event) == {
        "execution_id": str(BIG_ID),
        "event_type": "playbook.completed",
        "step_name": None,
        "status": "completed",
        "at": "2026-07-26T16:40:11.123456+00:00",
    }


def test_noetl_step_exit_keeps_its_step_and_status() -> None:
    params = state_from_noetl(noetl_event(635758340626186455, "step.exit", "fetch_offers", "COMPLETED"))
    assert params is not None
    assert (params["execution_id"], params["step_name"], params["status"]) == (
        "635758340626186455",
        "fetch_offers",
        "COMPLETED",
    )


@pytest.mark.parametrize("event_type", ["workflow.completed", "step.enter", "command.completed", "playbook.started"])
def test_other_noetl_events_are_not_forwarded(event_type: str) -> None:
    assert state_from_noetl(noetl_event(7, event_type, "x", "COMPLETED")) is None


def test_execution_id_from_the_subject_when_the_event_has_none() -> None:
    event = {"event_type": "playbook.failed", "created_at": CREATED_AT}
    subject_id = execution_id_of_subject("noetl.events.default.default.635758340626186455.0", "noetl.events.")
    params = state_from_noetl(event, subject_id)
    assert params is not None and params["execution_id"] == "635758340626186455" and params["status"] == "failed"
    assert state_from_noetl(event, execution_id_of_subject("other.events.a.b.1.0", "noetl.events.")) is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-07-26 16:40:11.123456+00:00", "2026-07-26T16:40:11.123456+00:00"),
        ("2026-07-26 16:40:11", "2026-07-26T16:40:11+00:00"),  # naive: NoETL's clock is UTC
        ("2026-07-26T18:40:11+02:00", "2026-07-26T18:40:11+02:00"),
        ("yesterday", None),
        (None, None),
    ],
)
def test_timestamps_are_normalised(given: Any, expected: str | None) -> None:
    assert rfc3339(given) == expected
