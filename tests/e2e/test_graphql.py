"""GraphQL with a session from the real login, against the real NoETL server."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.e2e import catalog
from tests.e2e.conftest import Deployed, Login
from tests.e2e.stack import http_json
from tests.support.gateway import GatewayProcess
from tests.support.graphql_client import error_codes, gql
from tests.support.waiting import wait_for

EXECUTE = """
mutation Run($name: String!, $variables: JSON) {
  executePlaybook(name: $name, variables: $variables) { id executionId requestId name status }
}
"""
EXECUTION = """
query Poll($id: ID!) {
  execution(id: $id) { id executionId path status state finished startTime endTime error }
}
"""


async def execute(
    client: aiohttp.ClientSession, gw: GatewayProcess, session: Login, name: str, variables: Any = None
) -> dict[str, Any]:
    status, body, _ = await gql(client, gw, session.token, EXECUTE, {"name": name, "variables": variables})
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def poll(client: aiohttp.ClientSession, gw: GatewayProcess, session: Login, execution_id: str) -> dict[str, Any]:
    status, body, _ = await gql(client, gw, session.token, EXECUTION, {"id": execution_id})
    assert status == 200 and "errors" not in body, body
    return body["data"]["execution"]  # type: ignore[no-any-return]


def noetl_status(deployed: Deployed, execution_id: str) -> dict[str, Any]:
    """NoETL's own /status answer (completed, failed, completion_inferred), asked directly."""
    status, body = http_json("GET", f"{deployed.noetl_url}/api/executions/{execution_id}/status")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


@pytest.mark.gen_test(timeout=60)
async def test_session_from_the_real_login_works_on_graphql(
    gw: GatewayProcess, alice: Login, client: aiohttp.ClientSession
) -> None:
    status, body, _ = await gql(client, gw, alice.token, "{ health me { userId email displayName roles } }")
    assert status == 200, body
    assert body["data"] == {
        "health": "ok",
        "me": {
            "userId": str(alice.user["user_id"]),
            "email": "alice@e2e.test",
            "displayName": "Alice Analyst",
            "roles": ["analyst"],
        },
    }
    status, body, _ = await gql(client, gw, "sess_not_a_real_session", "{ health }")
    assert status == 401, body


@pytest.mark.gen_test(timeout=60)
async def test_execute_and_poll_until_finished(gw: GatewayProcess, alice: Login, client: aiohttp.ClientSession) -> None:
    body = await execute(client, gw, alice, catalog.ECHO, {"message": "graphql"})
    assert "errors" not in body, body
    started = body["data"]["executePlaybook"]
    assert started["executionId"].isdigit() and started["id"] == started["executionId"]
    assert started["name"] == catalog.ECHO and started["status"] == "started"
    assert started["requestId"] is None  # no clientId: results are polled
    execution_id = started["executionId"]
    seen: list[dict[str, Any]] = []

    async def finished() -> bool:
        seen.append(await poll(client, gw, alice, execution_id))
        return bool(seen[-1]["finished"])

    await wait_for(finished, timeout=30, interval=0.1)
    final = seen[-1]
    assert final["state"] == "COMPLETED" and final["status"] == "COMPLETED", final
    assert final["path"] == catalog.ECHO and final["executionId"] == execution_id
    assert final["startTime"] and final["endTime"] and final["error"] is None


@pytest.mark.gen_test(timeout=60)
async def test_completion_inferred_is_not_finished(
    gw: GatewayProcess, deployed: Deployed, alice: Login, client: aiohttp.ClientSession
) -> None:
    """NoETL can only infer this execution's completion (no terminal event, see dead_end.yaml):
    it answers completed=true, completion_inferred=true, and GET /api/executions/{id} says
    COMPLETED. Polling through the gateway must not call that finished."""
    body = await execute(client, gw, alice, catalog.DEAD_END)
    assert "errors" not in body, body
    execution_id = body["data"]["executePlaybook"]["executionId"]
    await wait_for(lambda: noetl_status(deployed, execution_id)["completion_inferred"], timeout=30, interval=0.1)

    def claims_completed() -> bool:  # its own inference lags /status's at times (its event mirror's writes)
        status, raw = http_json("GET", f"{deployed.noetl_url}/api/executions/{execution_id}")
        return bool(status == 200 and raw["status"] == "COMPLETED")

    await wait_for(claims_completed, timeout=30, interval=0.1)  # what NoETL claims; the gateway must look further
    polled = await poll(client, gw, alice, execution_id)
    assert polled["finished"] is False, polled
    assert polled["state"] not in ("COMPLETED", "FAILED", "CANCELLED"), polled


@pytest.mark.gen_test(timeout=60)
async def test_execute_needs_permission(gw: GatewayProcess, bob: Login, client: aiohttp.ClientSession) -> None:
    body = await execute(client, gw, bob, catalog.ECHO)
    assert body["data"] is None, body
    assert error_codes(body) == ["FORBIDDEN"], body
    assert body["errors"][0]["message"] == f"execute access to {catalog.ECHO} denied"


@pytest.mark.gen_test(timeout=60)
async def test_unknown_playbook_and_unknown_execution(
    gw: GatewayProcess, alice: Login, client: aiohttp.ClientSession
) -> None:
    body = await execute(client, gw, alice, "e2e/no_such_playbook")  # allowed by e2e/%, unknown to NoETL
    assert error_codes(body) == ["UPSTREAM_ERROR"], body
    assert "Playbook not found" in body["errors"][0]["message"] or "404" in body["errors"][0]["message"], body
    status, answer, _ = await gql(client, gw, alice.token, EXECUTION, {"id": "1"})
    assert status == 200 and answer["data"] == {"execution": None}, answer


@pytest.mark.gen_test(timeout=60)
async def test_proxy_request_reaches_noetl(gw: GatewayProcess, alice: Login, client: aiohttp.ClientSession) -> None:
    query = "mutation($i: ProxyRequestInput!) { proxyRequest(input: $i) { success status data error } }"
    status, body, _ = await gql(client, gw, alice.token, query, {"i": {"method": "GET", "endpoint": "/api/health"}})
    assert status == 200, body
    assert body["data"]["proxyRequest"] == {"success": True, "status": 200, "data": {"status": "ok"}, "error": None}
