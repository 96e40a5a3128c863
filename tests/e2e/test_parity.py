"""The reference gateway's newer GraphQL fields against the real NoETL 4.26 (issue 15):
``resourceKind`` reaches NoETL's catalog-kind filter, and ``rerunExecution`` falls back (4.26 has
no rerun route) to starting the playbook again with the original workload and fresh live results."""

from __future__ import annotations

import aiohttp
import pytest

from tests.e2e import catalog
from tests.e2e.conftest import Login
from tests.e2e.test_live import params, run_live
from tests.support.gateway import GatewayProcess
from tests.support.graphql_client import error_codes, gql
from tests.support.sse_client import init_of

RUN_KIND = """mutation($k: ExecutableResourceKind) {
  executePlaybook(name: "e2e/echo", variables: {message: "kind"}, resourceKind: $k) { executionId }
}"""
RERUN = """mutation($id: ID!, $v: JSON, $c: String) {
  rerunExecution(executionId: $id, variables: $v, clientId: $c) { executionId requestId name status }
}"""


@pytest.mark.gen_test(timeout=60)
async def test_resource_kind_reaches_noetls_catalog_filter(
    gw: GatewayProcess, alice: Login, client: aiohttp.ClientSession
) -> None:
    status, body, _ = await gql(client, gw, alice.token, RUN_KIND, {"k": "PLAYBOOK"})
    assert status == 200 and body["data"]["executePlaybook"]["executionId"].isdigit(), body
    # e2e/echo is a playbook: NoETL 4.26 finds no *agent* at that path.
    status, body, _ = await gql(client, gw, alice.token, RUN_KIND, {"k": "AGENT"})
    assert error_codes(body) == ["UPSTREAM_ERROR"], body
    assert body["errors"][0]["extensions"]["upstreamStatus"] == 404
    assert "Executable catalog entry not found" in body["errors"][0]["message"]


@pytest.mark.gen_test(timeout=90)
async def test_rerun_falls_back_and_its_result_arrives_with_fresh_ids(
    gw: GatewayProcess, alice: Login, client: aiohttp.ClientSession
) -> None:
    variables = {"numbers": [1, 2, 4], "label": "first"}
    async with run_live(client, gw, alice, catalog.ASYNC_PROGRESS, variables) as (stream, request_id, execution_id):
        first = await stream.wait_for(lambda e: e.event == "playbook/result", timeout=30)
        assert params(first)["data"] == {"label": "first", "count": 3, "total": 7}
        status, body, _ = await gql(
            client,
            gw,
            alice.token,
            RERUN,
            {"id": execution_id, "v": {"label": "again"}, "c": init_of(stream)["clientId"]},
        )
        assert status == 200 and "errors" not in body, body
        again = body["data"]["rerunExecution"]
        assert again["executionId"].isdigit() and again["executionId"] != execution_id
        assert again["requestId"] and again["requestId"] != request_id
        assert again["name"] == catalog.ASYNC_PROGRESS and again["status"] == "started"
        # The real worker called back with the new run's token (the old one is spent): the numbers
        # came from the original workload, the label from the rerun's variables.
        result = await stream.wait_for(
            lambda e: e.event == "playbook/result" and params(e)["requestId"] == again["requestId"], timeout=30
        )
        assert params(result) == {
            "requestId": again["requestId"],
            "executionId": again["executionId"],
            "status": "COMPLETED",
            "data": {"label": "again", "count": 3, "total": 7},
        }


@pytest.mark.gen_test(timeout=60)
async def test_a_viewer_may_not_rerun_what_it_may_not_execute(
    gw: GatewayProcess, alice: Login, bob: Login, client: aiohttp.ClientSession
) -> None:
    _, body, _ = await gql(client, gw, alice.token, RUN_KIND, {"k": "PLAYBOOK"})
    execution_id = body["data"]["executePlaybook"]["executionId"]
    status, body, _ = await gql(client, gw, bob.token, RERUN, {"id": execution_id})
    assert status == 200 and error_codes(body) == ["FORBIDDEN"], body
    assert body["data"] == {"rerunExecution": None}
