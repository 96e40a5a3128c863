"""executePlaybook: what NoETL receives, the JSON scalar, playbook access (allowed, denied,
cached), the clientId seam, and upstream failures mapped to error codes (CONTRACT §5)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import pytest

from gateway.auth.sessions import Session
from gateway.errors import ClientNotOwned
from tests.conftest import GatewayFactory, SignedInFactory, Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance
from tests.support.graphql_client import EXECUTE_EXAMPLE, error_codes, gql
from tests.support.nats_server import free_port
from tests.support.signin import SignedIn, login

RUN_NOOP = 'mutation { executePlaybook(name: "tests/noop") { id executionId requestId name status textOutput } }'


def executes(standin: Standin, path: str) -> list[Any]:
    """Calls to /api/execute that started ``path``."""
    return [c for c in standin.state.calls_to("/api/execute", "POST") if (c.body or {}).get("path") == path]


def access_checks(standin: Standin) -> list[Any]:
    return executes(standin, playbooks.CHECK_ACCESS)


@pytest.mark.gen_test
async def test_issue_example_works_as_written(alice: SignedIn, standin: Standin) -> None:
    status, body, _ = await alice.gql(EXECUTE_EXAMPLE)
    assert status == 200, body
    started = body["data"]["executePlaybook"]
    assert started["id"] == started["executionId"] and started["id"].isdigit()
    assert started["requestId"] is None and started["status"] == "started"
    (sent,) = executes(standin, playbooks.AMADEUS)
    assert sent.body == {
        "path": playbooks.AMADEUS,
        "payload": {"query": "Flights from SFO to JFK tomorrow"},
        "workload": {"query": "Flights from SFO to JFK tomorrow"},
        "resource_kind": "playbook",
    }
    assert started["executionId"] in standin.state.executions


@pytest.mark.gen_test
async def test_execution_fields(alice: SignedIn, standin: Standin) -> None:
    status, body, _ = await alice.gql(RUN_NOOP)
    assert status == 200, body
    started = body["data"]["executePlaybook"]
    assert started["name"] == "tests/noop" and started["textOutput"] is None
    assert executes(standin, "tests/noop")[0].body["workload"] == {}


@pytest.mark.gen_test
async def test_json_scalar_accepts_literals_and_nested_variables(alice: SignedIn, standin: Standin) -> None:
    query = """
    mutation Run($q: String!, $extra: JSON, $n: Int, $m: String) {
      executePlaybook(
        name: "tests/noop"
        variables: {
          query: $q, count: 3, ratio: 2.5, on: true, off: false, nothing: null, kind: FAST,
          list: [1, "two", $q, [$n]], nested: { deep: $extra, missing: $m }
        }
      ) { executionId }
    }
    """
    extra = {"a": [1, {"b": None}], "c": "d"}
    status, body, _ = await alice.gql(query, {"q": "hello", "extra": extra, "n": 7})
    assert status == 200, body
    assert executes(standin, "tests/noop")[-1].body["workload"] == {
        "query": "hello",
        "count": 3,
        "ratio": 2.5,
        "on": True,
        "off": False,
        "nothing": None,
        "kind": "FAST",
        "list": [1, "two", "hello", [7]],
        "nested": {"deep": extra},  # an unset variable inside a literal leaves its key out
    }
    # The whole object as one variable.
    query = 'mutation($v: JSON) { executePlaybook(name: "tests/noop", variables: $v) { executionId } }'
    status, body, _ = await alice.gql(query, {"v": {"x": [True, None, 1.5, "s"]}})
    assert status == 200, body
    assert executes(standin, "tests/noop")[-1].body["payload"] == {"x": [True, None, 1.5, "s"]}


@pytest.mark.gen_test
async def test_variables_must_be_an_object(alice: SignedIn, standin: Standin) -> None:
    for literal in ('"text"', "[1, 2]", "42", "true"):
        query = f'mutation {{ executePlaybook(name: "tests/noop", variables: {literal}) {{ id }} }}'
        status, body, _ = await alice.gql(query)
        assert status == 200 and body["data"] is None, body
        assert error_codes(body) == ["BAD_USER_INPUT"]
        assert body["errors"][0]["message"] == "variables must be a JSON object"
    for name in ('""', '"   "', '"a\\u0000b"'):
        query = f"mutation {{ executePlaybook(name: {name}) {{ id }} }}"
        _, body, _ = await alice.gql(query)
        assert error_codes(body) == ["BAD_USER_INPUT"], name
    assert not executes(standin, "tests/noop")


@contextmanager
def live_replaced(gw: GatewayInstance, replacement: object) -> Iterator[None]:
    """Swap the live-results side of ``services.executions`` for one test (the LiveResults seam)."""
    executions = gw.services.executions
    original = executions.live
    executions.live = replacement  # type: ignore[assignment]
    try:
        yield
    finally:
        executions.live = original


class RecordingLive:
    """The seam's other side as the SSE module implements it, reduced to recording calls."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.pending: list[tuple[str, str, str, str, str]] = []
        self.released: list[str] = []

    async def prepare_request(self, session: Session, client_id: str) -> str:
        if client_id != self.owner:
            raise ClientNotOwned()
        return f"rid-{len(self.pending) + 1}"

    async def record_pending(
        self, request_id: str, client_id: str, session: Session, execution_id: str, playbook_path: str
    ) -> None:
        self.pending.append((request_id, client_id, session.user.email, execution_id, playbook_path))

    async def release_request(self, session: Session, request_id: str) -> None:
        self.released.append(request_id)


