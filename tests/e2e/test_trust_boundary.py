"""The trust boundary against the real NoETL 4.26: a signed-in user is not an allowed user.

Alice is an analyst (may run ``e2e/%`` except ``e2e/restricted/%``), not an admin. She must not
start the restricted playbook by ``catalog_id`` — NoETL's execute lets the id win over
``path`` — through the proxy or ``proxyRequest``, and must not reach NoETL's admin surface.
NoETL's own execution list and database are the witnesses.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest

from tests.e2e import catalog
from tests.e2e.conftest import Deployed, Login
from tests.e2e.stack import http_json
from tests.support.gateway import GatewayProcess, call
from tests.support.graphql_client import gql

PROXY_REQUEST = "mutation($i: ProxyRequestInput!) { proxyRequest(input: $i) { success data error } }"


def catalog_id_of(deployed: Deployed, path: str) -> str:
    status, entry = http_json("POST", f"{deployed.noetl_url}/api/catalog/resource", {"path": path})
    assert status == 200 and entry["path"] == path, entry
    return str(entry["catalog_id"])


def executions_of(deployed: Deployed, path: str) -> int:
    """How many executions of ``path`` NoETL itself knows (newest 200)."""
    status, items = http_json("GET", f"{deployed.noetl_url}/api/executions?page_size=200")
    assert status == 200, items
    return sum(1 for item in items if item.get("path") == path)


@pytest.mark.gen_test(timeout=120)
async def test_a_forbidden_playbook_cannot_be_started_by_catalog_id(
    gw: GatewayProcess, deployed: Deployed, alice: Login, client: aiohttp.ClientSession
) -> None:
    restricted_id = catalog_id_of(deployed, catalog.RESTRICTED)
    echo_id = catalog_id_of(deployed, catalog.ECHO)
    before = executions_of(deployed, catalog.RESTRICTED)
    attempts: list[dict[str, Any]] = [
        {"catalog_id": restricted_id},
        {"catalog_id": int(restricted_id)},
        {"path": catalog.ECHO, "catalog_id": restricted_id},
        {"path": catalog.RESTRICTED},
    ]
    for body in attempts:
        for spelling in ("execute", "execute/", "EXECUTE", "%65xecute"):
            status, answer, _ = await call(client, "POST", f"{gw.url}/noetl/{spelling}", body, headers=alice.headers)
            assert status == 403, (spelling, body, answer)
        _, answer, _ = await gql(
            client, gw, alice.token, PROXY_REQUEST, {"i": {"method": "POST", "endpoint": "/api/execute", "body": body}}
        )
        assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN", (body, answer)
    assert executions_of(deployed, catalog.RESTRICTED) == before  # NoETL ran nothing
    # Her own playbook by catalog_id still runs (resolved, checked, allowed).
    status, answer, _ = await call(
        client, "POST", f"{gw.url}/noetl/execute", {"catalog_id": echo_id, "payload": {}}, headers=alice.headers
    )
    assert status == 200 and answer["execution_id"].isdigit(), answer


@pytest.mark.gen_test(timeout=60)
async def test_a_non_admin_reaches_no_admin_route(
    gw: GatewayProcess, deployed: Deployed, alice: Login, client: aiohttp.ClientSession
) -> None:
    sql = {"query": "CREATE TABLE public.e2e_pwned (x int)", "connection_string": deployed.stack.auth_db_dsn}
    status, answer, _ = await call(client, "POST", f"{gw.url}/noetl/postgres/execute", sql, headers=alice.headers)
    assert status == 403 and "route policy rule" in answer["error"], answer
    variables = {"i": {"method": "POST", "endpoint": "/api/postgres/execute", "body": sql}}
    _, answer, _ = await gql(client, gw, alice.token, PROXY_REQUEST, variables)
    assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN", answer
    assert deployed.sql("SELECT to_regclass('public.e2e_pwned') IS NULL").strip() == "t"  # the SQL never ran
    for method, path in [("GET", "credentials"), ("GET", "credentials/pg_auth"), ("POST", "catalog/register")]:
        status, answer, _ = await call(client, method, f"{gw.url}/noetl/{path}", headers=alice.headers)
        assert status == 403, (path, answer)
        assert set(answer) == {"error"} and "db_password" not in answer["error"], answer


async def raw_execution_holding(deployed: Deployed, secret: str) -> str:
    """The id of a check-access execution whose NoETL answer (read directly) holds ``secret``."""
    status, items = http_json("GET", f"{deployed.noetl_url}/api/executions?page_size=200")
    assert status == 200, items
    for item in items:
        if item.get("path") != catalog.CHECK_ACCESS:
            continue
        status, raw = http_json("GET", f"{deployed.noetl_url}/api/executions/{item['execution_id']}")
        if status == 200 and secret in json.dumps(raw):
            return str(item["execution_id"])
    raise AssertionError("no check-access execution in NoETL holds the session token: the witness is missing")


@pytest.mark.gen_test(timeout=120)
async def test_a_non_admin_reads_no_one_s_session_or_callback_token(
    gw: GatewayProcess, deployed: Deployed, alice: Login, bob: Login, client: aiohttp.ClientSession
) -> None:
    # Bob's start runs the check-access playbook with his session token in its workload (and is refused).
    status, _, _ = await call(client, "POST", f"{gw.url}/noetl/execute", {"path": catalog.ECHO}, headers=bob.headers)
    assert status == 403
    execution_id = await raw_execution_holding(deployed, bob.token)  # NoETL itself hands it out
    reads = [
        f"executions/{execution_id}",
        f"executions/{execution_id}?full=true",
        f"executions/{execution_id}?include_events=true&page_size=500",
        f"executions/{execution_id}/events",
        "executions?full=true&page_size=200",
        "executions/",
    ]
    for path in reads:
        for encoding in ("identity", "gzip"):
            headers = {**alice.headers, "Accept-Encoding": encoding}
            status, answer, _ = await call(client, "GET", f"{gw.url}/noetl/{path}", headers=headers)
            text = json.dumps(answer)
            assert status == 200, (path, answer)
            assert bob.token not in text and alice.token not in text, path
            assert not re.search(r'"(callback_token|auth0_token|session_token)": "(?!\[redacted\])', text), path
    variables = {"i": {"method": "GET", "endpoint": f"/api/executions/{execution_id}"}}
    _, answer, _ = await gql(client, gw, alice.token, PROXY_REQUEST, variables)
    assert answer["data"]["proxyRequest"]["success"] is True and bob.token not in json.dumps(answer)
    _, answer, _ = await gql(client, gw, alice.token, f'{{ execution(id: "{execution_id}") {{ raw result }} }}')
    assert "errors" not in answer and bob.token not in json.dumps(answer), answer
