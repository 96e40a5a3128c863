"""Synchronous auth paths (issue 15, the reference gateway's ``NOETL_AUTH_SYNC``, ``NOETL_AUTHZ_SYNC``,
``GATEWAY_SESSION_VALIDATE_VIA_PLAYBOOK``): NoETL's ``/api/auth/*`` routes instead of playbooks,
and the playbooks again — said once in the log — where NoETL lacks a route (404)."""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import GatewayFactory, Standin
from tests.standin import playbooks
from tests.standin.auth_api import auth_api
from tests.support.gateway import GatewayInstance, call

LOGIN_API = "/api/auth/login"
VALIDATE_API = "/api/auth/session/validate"
ACCESS_API = "/api/auth/check-playbook-access"
ALICE = {"user_id": "42", "email": "alice@example.com", "display_name": None, "roles": "{admin,analyst}"}


def runs(standin: Standin, path: str) -> int:
    """How many times the stand-in started playbook ``path``."""
    return sum(1 for e in standin.state.executions.values() if e.path == path)


def noetl_session(standin: Standin, name: str) -> str:
    """A session NoETL knows and no gateway has cached yet."""
    token = f"sess_{name}_{time.monotonic_ns()}"
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    standin.state.sessions[token] = {"user": ALICE, "expires_at": expires, "valid": True}
    return token


