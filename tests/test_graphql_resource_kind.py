"""executePlaybook(resourceKind): NoETL's resource_kind, the reference's spellings, and the access
check applied to agents like to playbooks (issue 15)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Standin
from tests.standin import playbooks
from tests.support.graphql_client import error_codes
from tests.support.signin import SignedIn

AGENT = "automation/agents/kubernetes/runtime"
RUN = """mutation($n: String!, $k: ExecutableResourceKind) {
  executePlaybook(name: $n, variables: {tool: "pods_list"}, resourceKind: $k) { executionId name }
}"""


def execute_bodies(standin: Standin, path: str) -> list[dict[str, Any]]:
    return [c.body for c in standin.state.calls_to("/api/execute", "POST") if (c.body or {}).get("path") == path]


def register_agent(standin: Standin) -> None:
    standin.state.playbooks[AGENT] = playbooks.noop
    standin.state.agents.add(AGENT)


async def admins_only_for_agents(run: Any) -> None:
    """A check-access playbook that lets only admins run agents (everything else: as the stand-in's)."""
    record = run.state.sessions.get(str(run.variables.get("session_token")))
    path = str(run.variables.get("playbook_path"))
    allowed = record is not None and (path not in run.state.agents or "admin" in record["user"]["roles"])
    message = "Access granted" if allowed else f"Agents are for admins: {path}"
    await run.callback("success", {"allowed": allowed, "user": record and record["user"], "message": message})


@pytest.mark.gen_test
async def test_agent_kind_reaches_noetl(alice: SignedIn, standin: Standin) -> None:
    register_agent(standin)
    status, body, _ = await alice.gql(RUN, {"n": AGENT, "k": "AGENT"})
    assert status == 200 and body["data"]["executePlaybook"]["name"] == AGENT, body
    (sent,) = execute_bodies(standin, AGENT)
    assert sent["resource_kind"] == "agent" and sent["workload"] == {"tool": "pods_list"}
    execution_id = body["data"]["executePlaybook"]["executionId"]
    assert standin.state.executions[execution_id].resource_kind == "agent"


@pytest.mark.gen_test
async def test_default_kind_is_playbook_and_noetl_tells_kinds_apart(alice: SignedIn, standin: Standin) -> None:
    register_agent(standin)
    status, body, _ = await alice.gql(RUN, {"n": "tests/noop"})
    assert status == 200 and body["data"], body
    assert execute_bodies(standin, "tests/noop")[-1]["resource_kind"] == "playbook"
    # An explicit null is the default too (found by tests/test_fuzz_graphql.py).
    _, body, _ = await alice.gql('mutation { executePlaybook(name: "tests/noop", resourceKind: null) { id } }')
    assert body["data"]["executePlaybook"]["id"], body
    assert [b["resource_kind"] for b in execute_bodies(standin, "tests/noop")] == ["playbook", "playbook"]
    # An agent started as a playbook: NoETL 4.26 finds no such playbook (the kind was sent as asked).
    _, body, _ = await alice.gql(RUN, {"n": AGENT, "k": "PLAYBOOK"})
    assert error_codes(body) == ["UPSTREAM_ERROR"] and body["errors"][0]["extensions"]["upstreamStatus"] == 404
    assert execute_bodies(standin, AGENT)[-1]["resource_kind"] == "playbook"


@pytest.mark.gen_test
async def test_reference_spellings_are_accepted(alice: SignedIn, standin: Standin) -> None:
    """The reference gateway's enum values are ``playbook``/``agent``; its clients send those."""
    register_agent(standin)
    status, body, _ = await alice.gql(f'mutation {{ executePlaybook(name: "{AGENT}", resourceKind: agent) {{ id }} }}')
    assert status == 200 and body["data"]["executePlaybook"]["id"], body
    _, body, _ = await alice.gql('mutation { executePlaybook(name: "tests/noop", resourceKind: playbook) { id } }')
    assert body["data"]["executePlaybook"]["id"], body
    assert [b["resource_kind"] for b in execute_bodies(standin, AGENT)] == ["agent"]
    assert [b["resource_kind"] for b in execute_bodies(standin, "tests/noop")] == ["playbook"]


@pytest.mark.gen_test
async def test_unknown_kind_is_a_validation_error(alice: SignedIn, standin: Standin) -> None:
    status, body, _ = await alice.gql('mutation { executePlaybook(name: "tests/noop", resourceKind: MCP) { id } }')
    assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"], body
    assert body["errors"][0]["message"] == "Value 'MCP' does not exist in 'ExecutableResourceKind' enum."
    status, body, _ = await alice.gql(RUN, {"n": "tests/noop", "k": "Agent"})
    assert "data" not in body and "ExecutableResourceKind" in body["errors"][0]["message"], body
    assert not execute_bodies(standin, "tests/noop")


@pytest.mark.gen_test
async def test_agents_are_access_checked_like_playbooks(alice: SignedIn, standin: Standin) -> None:
    register_agent(standin)
    standin.state.playbooks[playbooks.CHECK_ACCESS] = admins_only_for_agents
    mia = await alice.as_user("member")  # signed in without the admin role
    _, body, _ = await mia.gql(RUN, {"n": AGENT, "k": "AGENT"})
    assert error_codes(body) == ["FORBIDDEN"], body
    assert body["errors"][0]["message"] == f"Agents are for admins: {AGENT}"
    assert not execute_bodies(standin, AGENT)  # refused before NoETL was asked to run it
    checks = [b["workload"] for b in execute_bodies(standin, playbooks.CHECK_ACCESS)]
    assert checks[-1]["playbook_path"] == AGENT and checks[-1]["action"] == "execute"
    # The same member may run a plain playbook; an admin may run the agent.
    _, body, _ = await mia.gql(RUN, {"n": "tests/noop"})
    assert body["data"]["executePlaybook"]["executionId"], body
    _, body, _ = await alice.gql(RUN, {"n": AGENT, "k": "AGENT"})
    assert body["data"]["executePlaybook"]["executionId"], body
    assert [b["resource_kind"] for b in execute_bodies(standin, AGENT)] == ["agent"]
