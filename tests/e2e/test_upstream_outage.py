"""The NoETL server stops mid-run: clear 502s, never a hang or a 500; it comes back: everything recovers.

Runs last (file order): it stops and restarts the shared NoETL server.
"""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from tests.e2e import catalog
from tests.e2e.conftest import Deployed, Login
from tests.support.gateway import GatewayProcess, call
from tests.support.graphql_client import error_codes, gql
from tests.support.waiting import wait_for


@pytest.mark.gen_test(timeout=120)
async def test_noetl_down_gives_502_and_recovery_when_it_is_back(
    gw: GatewayProcess, deployed: Deployed, alice: Login, client: aiohttp.ClientSession
) -> None:
    stack = deployed.stack
    status, ready, _ = await call(client, "GET", f"{gw.url}/health/ready")
    assert status == 200 and ready["status"] == "ready", ready
    stack.stop_server()
    try:
        # The proxy: NoETL refuses the connection -> 502 with a JSON error, quickly.
        status, body, _ = await call(client, "GET", f"{gw.url}/noetl/executions/1", headers=alice.headers)
        assert status == 502, body
        assert set(body) >= {"error"} and "127.0.0.1" not in body["error"], body
        status, body, _ = await call(
            client, "POST", f"{gw.url}/noetl/execute", {"path": catalog.ECHO, "payload": {}}, headers=alice.headers
        )
        assert status == 502, body  # the access check is cached; the execute itself cannot reach NoETL
        # A session that is not cached cannot be validated: 502, not "invalid" and not 500.
        unknown = "sess_" + uuid.uuid4().hex
        status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/validate", {"session_token": unknown})
        assert status == 502, body
        # A cached session keeps working for what needs no NoETL.
        status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/validate", {"session_token": alice.token})
        assert status == 200 and body["valid"] is True, body
        # Login needs the login playbook: 502 as well.
        status, body, _ = await call(
            client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": deployed.issuer.token("auth0|x", "x@e2e.test")}
        )
        assert status == 502, body
        # GraphQL: an error with a code a UI can act on, HTTP 200, no upstream address in it.
        status, body, _ = await gql(
            client, gw, alice.token, 'mutation { executePlaybook(name: "e2e/echo") { executionId } }'
        )
        assert status == 200 and error_codes(body) == ["UPSTREAM_UNAVAILABLE"], body
        assert "127.0.0.1" not in str(body), body
        status, body, _ = await gql(client, gw, alice.token, 'query { execution(id: "1") { state } }')
        assert status == 200 and error_codes(body) == ["UPSTREAM_UNAVAILABLE"], body
        status, ready, _ = await call(client, "GET", f"{gw.url}/health/ready")
        assert status == 503 and ready["status"] == "unavailable", ready
    finally:
        if stack.server is None:
            stack.start_server()
    # Back: the same gateway (no restart) serves everything again.
    status, body, _ = await call(client, "GET", f"{gw.url}/noetl/health", headers=alice.headers)
    assert status == 200 and body["status"] == "ok", body

    async def ready_again() -> bool:
        status, _, _ = await call(client, "GET", f"{gw.url}/health/ready")
        return status == 200

    await wait_for(ready_again, timeout=15, interval=0.2)
    status, body, _ = await call(
        client, "POST", f"{gw.url}/noetl/execute", {"path": catalog.ECHO, "payload": {}}, headers=alice.headers
    )
    assert status == 200 and body["status"] == "started", body
    status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/validate", {"session_token": unknown})
    assert status == 200 and body["valid"] is False, body
    # The whole round trip (gateway -> NoETL -> worker -> callback) works again.
    token = deployed.issuer.token("auth0|e2e-alice", "alice@e2e.test", "Alice Analyst")
    status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": token})
    assert status == 200 and body["user"]["email"] == "alice@e2e.test", body