async def post(client: aiohttp.ClientSession, gw: GatewayInstance, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    status, answer, _ = await call(client, "POST", f"{gw.url}{path}", body)
    return status, answer


async def check(client: aiohttp.ClientSession, gw: GatewayInstance, token: str, path: str) -> tuple[int, Any]:
    body = {"session_token": token, "playbook_path": path, "permission_type": "execute"}
    return await post(client, gw, "/api/auth/check-access", body)


@pytest.mark.gen_test
async def test_auth_sync_logs_in_and_validates_without_a_playbook(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    auth_api(standin.state).sync_routes = True
    # NOETL_AUTH_SYNC wins over GATEWAY_SESSION_VALIDATE_VIA_PLAYBOOK, as in the reference.
    gw = await make_gateway(NOETL_AUTH_SYNC="true", GATEWAY_SESSION_VALIDATE_VIA_PLAYBOOK="true")
    status, body = await post(client, gw, "/api/auth/login", {"auth0_token": "good", "session_duration_hours": 2})
    assert status == 200 and body["status"] == "authenticated", body
    assert body["user"]["email"] == "alice@example.com" and body["user"]["roles"] == ["admin", "analyst"]
    (sent,) = standin.state.calls_to(LOGIN_API, "POST")
    assert sent.body["auth0_token"] == "good" and sent.body["credential"] == "pg_auth"
    assert sent.body["client_ip"] == "127.0.0.1" and sent.body["session_duration_hours"] == 2
    assert "callback_token" not in sent.body and "request_id" not in sent.body

    assert await post(client, gw, "/api/auth/login", {"auth0_token": "reject-me"}) == (
        401,
        {"error": "Auth0 token rejected"},
    )
    assert await post(client, gw, "/api/auth/login", {"auth0_token": "error-me"}) == (
        401,
        {"error": "auth0 userinfo call failed"},
    )

    token = noetl_session(standin, "sync")
    status, body = await post(client, gw, "/api/auth/validate", {"session_token": token})
    assert status == 200 and body["valid"] is True and body["user"]["email"] == "alice@example.com"
    (asked,) = standin.state.calls_to(VALIDATE_API, "POST")
    assert asked.body == {"session_token": token, "credential": "pg_auth"}
    assert standin.state.calls_to("/api/execute") == []  # not one playbook


@pytest.mark.gen_test
async def test_validate_via_playbook_runs_the_playbook_first(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(GATEWAY_SESSION_VALIDATE_VIA_PLAYBOOK="true")
    status, body = await post(client, gw, "/api/auth/validate", {"session_token": noetl_session(standin, "pb")})
    assert status == 200 and body["valid"] is True
    assert runs(standin, playbooks.VALIDATE) == 1 and standin.state.calls_to(VALIDATE_API) == []

    default = await make_gateway()  # our default: the API first (NoETL 4.26 has it)
    status, body = await post(client, default, "/api/auth/validate", {"session_token": noetl_session(standin, "api")})
    assert status == 200 and body["valid"] is True
    assert runs(standin, playbooks.VALIDATE) == 1 and len(standin.state.calls_to(VALIDATE_API)) == 1


@pytest.mark.gen_test
async def test_authz_sync_checks_access_without_a_playbook(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    auth_api(standin.state).sync_routes = True
    gw = await make_gateway(NOETL_AUTHZ_SYNC="true")
    token = noetl_session(standin, "authz")
    status, body = await check(client, gw, token, playbooks.NOOP)
    assert status == 200 and body["allowed"] is True and body["user"]["email"] == "alice@example.com", body
    status, body = await check(client, gw, token, playbooks.FORBIDDEN)
    assert status == 200 and body["allowed"] is False
    assert body["message"] == f"No execute permission on {playbooks.FORBIDDEN}"
    sent = [c.body for c in standin.state.calls_to(ACCESS_API, "POST")]
    assert sent == [
        {"session_token": token, "playbook_path": playbooks.NOOP, "action": "execute", "credential": "pg_auth"},
        {"session_token": token, "playbook_path": playbooks.FORBIDDEN, "action": "execute", "credential": "pg_auth"},
    ]
    assert runs(standin, playbooks.CHECK_ACCESS) == 0


@pytest.mark.gen_test
async def test_missing_sync_routes_fall_back_to_the_playbooks_and_say_so_once(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    standin.state.validate_api = False  # NoETL 4.26 without its validate route too
    gw = await make_gateway(NOETL_AUTH_SYNC="true", NOETL_AUTHZ_SYNC="true")
    for n in range(2):
        status, body = await post(client, gw, "/api/auth/login", {"auth0_token": f"good-{n}"})
        assert status == 200, body
        token = noetl_session(standin, f"fallback{n}")
        status, body = await post(client, gw, "/api/auth/validate", {"session_token": token})
        assert status == 200 and body["valid"] is True
        status, body = await check(client, gw, token, f"tests/path_{n}")
        assert status == 200 and body["allowed"] is True
    # Each route asked each time (NoETL may gain it), each playbook ran in its place.
    for route in (LOGIN_API, VALIDATE_API, ACCESS_API):
        assert len(standin.state.calls_to(route, "POST")) == 2, route
    assert runs(standin, playbooks.LOGIN) == 2
    assert runs(standin, playbooks.VALIDATE) == 2
    assert runs(standin, playbooks.CHECK_ACCESS) == 2
    said = [r.getMessage() for r in caplog.records if "using the auth playbook instead" in r.getMessage()]
    assert sorted(said) == [
        "NoETL has no POST /api/auth/check-playbook-access: using the auth playbook instead",
        "NoETL has no POST /api/auth/login: using the auth playbook instead",
        "NoETL has no POST /api/auth/session/validate: using the auth playbook instead",
    ]


@pytest.mark.gen_test
async def test_without_the_flags_the_sync_routes_are_never_asked(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    auth_api(standin.state).sync_routes = True
    gw = await make_gateway()
    status, body = await post(client, gw, "/api/auth/login", {"auth0_token": "good"})
    assert status == 200
    status, body = await check(client, gw, body["session_token"], playbooks.NOOP)
    assert status == 200 and body["allowed"] is True
    assert standin.state.calls_to(LOGIN_API) == [] and standin.state.calls_to(ACCESS_API) == []
    assert runs(standin, playbooks.LOGIN) == 1 and runs(standin, playbooks.CHECK_ACCESS) == 1
