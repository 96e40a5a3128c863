"""``playbook/state`` by polling NoETL's ``/api/executions/{id}/status`` when its event mirror is off."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import GatewayFactory, Standin
from tests.standin.lifecycle import STEPS_THEN_DONE, steps_then_done
from tests.support.live import services_of
from tests.support.signin import login
from tests.support.sse_client import SseStream, init_of, streaming
from tests.test_sse_roundtrip import execute


def states(stream: SseStream) -> list[tuple[str, str | None, str]]:
    return [
        (p["event_type"], p["step_name"], p["status"])
        for p in (e.json["params"] for e in stream.named("playbook/state"))
    ]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("nats", ["nats", "no-nats"])
async def test_steps_and_the_end_by_polling_for_the_waiting_client_only(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession, nats: str
) -> None:
    gw = await make_gateway(GATEWAY_PLAYBOOK_STATE_POLL_SECS="0.05", **({} if nats == "nats" else {"NATS_URL": ""}))
    # The shared nats-server has no NOETL_EVENTS stream (and without NATS there is none to read).
    assert services_of(gw).live.playbook_state_source == "polling"
    standin.state.playbooks[STEPS_THEN_DONE] = steps_then_done  # ends without calling back: only NoETL knows
    gate = standin.state.gates[STEPS_THEN_DONE] = asyncio.Event()
    token = await login(client, gw)
    bystander = await login(client, gw, "good:bob@example.com")
    async with streaming(client, gw.url, token) as stream, streaming(client, gw.url, bystander) as other:
        started = await execute(client, gw, token, STEPS_THEN_DONE, {}, init_of(stream)["clientId"])
        execution_id = started["executionId"]
        await stream.wait_for(lambda e: e.event == "playbook/state", timeout=10)
        gate.set()
        await stream.wait_for(lambda e: e.event == "playbook/state" and "playbook." in e.data, timeout=10)
        assert states(stream) == [
            ("step.exit", "fetch", "COMPLETED"),
            ("step.exit", "render", "COMPLETED"),
            ("playbook.completed", None, "completed"),
        ]
        assert {e.json["params"]["execution_id"] for e in stream.named("playbook/state")} == {execution_id}
        assert standin.state.calls_to(f"/api/executions/{execution_id}/status")
        assert execution_id not in services_of(gw).live.states.poller.watched  # the end ends the polling
        assert not other.named("playbook/state")  # no pending request for it there


@pytest.mark.gen_test(timeout=30)
async def test_each_round_asks_noetl_about_at_most_the_bound(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    # A long interval: the test runs the rounds itself.
    gw = await make_gateway(GATEWAY_PLAYBOOK_STATE_POLL_SECS="3600", GATEWAY_PLAYBOOK_STATE_POLL_MAX="2")
    standin.state.playbooks[STEPS_THEN_DONE] = steps_then_done
    standin.state.gates[STEPS_THEN_DONE] = asyncio.Event()  # never opened: they keep running
    token = await login(client, gw)
    poller = services_of(gw).live.states.poller
    async with streaming(client, gw.url, token) as stream:
        client_id = init_of(stream)["clientId"]
        ids = [(await execute(client, gw, token, STEPS_THEN_DONE, {}, client_id))["executionId"] for _ in range(3)]
        assert list(poller.watched) == ids

        def polled() -> list[str]:
            return [c.path.split("/")[3] for c in standin.state.calls if c.path.endswith("/status")]

        await poller.poll_round()
        assert sorted(polled()) == sorted(ids[:2])
        await poller.poll_round()  # round robin: the third, then the oldest again
        assert sorted(polled()) == sorted([*ids[:2], ids[2], ids[0]])
        await stream.wait_for(lambda e: len(stream.named("playbook/state")) == 3)  # each execution's step, once
        assert states(stream) == [("step.exit", "fetch", "COMPLETED")] * 3


@pytest.mark.gen_test
async def test_polling_off_and_no_mirror_is_said(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(GATEWAY_PLAYBOOK_STATE_POLL_SECS="0")
    assert services_of(gw).live.playbook_state_source == "off"
