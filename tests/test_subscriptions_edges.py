"""Two edges of "nothing lost between executePlaybook and the subscription" (issue 17).

* graphql-ws: ``executePlaybook`` right after ``connection_ack`` without a ``clientId`` uses the
  socket's leased client id, whose record the write-behind writes later: the owner check must not
  depend on that write (here the write-behind is stopped, as when it is busy with a long batch).
* A subscription to a request whose result was already delivered (by an ``/events`` stream, or by
  an earlier subscription) replays that request's retained events, then completes — for the same
  session only.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.tasks import stop_tasks
from tests.conftest import Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance
from tests.support.graphql_node import node_run
from tests.support.live import services_of
from tests.test_graphql_ws import EXECUTE, signed_in
from tests.test_subscriptions_node import assert_progress_then_result, node_graphql  # noqa: F401


async def stop_write_behind(gw: GatewayInstance) -> None:
    """The write-behind writes nothing from now (its tasks end; the gateway's close still flushes)."""
    await stop_tasks(*services_of(gw).live.writes._tasks)


@pytest.mark.gen_test(timeout=30)
async def test_execute_right_after_the_ack_owns_the_leased_client_before_its_record_is_written(
    gateway: GatewayInstance, standin: Standin, token: str
) -> None:
    standin.state.gates[playbooks.PROGRESS_RESULT] = asyncio.Event()  # the playbook waits: no result
    await stop_write_behind(gateway)
    ws = await signed_in(gateway, token)
    live = services_of(gateway).live
    client_id = next(iter(services_of(gateway).subscriptions.subscribers._clients))
    assert live.writes.backlog == 1 and live.clients.bucket.get_local(client_id) is None  # not written
    started = await ws.run("start", EXECUTE, {"name": playbooks.PROGRESS_RESULT})
    assert started[0]["type"] == "next" and not started[0]["payload"].get("errors"), started
    assert started[0]["payload"]["data"]["executePlaybook"]["requestId"], started
    ws.close()


@pytest.mark.gen_test(timeout=60)
async def test_the_npm_graphql_ws_client_starts_a_playbook_before_its_client_record_is_written(
    node_graphql: str,  # noqa: F811
    gateway: GatewayInstance,
    standin: Standin,
    token: str,
) -> None:
    gate = standin.state.gates[playbooks.PROGRESS_RESULT] = asyncio.Event()
    await stop_write_behind(gateway)
    async with node_run(node_graphql, gateway, token, "wsPlaybook", PLAYBOOK=playbooks.PROGRESS_RESULT) as run:
        started = (await run.until("started"))["started"]
        assert not started.get("errors"), run.seen
        await run.until("event")
        gate.set()
        await run.until("eventComplete")
        assert_progress_then_result(run.events(), started["data"]["executePlaybook"]["executionId"])
