"""rerunExecution (issue 15): NoETL 4.26 has no rerun route, so the gateway reads the execution and
starts its playbook version again with the workload merged — access-checked, live results wired
like executePlaybook, and nothing the gateway injected into the original run sent again."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.access.redaction import CREDENTIAL_KEYS
from tests.conftest import SignedInFactory, Standin
from tests.standin import playbooks
from tests.support.graphql_client import error_codes
from tests.support.signin import SignedIn
from tests.support.sse_client import init_of, streaming

START = """mutation($v: JSON, $c: String) {
  executePlaybook(name: "api_integration/amadeus_ai_api", variables: $v, clientId: $c) { executionId requestId }
}"""
RERUN = """mutation($id: ID!, $v: JSON, $c: String) {
  rerunExecution(executionId: $id, variables: $v, clientId: $c) { id executionId requestId name status textOutput }
}"""
FALLBACK_LINE = "NoETL has no rerun route (it answered 404)"


def executes(standin: Standin, path: str) -> list[dict[str, Any]]:
    return [c.body for c in standin.state.calls_to("/api/execute", "POST") if (c.body or {}).get("path") == path]


def reruns_asked(standin: Standin, execution_id: str) -> list[Any]:
    return standin.state.calls_to(f"/api/executions/{execution_id}/rerun", "POST")


def as_noetl_stored_it(standin: Standin, execution_id: str) -> None:
    """What else NoETL 4.26 keeps in a workload snapshot: credentials the gateway's auth playbooks put
    there, its keychain manifest, and values its API shows only as ``[REDACTED]``."""
    variables = standin.state.executions[execution_id].variables
    variables.update(
        session_token="sess_original",
        auth0_token="auth0-original",
        callback_subject="noetl.callbacks.original",
        _keychain_manifest={"openai": {"scope": "local"}},
        api_key="[REDACTED]",
    )


@pytest.mark.gen_test
async def test_fallback_reruns_the_playbook_version_with_fresh_live_results(
    alice: SignedIn, standin: Standin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.executions")
    standin.state.detail_workload = False  # as NoETL 4.26: the workload only in playbook.initialized
    async with streaming(alice.client, alice.url, alice.token) as stream:
        client_id = init_of(stream)["clientId"]
        _, body, _ = await alice.gql(START, {"v": {"query": "SFO to JFK", "limit": 3}, "c": client_id})
        first = body["data"]["executePlaybook"]
        await stream.wait_for(
            lambda e: e.event == "playbook/result" and e.json["params"]["requestId"] == first["requestId"]
        )
        original = standin.state.executions[first["executionId"]]
        old_token = original.variables["callback_token"]
        as_noetl_stored_it(standin, first["executionId"])

        status, body, _ = await alice.gql(RERUN, {"id": first["executionId"], "v": {"limit": 5}, "c": client_id})
        assert status == 200 and "errors" not in body, body
        again = body["data"]["rerunExecution"]
        assert again["id"] == again["executionId"] != first["executionId"]
        assert again["requestId"] and again["requestId"] != first["requestId"]
        assert again["name"] == playbooks.AMADEUS and again["status"] == "started" and again["textOutput"] is None

        # NoETL was asked for its rerun route first (404), then to execute that playbook version.
        assert [c.body for c in reruns_asked(standin, first["executionId"])] == [
            {"workload": _blanked(limit=5, live=again, gw=alice)}
        ]
        sent = executes(standin, playbooks.AMADEUS)[-1]
        assert sent["version"] == original.version and "resource_kind" not in sent
        workload = dict(sent["workload"])
        token = workload.pop("callback_token")
        assert token != old_token
        alice.gateway.services.signer.verify(token, again["requestId"])  # ours, and for the new request only
        assert workload == {
            "query": "SFO to JFK",
            "limit": 5,
            "request_id": again["requestId"],
            "gateway_url": alice.url,
        }

        # The new run's result reaches the same stream, under the new ids.
        result = await stream.wait_for(
            lambda e: e.event == "playbook/result" and e.json["params"]["requestId"] == again["requestId"]
        )
        assert result.json["params"]["executionId"] == again["executionId"]
        assert result.json["params"]["data"]["echo"]["limit"] == 5

    # Said once in the log, however many reruns take that way.
    _, body, _ = await alice.gql(RERUN, {"id": first["executionId"]})
    assert body["data"]["rerunExecution"]["requestId"] is None, body
    plain = executes(standin, playbooks.AMADEUS)[-1]["workload"]
    assert plain == {"query": "SFO to JFK", "limit": 3}  # no live results asked: no injected value at all
    assert caplog.text.count(FALLBACK_LINE) == 1


def _blanked(*, limit: int, live: dict[str, Any], gw: SignedIn) -> dict[str, Any]:
    """The rerun route's workload: every injected key blanked, then the caller's and the fresh ones."""
    blank: dict[str, Any] = {key: None for key in (*CREDENTIAL_KEYS, "request_id", "gateway_url", "callback_subject")}
    return {**blank, "limit": limit, "request_id": live["requestId"], "gateway_url": gw.url, "callback_token": _ANY}


class _Any:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and len(other) > 20


_ANY = _Any()


@pytest.mark.gen_test
async def test_the_rerun_route_is_used_when_noetl_has_it(
    alice: SignedIn, standin: Standin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.executions")
    standin.state.rerun_route = True
    _, body, _ = await alice.gql(START, {"v": {"query": "q"}, "c": None})
    first = body["data"]["executePlaybook"]["executionId"]
    standin.state.executions[first].variables.update(request_id="rid-old", callback_token="tok-old")
    status, body, _ = await alice.gql(RERUN, {"id": first, "v": {"query": "q2"}})
    assert status == 200 and "errors" not in body, body
    again = body["data"]["rerunExecution"]
    (asked,) = reruns_asked(standin, first)
    assert asked.body["workload"]["query"] == "q2" and asked.body["workload"]["callback_token"] is None
    # NoETL merged over the original: the old request id and token were blanked, not reused.
    rerun_vars = standin.state.executions[again["executionId"]].variables
    assert rerun_vars["request_id"] is None and rerun_vars["callback_token"] is None and rerun_vars["query"] == "q2"
    assert again["name"] == playbooks.AMADEUS and len(executes(standin, playbooks.AMADEUS)) == 1
    assert "rerunExecution uses NoETL's POST /api/executions/{id}/rerun" in caplog.text
    assert FALLBACK_LINE not in caplog.text


@pytest.mark.gen_test
async def test_rerun_is_access_checked_on_the_executions_playbook(alice: SignedIn, standin: Standin) -> None:
    _, body, _ = await alice.gql('mutation { executePlaybook(name: "tests/noop", variables: {a: 1}) { executionId } }')
    first = body["data"]["executePlaybook"]["executionId"]
    standin.state.denied_paths.add("tests/noop")
    mia = await alice.as_user("member")
    _, body, _ = await mia.gql(RERUN, {"id": first})
    assert error_codes(body) == ["FORBIDDEN"] and body["data"] == {"rerunExecution": None}, body
    assert body["errors"][0]["message"] == "No execute permission on tests/noop"
    assert len(executes(standin, "tests/noop")) == 1 and not reruns_asked(standin, first)


@pytest.mark.gen_test
async def test_bad_input_and_unknown_executions(alice: SignedIn, standin: Standin) -> None:
    for execution_id, message in (("12x", "Execution id must be numeric"), ("424242", "Execution 424242 not found")):
        _, body, _ = await alice.gql(RERUN, {"id": execution_id})
        assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["message"] == message, body
    _, body, _ = await alice.gql('mutation { executePlaybook(name: "tests/noop") { executionId } }')
    first = body["data"]["executePlaybook"]["executionId"]
    _, body, _ = await alice.gql(RERUN, {"id": first, "v": [1, 2]})
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["message"] == "variables must be a JSON object"
    _, body, _ = await alice.gql(RERUN, {"id": first, "c": "not-my-stream"})
    assert error_codes(body) == ["BAD_USER_INPUT"] and "event stream" in body["errors"][0]["message"]
    assert len(executes(standin, "tests/noop")) == 1  # nothing was started again


@pytest.mark.gen_test
async def test_the_route_policy_for_reading_executions_applies(
    make_signed_in: SignedInFactory, standin: Standin, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """Rerunning reads the original on the caller's behalf: a policy that hides executions from a role refuses it."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n  - name: executions are private\n    methods: [GET]\n    path: executions/*\n    roles: ['@admin']\n"
    )
    alice = await make_signed_in(GATEWAY_ROUTE_POLICY=str(policy))
    _, body, _ = await alice.gql('mutation { executePlaybook(name: "tests/noop") { executionId } }')
    first = body["data"]["executePlaybook"]["executionId"]
    mia = await alice.as_user("member")
    reads_before = len(standin.state.calls_to(f"/api/executions/{first}", "GET"))
    _, body, _ = await mia.gql(RERUN, {"id": first})
    assert error_codes(body) == ["FORBIDDEN"] and "executions are private" in body["errors"][0]["message"], body
    assert len(standin.state.calls_to(f"/api/executions/{first}", "GET")) == reads_before  # refused before reading
    _, body, _ = await alice.gql(RERUN, {"id": first})  # an admin may
    assert body["data"]["rerunExecution"]["executionId"], body
