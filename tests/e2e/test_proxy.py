"""The ``/noetl/*`` proxy in front of the real NoETL server."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.e2e import catalog
from tests.e2e.conftest import Login
from tests.support.gateway import GatewayProcess, call
from tests.support.waiting import wait_for


async def start_echo(client: aiohttp.ClientSession, gw: GatewayProcess, session: Login, message: str) -> str:
    """POST /noetl/execute: the proxy runs the access check, then NoETL starts the playbook."""
    status, body, _ = await call(
        client,
        "POST",
        f"{gw.url}/noetl/execute",
        {"path": catalog.ECHO, "payload": {"message": message}},
        headers=session.headers,
    )
    assert status == 200, body
    assert body["status"] == "started" and body["execution_id"].isdigit(), body
    return str(body["execution_id"])


@pytest.mark.gen_test(timeout=60)
async def test_execution_through_the_proxy(gw: GatewayProcess, alice: Login, client: aiohttp.ClientSession) -> None:
    execution_id = await start_echo(client, gw, alice, "via the proxy")
    seen: dict[str, Any] = {}

    async def finished() -> bool:
        """NoETL's rule: done only when (completed or failed) and not completion_inferred."""
        status, body, headers = await call(
            client, "GET", f"{gw.url}/noetl/executions/{execution_id}/status?full=true", headers=alice.headers
        )
        assert status == 200, body
        seen.update(status=body, headers=headers)
        return bool((body["completed"] or body["failed"]) and not body["completion_inferred"])

    await wait_for(finished, timeout=30, interval=0.2)
    assert seen["status"]["completed"] is True, seen
    assert seen["status"]["variables"]["start"]["echo"] == "via the proxy"  # the step's result
    assert seen["headers"]["Content-Type"].startswith("application/json")
    status, body, _ = await call(client, "GET", f"{gw.url}/noetl/executions/{execution_id}", headers=alice.headers)
    assert status == 200, body
    assert body["execution_id"] == execution_id
    assert body["path"] == catalog.ECHO
    assert body["status"] == "COMPLETED"


@pytest.mark.gen_test(timeout=60)
async def test_noetl_errors_pass_through_unchanged(
    gw: GatewayProcess, alice: Login, client: aiohttp.ClientSession
) -> None:
    status, body, _ = await call(
        client, "POST", f"{gw.url}/noetl/execute", {"path": "e2e/no/such/playbook"}, headers=alice.headers
    )
    assert status == 404, body
    assert "detail" in body  # NoETL's own error shape, not the gateway's {"error": ...}
    status, body, _ = await call(client, "GET", f"{gw.url}/noetl/executions/1", headers=alice.headers)
    assert status == 404, body
    assert "detail" in body


@pytest.mark.gen_test(timeout=60)
async def test_proxy_needs_a_session_and_execute_permission(
    gw: GatewayProcess, bob: Login, client: aiohttp.ClientSession
) -> None:
    status, body, _ = await call(client, "GET", f"{gw.url}/noetl/executions/1")
    assert status == 401 and body == {"error": "Missing authentication token"}
    # Bob is a viewer: the check-access playbook refuses `execute`, before NoETL sees the call.
    status, body, _ = await call(
        client, "POST", f"{gw.url}/noetl/execute", {"path": catalog.ECHO, "payload": {}}, headers=bob.headers
    )
    assert status == 403, body
    assert body["error"] == f"execute access to {catalog.ECHO} denied", body
    # Viewers may still read through the proxy.
    status, body, _ = await call(client, "GET", f"{gw.url}/noetl/health", headers=bob.headers)
    assert status == 200 and body["status"] == "ok", body
