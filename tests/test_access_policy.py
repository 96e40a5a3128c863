"""The trust boundary, tried as an attacker would: who may call which NoETL route, and what a
playbook start really runs (issue 13 part 2). Real gateway, real nats-server, the stand-in."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import SignedInFactory, Standin
from tests.standin import playbooks
from tests.support.gateway import call
from tests.support.signin import SignedIn, signed_in_as

MEMBER = "member-token"  # the stand-in logs these in without the admin role
ADMIN_ONLY = [
    ("POST", "postgres/execute"),
    ("GET", "credentials"),
    ("POST", "credentials"),
    ("GET", "credentials/pg_auth"),
    ("GET", "keychain/catalog/1"),
    ("POST", "catalog/register"),
    ("GET", "vars/1"),
    ("GET", "result/1/list"),
    ("PUT", "temp/1"),
    ("POST", "executions/cleanup"),
    ("POST", "executions/1/finalize"),
    ("POST", "executions/1/analyze/ai"),
    ("POST", "catalog/playbooks/generate/ai"),
    ("GET", "standin/anything"),  # a route the policy does not name
    ("DELETE", "executions/1"),  # a method the policy does not name on a readable route
]
SPELLINGS = ["postgres/execute/", "/postgres/execute", "Postgres/EXECUTE", "%70ostgres/execute", "postgres//execute"]


member = signed_in_as(MEMBER)
admin = signed_in_as("good-admin")


async def noetl(user: SignedIn, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """``method /noetl/path`` as ``user``."""
    status, answer, _ = await user.call(method, f"/noetl/{path}", body)
    return status, answer


def forwarded(standin: Standin, path: str) -> int:
    return sum(1 for c in standin.state.calls if c.path.lower().replace("//", "/").rstrip("/") == path)


def started(standin: Standin) -> set[str]:
    """Playbooks NoETL ran, leaving out the gateway's own auth playbooks."""
    return {e.path for e in standin.state.executions.values() if not e.path.startswith("api_integration/auth0/")}


@pytest.mark.gen_test
async def test_a_member_reaches_no_admin_route_and_nothing_reaches_noetl(member: SignedIn, standin: Standin) -> None:
    before = len(standin.state.calls)
    for method, path in ADMIN_ONLY:
        body = {} if method in ("POST", "PUT") else None
        status, answer = await noetl(member, method, path, body)
        assert status == 403, (method, path, answer)
        assert "route policy rule" in answer["error"] and "admin" in answer["error"], answer
    for path in SPELLINGS:
        status, answer = await noetl(member, "POST", path, {"query": "select 1"})
        assert status == 403, (path, answer)
    assert len(standin.state.calls) == before  # not one byte went to NoETL
    _, metrics, _ = await call(member.client, "GET", f"{member.url}/metrics")
    assert 'gateway_policy_denials_total{rule="admin: any route the policy does not name"}' in metrics


@pytest.mark.gen_test
async def test_a_member_reads_executions_catalog_and_dashboard(member: SignedIn, standin: Standin) -> None:
    for method, path in [
        ("GET", "health"),
        ("GET", "dashboard/stats"),
        ("POST", "catalog/list"),
        ("GET", "catalog/tests/noop/ui_schema"),
        ("GET", "executions"),
        ("GET", "executions/1/status"),
        ("GET", "executions/1/events"),
        ("POST", "executions/1/cancel"),
        ("HEAD", "executions"),
    ]:
        status, answer = await noetl(member, method, path, {} if method == "POST" else None)
        assert status != 403, (method, path, answer)
        assert forwarded(standin, f"/api/{path}") >= 1, (method, path)


@pytest.mark.gen_test
async def test_an_admin_keeps_the_whole_api(admin: SignedIn, standin: Standin) -> None:
    for method, path in ADMIN_ONLY:
        before = forwarded(standin, f"/api/{path}")
        status, answer = await noetl(admin, method, path, {} if method in ("POST", "PUT") else None)
        assert status != 403 and forwarded(standin, f"/api/{path}") == before + 1, (method, path, answer)


