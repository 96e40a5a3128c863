"""Credentials the gateway hands playbooks are never readable back by a non-admin (issue 13 §3).

The stand-in keeps every workload the gateway sent (login: ``auth0_token``,
``auth0_refresh_token``, ``callback_token``; check-access: ``session_token``, ``callback_token``)
and returns them as NoETL 4.26 does: in ``/executions/{id}`` (``workload``, ``events[*].context``
as objects and as JSON text), ``/executions?full=true`` and ``/executions/{id}/events``. A member
(``member…`` Auth0 token: roles {analyst}) must see none of those values through ``/noetl/*``,
``proxyRequest`` or ``execution(id)``; an admin sees the answers unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from tornado.ioloop import IOLoop

from gateway.access.redaction import CREDENTIAL_KEYS
from tests.conftest import Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance, GatewayProcess, call
from tests.support.graphql_client import gql
from tests.support.graphql_ws import WsClient
from tests.support.rss import RssSampler
from tests.support.signin import bearer, login
from tests.support.skips import reads_proc

REFRESH = "refresh-token-of-the-admin-0123456789"
MIB = 1024 * 1024


class Stage:
    """Two users, and the credentials the gateway handed to the playbooks it ran for them."""

    def __init__(self, admin: str, member: str, standin: Standin) -> None:
        self.admin = admin
        self.member = member
        self.standin = standin

    def secrets(self) -> set[str]:
        """Every credential value in a workload (and the sessions the login playbooks made)."""
        found = {self.admin, self.member}
        for execution in self.standin.state.executions.values():
            for key in CREDENTIAL_KEYS:
                value = execution.variables.get(key)
                if isinstance(value, str) and value:
                    found.add(value)
        return found

    def execution_ids(self) -> list[str]:
        return list(self.standin.state.executions)

    def login_execution(self) -> str:
        return next(e.execution_id for e in self.standin.state.executions.values() if e.path == playbooks.LOGIN)

    def login_route(self, gw: GatewayInstance | GatewayProcess, rest: str = "") -> str:
        """The URL of the login execution (its workload holds the Auth0 tokens) through ``gw``'s NoETL proxy."""
        return f"{gw.url}/noetl/executions/{self.login_execution()}{rest}"


async def stage(client: aiohttp.ClientSession, gw: GatewayInstance | GatewayProcess, standin: Standin) -> Stage:
    """An admin and a member sign in; an access check runs with the admin's session token."""
    status, body, _ = await call(
        client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "good-redact", "auth0_refresh_token": REFRESH}
    )
    assert status == 200, body
    admin = str(body["session_token"])
    status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "member-redact"})
    assert status == 200 and body["user"]["roles"] == ["analyst"], body
    member = str(body["session_token"])
    status, body, _ = await call(
        client,
        "POST",
        f"{gw.url}/api/auth/check-access",
        {"session_token": admin, "playbook_path": playbooks.NOOP, "permission_type": "execute"},
    )
    assert status == 200 and body["allowed"] is True, body
    staged = Stage(admin, member, standin)
    assert REFRESH in staged.secrets() and len(staged.secrets()) >= 6  # 2 sessions, auth0, refresh, 3 callbacks
    return staged


