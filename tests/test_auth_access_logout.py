"""Check-access and logout (CONTRACT §3), including revocation seen by another process (§7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance, GatewayProcess, call
from tests.support.signin import login
from tests.support.waiting import wait_for


def check_access_runs(standin: Standin) -> int:
    return sum(1 for c in standin.state.calls_to("/api/execute") if c.body["path"] == playbooks.CHECK_ACCESS)


@pytest.mark.gen_test
async def test_check_access_allowed_denied_and_cached(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, token: str
) -> None:
    url = f"{gateway.url}/api/auth/check-access"
    status, body, _ = await call(
        client, "POST", url, {"session_token": token, "playbook_path": "team/report", "permission_type": "execute"}
    )
    assert status == 200
    assert body["allowed"] is True
    assert body["playbook_path"] == "team/report" and body["permission_type"] == "execute"
    assert body["user"]["email"] == "alice@example.com" and body["message"]
    variables = [c.body["workload"] for c in standin.state.calls_to("/api/execute")][-1]
    assert variables["action"] == "execute" and variables["playbook_path"] == "team/report"
    assert {"callback_subject", "request_id", "gateway_url", "callback_token", "session_token"} <= set(variables)

    standin.state.denied_paths.add("team/secret")
    _, body, _ = await call(client, "POST", url, {"session_token": token, "playbook_path": "team/secret"})
    assert body["allowed"] is False and body["message"] == "No execute permission on team/secret"

    runs = check_access_runs(standin)
    for _ in range(3):
        _, body, _ = await call(client, "POST", url, {"session_token": token, "playbook_path": "team/report"})
        assert body["allowed"] is True
    assert check_access_runs(standin) == runs  # decisions cached per session+path


@pytest.mark.gen_test
async def test_check_access_bad_input(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    url = f"{gateway.url}/api/auth/check-access"
    status, body, _ = await call(
        client, "POST", url, {"session_token": "t", "playbook_path": "p", "permission_type": "delete"}
    )
    assert status == 400 and "permission_type" in body["error"]
    status, body, _ = await call(client, "POST", url, {"session_token": "t"})
    assert status == 400 and body["error"] == "Missing required field 'playbook_path'"
    status, body, _ = await call(client, "POST", url, {"session_token": "bad token", "playbook_path": "p"})
    assert status == 200 and body["allowed"] is False and body["message"] == "Malformed session token"


@pytest.mark.gen_test
async def test_logout_revokes_on_every_replica(
    make_gateway, standin: Standin, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    a = await make_gateway()
    b = GatewayProcess(a.env)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, b.start, str(tmp_path / "b.log"))
    try:
        await wait_for(lambda: _ready(client, b), timeout=10)
        token = await login(client, a)
        status, body, _ = await call(client, "POST", f"{b.url}/api/auth/validate", {"session_token": token})
        assert body["valid"] is True

        status, body, _ = await call(
            client, "POST", f"{a.url}/api/auth/logout", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 200 and body == {"status": "logged_out"}

        async def refused_on_b() -> bool:
            _, answer, _ = await call(client, "POST", f"{b.url}/api/auth/validate", {"session_token": token})
            return answer["valid"] is False

        started = loop.time()
        await wait_for(refused_on_b, timeout=1.0)
        elapsed = loop.time() - started
        assert elapsed < 1.0
        # Still refused although NoETL itself would say the session is valid (no logout playbook here).
        assert standin.state.sessions[token]["valid"] is True
        _, body, _ = await call(client, "POST", f"{a.url}/api/auth/validate", {"session_token": token})
        assert body["valid"] is False
    finally:
        await loop.run_in_executor(None, b.stop)
    log_text = (tmp_path / "b.log").read_text()
    assert token not in log_text


async def _ready(client: aiohttp.ClientSession, gw: GatewayProcess) -> bool:
    _, body, _ = await call(client, "GET", f"{gw.url}/health/ready")
    return isinstance(body, dict) and body.get("status") == "ready"


@pytest.mark.gen_test
async def test_logout_runs_logout_playbook_when_configured(
    make_gateway, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(AUTH_PLAYBOOK_LOGOUT=playbooks.LOGOUT)
    token = await login(client, gw)
    status, _, _ = await call(client, "POST", f"{gw.url}/api/auth/logout", {"session_token": token})
    assert status == 200
    await wait_for(lambda: standin.state.sessions[token]["valid"] is False, timeout=5)
    variables = [c.body["workload"] for c in standin.state.calls_to("/api/execute")][-1]
    assert variables["session_token"] == token and variables["callback_token"]


@pytest.mark.gen_test
async def test_logout_without_token_is_401(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    status, body, _ = await call(client, "POST", f"{gateway.url}/api/auth/logout")
    assert status == 401 and body == {"error": "Missing authentication token"}