@pytest.mark.gen_test
async def test_a_start_is_checked_on_the_playbook_it_really_runs(member: SignedIn, standin: Standin) -> None:
    forbidden_id = standin.state.catalog_id_of(playbooks.FORBIDDEN)
    allowed_id = standin.state.catalog_id_of(playbooks.NOOP)
    refused: list[tuple[str, dict[str, Any], int]] = [
        ("execute", {"path": playbooks.NOOP, "catalog_id": forbidden_id}, 403),
        ("execute", {"path": playbooks.NOOP, "catalog_id": str(forbidden_id)}, 403),
        ("execute", {"catalog_id": forbidden_id}, 403),
        ("execute/", {"catalog_id": forbidden_id}, 403),
        ("EXECUTE", {"catalog_id": forbidden_id}, 403),
        ("%65xecute", {"catalog_id": forbidden_id}, 403),
        ("/execute", {"path": playbooks.FORBIDDEN}, 403),
        ("execute", {"catalog_id": 424242}, 403),  # unknown: cannot be resolved, so cannot be checked
        ("execute", {"path": playbooks.NOOP, "playbook_path": playbooks.FORBIDDEN}, 403),
        ("execute", {"catalog_id": True}, 400),
        ("execute", {"path": ["x"]}, 400),
        ("execute", {"path": " " + playbooks.FORBIDDEN}, 400),
        ("execute", {"resource_kind": "agent"}, 400),
    ]
    for path, body, expected in refused:
        status, answer = await noetl(member, "POST", path, body)
        assert status == expected, (path, body, answer)
    assert started(standin) == set()
    status, answer = await noetl(member, "POST", "execute", {"catalog_id": allowed_id})
    assert status == 200 and answer["execution_id"], answer
    status, answer = await noetl(member, "POST", "execute", {"path": playbooks.NOOP, "catalog_id": allowed_id})
    assert status == 200, answer
    assert started(standin) == {playbooks.NOOP}


@pytest.mark.gen_test
async def test_proxy_request_obeys_the_same_policy(member: SignedIn, standin: Standin) -> None:
    forbidden_id = standin.state.catalog_id_of(playbooks.FORBIDDEN)
    query = "mutation($i: ProxyRequestInput!) { proxyRequest(input: $i) { success data error } }"
    before = len(standin.state.calls)
    for method, endpoint, body in [
        ("POST", "/api/postgres/execute", {"query": "select 1"}),
        ("GET", "/api/credentials", None),
        ("POST", "/api/execute", {"path": playbooks.NOOP, "catalog_id": forbidden_id}),
        ("POST", "/api/execute/", {"catalog_id": forbidden_id}),
    ]:
        variables = {"i": {"method": method, "endpoint": endpoint, "body": body}}
        _, answer, _ = await member.gql(query, variables)
        assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN", (endpoint, answer)
    assert all(c.path in ("/api/catalog/resource", "/api/execute") for c in standin.state.calls[before:])
    assert started(standin) == set()
    _, answer, _ = await member.gql(query, {"i": {"method": "GET", "endpoint": "/api/executions"}})
    assert answer["data"]["proxyRequest"]["success"] is True, answer


@pytest.mark.gen_test
async def test_mcp_routes_that_run_a_playbook_are_checked_even_for_an_admin(admin: SignedIn, standin: Standin) -> None:
    for path in (
        f"mcp/playbook/{playbooks.FORBIDDEN}/jsonrpc",
        f"mcp/{playbooks.FORBIDDEN}/discover",
        f"mcp/{playbooks.FORBIDDEN}/lifecycle/deploy",
    ):
        status, answer = await noetl(admin, "POST", path, {"jsonrpc": "2.0", "method": "tools/list"})
        assert status == 403, (path, answer)
        assert forwarded(standin, "/api/" + path.lower()) == 0
    status, _ = await noetl(admin, "POST", f"mcp/playbook/{playbooks.NOOP}/jsonrpc", {})
    assert status == 200


@pytest.mark.gen_test
async def test_noetl_internal_location_never_reaches_the_client(admin: SignedIn) -> None:
    path = "/noetl/standin/status/302"
    async with admin.request("GET", path + "?location=absolute", allow_redirects=False) as resp:
        assert resp.headers["Location"] == "/noetl/standin/status/302?moved=1"
    async with admin.request("GET", path + "?location=internal", allow_redirects=False) as resp:
        assert "Location" not in resp.headers
    async with admin.request("GET", path, allow_redirects=False) as resp:
        assert resp.headers["Location"] == "/api/standin/status/302?moved=1"  # relative: unchanged


@pytest.mark.gen_test
async def test_proxy_request_holds_a_bounded_answer(make_signed_in: SignedInFactory) -> None:
    admin = await make_signed_in(GATEWAY_PROXY_REQUEST_MAX_ANSWER_BYTES="300", auth0_token="good-admin")
    query = "mutation($i: ProxyRequestInput!) { proxyRequest(input: $i) { success data error } }"
    for endpoint in ("/api/standin/download?size=100000", "/api/standin/download?size=100000&chunked=1"):
        _, answer, _ = await admin.gql(query, {"i": {"method": "GET", "endpoint": endpoint}})
        error = answer["errors"][0]
        assert error["extensions"]["code"] == "UPSTREAM_ERROR" and "larger than 300 bytes" in error["message"], answer
    _, answer, _ = await admin.gql(query, {"i": {"method": "GET", "endpoint": "/api/health"}})
    assert answer["data"]["proxyRequest"]["success"] is True, answer