async def raw_get(client: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[int, bytes, Any]:
    async with client.get(url, headers=headers, auto_decompress=False) as resp:
        return resp.status, await resp.read(), resp.headers


def leaked(text: bytes | str, secrets: set[str]) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return sorted(secret[:12] for secret in secrets if secret.encode() in data)


def proxy_routes(ids: list[str]) -> list[str]:
    """Every execution route a UI reads, with the query strings that add workloads."""
    routes = ["executions", "executions?full=true", "executions?full=true&include_workload=true&limit=100"]
    for execution_id in ids:
        routes += [
            f"executions/{execution_id}",
            f"executions/{execution_id}?full=true",
            f"executions/{execution_id}/events",
        ]
    return routes


@pytest.fixture
def staged(io_loop: IOLoop, gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession) -> Stage:
    """An admin and a member signed in on the test gateway, and executions whose workloads hold credentials."""
    result: Stage = io_loop.run_sync(lambda: stage(client, gateway, standin), timeout=30)
    return result


@pytest.mark.gen_test
async def test_member_reads_no_credential_through_the_proxy_admin_reads_them(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, staged: Stage
) -> None:
    secrets = staged.secrets()
    for route in proxy_routes(staged.execution_ids()):
        url = f"{gateway.url}/noetl/{route}"
        for encoding in (None, "gzip, deflate, br"):
            headers = (
                bearer(staged.member) if encoding is None else bearer(staged.member, **{"Accept-Encoding": encoding})
            )
            status, body, answer_headers = await raw_get(client, url, headers)
            assert status == 200, (route, body)
            assert leaked(body, secrets) == [], route
            assert "Content-Encoding" not in answer_headers
            if "Content-Length" in answer_headers:  # small answers: the redacted length, not NoETL's
                assert int(answer_headers["Content-Length"]) == len(body)
            orjson.loads(body)  # still JSON
        status, admin_body, _ = await raw_get(client, url, bearer(staged.admin))
        assert status == 200
        assert b"[redacted]" not in admin_body, route
    # The admin's list holds every credential; the member's has a placeholder for each.
    url = f"{gateway.url}/noetl/executions?full=true"
    _, admin_body, _ = await raw_get(client, url, bearer(staged.admin))
    _, member_body, _ = await raw_get(client, url, bearer(staged.member))
    assert leaked(admin_body, secrets) == sorted(secret[:12] for secret in secrets)
    assert member_body.count(b"[redacted]") >= len(secrets)
    # Whatever the member's client accepts, NoETL was asked for an identity-encoded body.
    member_calls = [c for c in standin.state.calls if c.headers.get("X-Noetl-User-Id") == "77"]
    assert member_calls and all(c.headers.get("Accept-Encoding") == "identity" for c in member_calls)


@pytest.mark.gen_test
async def test_login_result_and_refresh_token_are_hidden_in_the_single_execution(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, staged: Stage
) -> None:
    url = staged.login_route(gateway)
    status, body, _ = await call(client, "GET", url, headers=bearer(staged.member))
    assert status == 200
    assert body["workload"]["auth0_refresh_token"] == "[redacted]"
    assert body["workload"]["auth0_token"] == "[redacted]"
    assert body["workload"]["callback_token"] == "[redacted]"
    assert body["result"]["session_token"] == "[redacted]"  # the session the login playbook made
    context = orjson.loads(body["events"][0]["context"])  # JSON text, as NoETL 4.26 stores it
    assert context["workload"]["auth0_token"] == "[redacted]"
    assert orjson.loads(context["args"])["callback_token"] == "[redacted]"  # JSON text in JSON text
    assert body["workload"]["auth0_domain"] is None or "redacted" not in str(body["workload"]["auth0_domain"])
    status, body, _ = await call(client, "GET", url, headers=bearer(staged.admin))
    assert body["workload"]["auth0_refresh_token"] == REFRESH
    assert orjson.loads(orjson.loads(body["events"][0]["context"])["args"])["auth0_refresh_token"] == REFRESH


@pytest.mark.gen_test
async def test_compressed_or_partial_answers_are_refused_for_a_member(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, staged: Stage
) -> None:
    base = staged.login_route(gateway, "/events")
    secrets = staged.secrets()
    # NoETL compressing although the gateway asked for identity: not relayed to a member.
    status, body, headers = await raw_get(
        client, f"{base}?gzip=1", bearer(staged.member, **{"Accept-Encoding": "gzip"})
    )
    assert status == 502 and orjson.loads(body) == {
        "error": "NoETL answered with a compressed body the gateway cannot check for credentials"
    }
    status, body, headers = await raw_get(client, f"{base}?gzip=1", bearer(staged.admin, **{"Accept-Encoding": "gzip"}))
    assert status == 200 and headers["Content-Encoding"] == "gzip"  # admins: unchanged
    # A byte range could begin inside a value, after its key: never asked for, never relayed.
    status, body, _ = await raw_get(client, base, bearer(staged.member, Range="bytes=30-"))
    assert status == 200 and leaked(body, secrets) == [] and b"[redacted]" in body
    (forwarded,) = [c for c in standin.state.calls if c.path.endswith("/events") and c.query == ""]
    assert "Range" not in forwarded.headers and forwarded.headers["Accept-Encoding"] == "identity"
    status, body, _ = await raw_get(client, f"{base}?partial=1", bearer(staged.member))
    assert status == 502 and b"partial body" in body and leaked(body, secrets) == []
    status, body, _ = await raw_get(client, base, bearer(staged.admin, Range="bytes=30-"))
    assert status == 206  # admins: unchanged


@pytest.mark.gen_test
@pytest.mark.parametrize("split", ["key", "escape", "value"])
async def test_a_credential_split_across_chunks_is_still_hidden_and_the_answer_streams(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, staged: Stage, split: str
) -> None:
    """NoETL sends the first half of a ``callback_token`` event, and the rest only once the client
    has received everything before it: the gateway relays without buffering the whole answer and
    still catches the key/value pair across the chunk boundary."""
    url = staged.login_route(gateway, f"/events?pad=300&split={split}")
    gate = standin.state.gates.setdefault("standin/events-split", asyncio.Event())
    received = b""
    async with client.get(url, headers=bearer(staged.member)) as resp:
        assert resp.status == 200 and "Content-Length" not in resp.headers
        while b"split-here" not in received:
            chunk = await resp.content.readany()
            assert chunk, "the answer ended before the split event"
            received += chunk
        assert not gate.is_set()  # the rest of NoETL's answer has not been sent yet: this is streaming
        gate.set()
        received += await resp.read()
    assert leaked(received, staged.secrets()) == []
    events = orjson.loads(received)["events"]
    assert len(events) == 2 + 300 + 1
    assert orjson.loads(events[-1]["context"]) == {"marker": "split-here", "callback_token": "[redacted]"}
    assert all(orjson.loads(e["context"])["workload"]["callback_token"] == "[redacted]" for e in events[2:-1])


PROXY = """mutation($endpoint: String!) {
  proxyRequest(input: { method: "GET", endpoint: $endpoint }) { success data error status }
}"""
EXECUTION = """query($id: ID!) { execution(id: $id) { id path status result error errorDetails raw } }"""


@pytest.mark.gen_test
async def test_member_reads_no_credential_through_graphql_admin_reads_them(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, staged: Stage
) -> None:
    secrets = staged.secrets()
    login_id = staged.login_execution()
    # NoETL's error details can quote a workload too.
    standin.state.executions[login_id].error = {
        "message": "step failed",
        "context": orjson.dumps(
            {"callback_token": standin.state.executions[login_id].variables["callback_token"]}
        ).decode(),
    }
    for route in proxy_routes(staged.execution_ids()):
        endpoint = f"/api/{route}"
        status, body, _ = await gql(client, gateway, staged.member, PROXY, {"endpoint": endpoint})
        assert status == 200 and body["data"]["proxyRequest"]["success"] is True, body
        assert leaked(orjson.dumps(body), secrets) == [], endpoint
        status, body, _ = await gql(client, gateway, staged.admin, PROXY, {"endpoint": endpoint})
        assert b"[redacted]" not in orjson.dumps(body)
    for execution_id in staged.execution_ids():
        status, body, _ = await gql(client, gateway, staged.member, EXECUTION, {"id": execution_id})
        assert status == 200 and body["data"]["execution"]["id"] == execution_id, body
        assert leaked(orjson.dumps(body), secrets) == [], execution_id
    status, body, _ = await gql(client, gateway, staged.member, EXECUTION, {"id": login_id})
    execution = body["data"]["execution"]
    assert execution["raw"]["workload"]["auth0_refresh_token"] == "[redacted]"
    assert execution["result"]["session_token"] == "[redacted]"
    assert orjson.loads(execution["errorDetails"]["context"]) == {"callback_token": "[redacted]"}
    status, body, _ = await gql(client, gateway, staged.admin, EXECUTION, {"id": login_id})
    assert body["data"]["execution"]["raw"]["workload"]["auth0_refresh_token"] == REFRESH
    assert leaked(orjson.dumps(body), secrets)  # the admin's answer holds them


WATCH = """subscription($eid: ID) { playbookEvents(executionId: $eid) { kind status data error } }"""


async def watched_to_the_end(gw: GatewayInstance, token: str, execution_id: str) -> list[dict[str, Any]]:
    """Every ``PlaybookEvent`` a graphql-ws subscription on the execution gets, until it completes."""
    ws = await WsClient.connect(gw.url)
    ack = await ws.init(token)
    assert ack is not None and ack["type"] == "connection_ack", ack
    try:
        await ws.send("subscribe", "w", {"query": WATCH, "variables": {"eid": execution_id}})
        events = []
        while True:
            message = await ws.receive(20)
            assert message is not None and message["type"] in ("next", "complete"), message
            if message["type"] == "complete":
                return events
            assert not message["payload"].get("errors"), message
            events.append(message["payload"]["data"]["playbookEvents"])
    finally:
        ws.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_member_subscribing_to_an_execution_reads_no_credential_in_its_result(
    gateway: GatewayInstance, staged: Stage
) -> None:
    """A subscription on an execution the route policy lets a member read (the admin's login, whose
    result holds a session token) ends with NoETL's view of it: the same redaction as execution(id)."""
    secrets = staged.secrets()
    login_id = staged.login_execution()
    seen = await watched_to_the_end(gateway, staged.member, login_id)
    result = seen[-1]
    assert result["kind"] == "RESULT", seen
    assert result["data"]["session_token"] == "[redacted]"
    assert leaked(orjson.dumps(seen), secrets) == []
    by_admin = await watched_to_the_end(gateway, staged.admin, login_id)
    assert by_admin[-1]["data"]["session_token"] in secrets  # the same answer, unredacted, for an admin


@pytest.mark.gen_test
async def test_admin_roles_come_from_configuration(
    make_gateway: Any, standin: Standin, client: aiohttp.ClientSession
) -> None:
    """With GATEWAY_ADMIN_ROLES=analyst the member is the admin, and alice (admin, analyst) too."""
    gw = await make_gateway(GATEWAY_ADMIN_ROLES="analyst, auditors")
    staged = await stage(client, gw, standin)
    status, body, _ = await raw_get(client, f"{gw.url}/noetl/executions?full=true", bearer(staged.member))
    assert status == 200 and REFRESH.encode() in body and b"[redacted]" not in body
    gw = await make_gateway(GATEWAY_ADMIN_ROLES="auditors")
    token = await login(client, gw, "good-redact-2")
    status, body, _ = await raw_get(client, f"{gw.url}/noetl/executions?full=true", bearer(token))
    assert status == 200 and REFRESH.encode() not in body and b"[redacted]" in body


@reads_proc
@pytest.mark.gen_test(timeout=90)
async def test_a_large_redacted_answer_streams_in_bounded_memory(
    gateway_process: GatewayProcess, standin: Standin, client: aiohttp.ClientSession
) -> None:
    """~48 MiB of events, each with the workload's credentials, to a member: all hidden, memory flat."""
    gw = gateway_process
    staged = await stage(client, gw, standin)
    url = staged.login_route(gw, "/events")
    async with client.get(f"{url}?pad=300", headers=bearer(staged.member)) as resp:  # warm up
        assert resp.status == 200 and leaked(await resp.read(), staged.secrets()) == []
    secrets = [secret.encode() for secret in staged.secrets()]
    received = redactions = 0
    tail = b""
    with RssSampler(gw.pid) as sampler:
        async with client.get(f"{url}?pad=16000", headers=bearer(staged.member)) as resp:
            assert resp.status == 200 and "Content-Length" not in resp.headers
            async for piece in resp.content.iter_any():
                window = tail + piece  # a secret split between two reads is seen too
                assert not [secret for secret in secrets if secret in window]
                redactions += window.count(b"[redacted]") - tail.count(b"[redacted]")
                received += len(piece)
                tail = window[-256:]
    growth = sampler.growth_bytes
    print(f"\nredacted answer: {received / MIB:.1f} MiB, {redactions} values hidden, RSS growth {growth / MIB:.1f} MiB")
    assert received > 40 * MIB and redactions >= 16000 * 3
    assert growth < 16 * MIB, f"gateway grew by {growth / MIB:.1f} MiB redacting a {received / MIB:.0f} MiB answer"
