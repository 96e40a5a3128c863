"""Query fields: health, version, me, execution(id) with NoETL's answer mapped to typed fields."""

from __future__ import annotations

import time

import aiohttp
import pytest

from gateway.executions.describe import describe_execution
from gateway.version import __version__
from tests.conftest import GatewayFactory, Standin
from tests.standin.server import Execution
from tests.support.gateway import GatewayInstance
from tests.support.graphql_client import error_codes, gql
from tests.support.nats_server import free_port
from tests.support.signin import login

EXECUTION_FIELDS = """
  id executionId path status state finished progress startTime endTime durationSeconds
  result error errorDetails parentExecutionId
"""


@pytest.mark.gen_test
async def test_health_version_me(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    token = await login(client, gateway, "good:bob@example.com")
    status, body, _ = await gql(client, gateway, token, "{ health version me { userId email displayName roles } }")
    assert status == 200, body
    data = body["data"]
    assert data["health"] == "ok" and data["version"] == __version__
    me = data["me"]
    assert me["email"] == "bob@example.com" and me["displayName"] == "bob@example.com"
    assert me["userId"].isdigit() and me["roles"] == ["admin", "analyst"]


@pytest.mark.gen_test
async def test_execution_status_fields(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    done = Execution("9001", "tests/noop", {}, status="COMPLETED", result={"answer": 42, "rows": [1, 2]})
    failed = Execution("9002", "tests/failing", {}, status="FAILED", error="step http_call failed")
    running = Execution("9003", "tests/noop", {}, status="RUNNING")
    for execution in (done, failed, running):
        standin.state.executions[execution.execution_id] = execution
    query = f"""query($a: ID!, $b: ID!) {{
      done: execution(id: $a) {{ {EXECUTION_FIELDS} raw }}
      failed: execution(id: $b) {{ {EXECUTION_FIELDS} }}
      running: execution(id: 9003) {{ {EXECUTION_FIELDS} }}
      unknown: execution(id: "123") {{ id }}
    }}"""
    status, body, _ = await gql(client, gateway, token, query, {"a": "9001", "b": 9002})
    assert status == 200 and "errors" not in body, body
    data = body["data"]
    got = data["done"]
    assert got["id"] == got["executionId"] == "9001"
    assert (got["path"], got["status"], got["state"], got["finished"]) == ("tests/noop", "COMPLETED", "COMPLETED", True)
    assert got["progress"] == 100.0
    assert got["result"] == {"answer": 42, "rows": [1, 2]}
    assert got["startTime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(done.created_at))
    assert got["endTime"] is None and got["durationSeconds"] is None
    assert got["error"] is None and got["errorDetails"] is None
    assert got["raw"]["execution_id"] == "9001"
    assert data["failed"]["state"] == "FAILED" and data["failed"]["finished"] is True
    assert data["failed"]["error"] == "step http_call failed"
    assert data["running"]["state"] == "RUNNING" and data["running"]["finished"] is False
    assert data["running"]["progress"] == 50.0
    assert data["unknown"] is None  # NoETL 404 → null, not an error
    asked = sorted(call.path for call in standin.state.calls if call.path.startswith("/api/executions/"))
    assert asked == [
        "/api/executions/123",
        "/api/executions/9001",
        "/api/executions/9001/status",  # finished executions are confirmed on /status
        "/api/executions/9002",
        "/api/executions/9002/status",
        "/api/executions/9003",
    ]


@pytest.mark.gen_test
async def test_inferred_completion_is_not_finished(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    """NoETL's summary can say COMPLETED early; /status's completion_inferred says it is not done."""
    standin.state.executions["9100"] = Execution("9100", "tests/noop", {}, status="COMPLETED", completion_inferred=True)
    status, body, _ = await gql(client, gateway, token, "{ execution(id: 9100) { status state finished } }")
    assert status == 200 and "errors" not in body, body
    assert body["data"]["execution"] == {"status": "COMPLETED", "state": "RUNNING", "finished": False}


@pytest.mark.gen_test
async def test_execution_id_must_be_numeric(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    for bad in ("abc", "12a", "../1", "1 OR 1=1", "", "1/2", "%31"):
        status, body, _ = await gql(
            client, gateway, token, "query($id: ID!) { execution(id: $id) { id } }", {"id": bad}
        )
        assert status == 200 and body["data"] == {"execution": None}, bad
        assert error_codes(body) == ["BAD_USER_INPUT"] and "numeric" in body["errors"][0]["message"]
    assert not [c for c in standin.state.calls if c.path.startswith("/api/executions")]


@pytest.mark.gen_test
async def test_execution_when_noetl_is_down(make_gateway: GatewayFactory, client: aiohttp.ClientSession) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gw = await make_gateway(NOETL_BASE_URL=dead, GATEWAY_AUTH_BYPASS="true", NATS_URL="")
    status, body, _ = await gql(client, gw, "dev-token", '{ health execution(id: "1") { id } }')
    assert status == 200
    assert body["data"] == {"health": "ok", "execution": None}
    assert error_codes(body) == ["UPSTREAM_UNAVAILABLE"] and dead not in str(body)


def test_execution_mapping_tolerates_other_spellings() -> None:
    """NoETL versions spell things differently; the typed fields stay the same."""
    mapped = describe_execution(
        "77",
        {
            "id": 77,
            "playbook_path": "a/b",
            "state": "succeeded",
            "started_at": 1_700_000_000_000,  # epoch milliseconds
            "completed_at": "2023-11-14T22:13:30+00:00",
            "progress": "75.5",
            "output": [1],
            "error": {"message": "boom", "step": "x"},
            "parent_execution_id": 5,
        },
    )
    assert mapped["executionId"] == "77" and mapped["path"] == "a/b"
    assert (mapped["status"], mapped["state"], mapped["finished"]) == ("SUCCEEDED", "COMPLETED", True)
    assert mapped["startTime"] == "2023-11-14T22:13:20Z" and mapped["durationSeconds"] == 10.0
    assert mapped["progress"] == 75.5 and mapped["result"] == [1]
    assert mapped["error"] == "boom" and mapped["errorDetails"] == {"message": "boom", "step": "x"}
    assert mapped["parentExecutionId"] == "5"
    odd = describe_execution("1", {"status": "weird", "progress": "n/a", "start_time": "not a date"})
    assert (odd["state"], odd["progress"], odd["startTime"], odd["durationSeconds"]) == (
        "UNKNOWN",
        None,
        "not a date",
        None,
    )


@pytest.mark.gen_test
async def test_unexpected_resolver_errors_are_internal_and_logged(
    gateway: GatewayInstance, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture, token: str
) -> None:
    """A bug in a resolver: the client sees INTERNAL and a generic message, the log has the detail."""
    assert gateway.app is not None
    version = gateway.app.settings["graphql"].schema.query_type.fields["version"]
    original = version.resolve

    def broken(_root: object, _info: object) -> str:
        raise RuntimeError("connect to http://10.0.0.7:8082/api/secret failed")

    version.resolve = broken
    try:
        status, body, _ = await gql(client, gateway, token, "{ health version }")
    finally:
        version.resolve = original
    assert status == 200
    assert body["data"] is None  # version is non-null, so the error nulls the whole data
    assert body["errors"] == [
        {
            "message": "Internal server error",
            "locations": [{"line": 1, "column": 10}],
            "path": ["version"],
            "extensions": {"code": "INTERNAL"},
        }
    ]
    assert "10.0.0.7" in caplog.text and "resolver failed at version" in caplog.text