@pytest.mark.gen_test
async def test_client_id_seam_contract(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    live = RecordingLive("client-1")
    token = await login(client, gateway)
    with live_replaced(gateway, live):
        await _seam_contract(gateway, standin, client, live, token)


async def _seam_contract(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, live: RecordingLive, token: str
) -> None:
    query = """mutation($c: String, $v: JSON) {
      executePlaybook(name: "tests/noop", variables: $v, clientId: $c) { executionId requestId }
    }"""
    status, body, _ = await gql(client, gateway, token, query, {"c": "client-1", "v": {"a": 1}})
    assert status == 200, body
    started = body["data"]["executePlaybook"]
    assert started["requestId"] == "rid-1"
    assert live.pending == [("rid-1", "client-1", "alice@example.com", started["executionId"], "tests/noop")]
    sent = executes(standin, "tests/noop")[-1].body["workload"]
    assert sent["a"] == 1 and sent["request_id"] == "rid-1" and sent["gateway_url"] == gateway.url
    gateway.services.signer.verify(sent["callback_token"], "rid-1")  # raises if not ours or for another id
    # A client of another session (or an unknown one): refused before anything runs.
    status, body, _ = await gql(client, gateway, token, query, {"c": "client-2", "v": {}})
    assert error_codes(body) == ["BAD_USER_INPUT"] and "event stream" in body["errors"][0]["message"]
    # Non-object variables with a clientId.
    status, body, _ = await gql(client, gateway, token, query, {"c": "client-1", "v": [1]})
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert len(executes(standin, "tests/noop")) == 1 and len(live.pending) == 1
    # A start that fails after the request was prepared gives the request back.
    standin.state.execute_status = 503
    _, body, _ = await gql(client, gateway, token, query, {"c": "client-1", "v": {}})
    assert error_codes(body) == ["UPSTREAM_ERROR"]
    assert live.released == ["rid-2"] and len(live.pending) == 1


@pytest.mark.gen_test
async def test_access_allowed_is_checked_once_per_path_and_session(alice: SignedIn, standin: Standin) -> None:
    for _ in range(3):
        status, body, _ = await alice.gql(RUN_NOOP)
        assert status == 200 and body["data"]["executePlaybook"]["executionId"], body
    (check,) = access_checks(standin)  # one check-access run for three executions
    assert check.body["workload"]["playbook_path"] == "tests/noop"
    assert check.body["workload"]["action"] == "execute"
    assert len(executes(standin, "tests/noop")) == 3
    await alice.gql(EXECUTE_EXAMPLE)
    assert len(access_checks(standin)) == 2  # another path: its own decision
    bob = await alice.as_user("good:bob@example.com")
    await bob.gql(RUN_NOOP)
    assert len(access_checks(standin)) == 3  # another session: its own decision


@pytest.mark.gen_test
async def test_access_denied_is_forbidden_and_cached(alice: SignedIn, standin: Standin) -> None:
    query = 'mutation { executePlaybook(name: "secret/forbidden_report") { id } }'
    for _ in range(2):
        status, body, _ = await alice.gql(query)
        assert status == 200 and body["data"] is None
        assert error_codes(body) == ["FORBIDDEN"]
        assert body["errors"][0]["message"] == "No execute permission on secret/forbidden_report"
        assert body["errors"][0]["path"] == ["executePlaybook"]
    assert len(access_checks(standin)) == 1
    assert not executes(standin, "secret/forbidden_report")
    standin.state.denied_paths.add("tests/noop")
    _, body, _ = await alice.gql(RUN_NOOP)
    assert error_codes(body) == ["FORBIDDEN"] and not executes(standin, "tests/noop")


@pytest.mark.gen_test
async def test_access_cache_ttl_and_enforcement_switch(make_signed_in: SignedInFactory, standin: Standin) -> None:
    uncached = await make_signed_in(GATEWAY_ACCESS_CACHE_TTL_SECS="0")
    for _ in range(2):
        await uncached.gql(RUN_NOOP)
    assert len(access_checks(standin)) == 2  # without the cache every execution asks
    unenforced = await make_signed_in(GATEWAY_ENFORCE_PLAYBOOK_ACCESS="false")
    standin.state.denied_paths.add("tests/noop")
    status, body, _ = await unenforced.gql(RUN_NOOP)
    assert status == 200 and body["data"]["executePlaybook"]["executionId"], body
    assert len(access_checks(standin)) == 2  # no check at all


@pytest.mark.gen_test
async def test_access_check_without_answer_is_upstream_unavailable(
    make_signed_in: SignedInFactory, standin: Standin
) -> None:
    alice = await make_signed_in(AUTH_PLAYBOOK_TIMEOUT_SECS="0.3")

    async def silent(run: Any) -> None:
        await asyncio.sleep(0)

    standin.state.playbooks[playbooks.CHECK_ACCESS] = silent
    status, body, _ = await alice.gql(RUN_NOOP)
    assert status == 200 and error_codes(body) == ["UPSTREAM_UNAVAILABLE"], body
    assert "auth playbook" in body["errors"][0]["message"]
    assert not executes(standin, "tests/noop")


@pytest.mark.gen_test
async def test_noetl_error_statuses_are_upstream_errors(make_signed_in: SignedInFactory, standin: Standin) -> None:
    alice = await make_signed_in(GATEWAY_ENFORCE_PLAYBOOK_ACCESS="false")
    _, body, _ = await alice.gql('mutation { executePlaybook(name: "no/such/playbook") { id } }')
    assert error_codes(body) == ["UPSTREAM_ERROR"]
    error = body["errors"][0]
    assert error["extensions"]["upstreamStatus"] == 404
    assert "Playbook 'no/such/playbook' not found" in error["message"]
    for scripted in (500, 503, 400):
        standin.state.execute_status = scripted
        status, body, _ = await alice.gql(RUN_NOOP, accept="application/graphql-response+json")
        assert status == 200 and body["data"] is None, body
        assert error_codes(body) == ["UPSTREAM_ERROR"]
        assert body["errors"][0]["extensions"]["upstreamStatus"] == scripted
        assert standin.url not in str(body) and "127.0.0.1" not in str(body)


@pytest.mark.gen_test
async def test_noetl_down_is_upstream_unavailable(make_gateway: GatewayFactory, client: aiohttp.ClientSession) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gw = await make_gateway(NOETL_BASE_URL=dead, GATEWAY_AUTH_BYPASS="true", NATS_URL="")
    status, body, _ = await gql(client, gw, "dev-token", RUN_NOOP)
    assert status == 200 and body["data"] is None
    assert error_codes(body) == ["UPSTREAM_UNAVAILABLE"]
    assert body["errors"][0]["message"] == "NoETL server is unreachable"
    assert dead not in str(body) and "Traceback" not in str(body)
