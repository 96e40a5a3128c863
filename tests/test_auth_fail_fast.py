"""Fail-fast login and access checks (issue 15, the reference gateway v3.x): a playbook slower than
``AUTH_PLAYBOOK_FAIL_FAST_SECS`` is ``503 {"error": "auth backend is busy"}`` and its execution is
cancelled in NoETL; a cancel that fails is counted."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt
import pytest

from tests.conftest import GatewayFactory, SignedInFactory, Standin
from tests.standin import playbooks
from tests.standin.auth_api import auth_api
from tests.support.gateway import GatewayInstance, call
from tests.support.live import services_of
from tests.support.waiting import wait_for

BUSY = {"error": "auth backend is busy"}


async def login(client: aiohttp.ClientSession, gw: GatewayInstance, auth0_token: str) -> tuple[int, Any]:
    status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": auth0_token})
    return status, body


def started(standin: Standin, path: str) -> list[str]:
    """Execution ids the stand-in started for ``path``, oldest first."""
    return [e.execution_id for e in standin.state.executions.values() if e.path == path]


def cancels(standin: Standin, execution_id: str) -> list[Any]:
    return standin.state.calls_to(f"/api/executions/{execution_id}/cancel", "POST")


def cancel_failures(gw: GatewayInstance) -> float:
    value = services_of(gw).metrics.registry.get_sample_value("noetl_gateway_auth_cancel_failed_total")
    return value or 0.0


@pytest.mark.gen_test
async def test_a_slow_login_is_503_busy_and_its_execution_is_cancelled(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(AUTH_PLAYBOOK_FAIL_FAST_SECS="0.3")  # the login script answers after 1 s
    before = time.monotonic()
    status, body = await login(client, gw, "slow-login")
    elapsed = time.monotonic() - before
    assert (status, body) == (503, BUSY)
    assert 0.3 <= elapsed < 0.9, elapsed  # the budget, not the playbook, decided
    (execution_id,) = started(standin, playbooks.LOGIN)
    workload = standin.state.executions[execution_id].variables
    claims = jwt.decode(workload["callback_token"], options={"verify_signature": False})
    assert claims["exp"] <= time.time() + 0.3 + 5 + 1  # the token ends with the short wait

    (cancel,) = await wait_for(lambda: cancels(standin, execution_id))
    assert cancel.body["cascade"] is True and playbooks.LOGIN in cancel.body["reason"]
    assert standin.state.executions[execution_id].status == "CANCELLED"  # it never calls back
    assert services_of(gw).callbacks.pending == 0 and cancel_failures(gw) == 0

    # The same playbook within a budget that fits it: signed in, nothing cancelled.
    roomy = await make_gateway(AUTH_PLAYBOOK_FAIL_FAST_SECS="4")
    status, body = await login(client, roomy, "slow-login")
    assert status == 200 and body["status"] == "authenticated", body
    assert [eid for eid in started(standin, playbooks.LOGIN) if cancels(standin, eid)] == [execution_id]


@pytest.mark.gen_test
async def test_a_slow_access_check_is_503_busy_and_cancelled(make_signed_in: SignedInFactory, standin: Standin) -> None:
    alice = await make_signed_in(AUTH_PLAYBOOK_FAIL_FAST_SECS="0.3")

    async def slow_check(run: Any) -> None:
        await asyncio.sleep(30)
        await playbooks.check_access(run)

    standin.state.playbooks[playbooks.CHECK_ACCESS] = slow_check
    asked = {"session_token": alice.token, "playbook_path": "tests/noop", "permission_type": "execute"}
    status, body, _ = await alice.call("POST", "/api/auth/check-access", asked)
    assert (status, body) == (503, BUSY)
    (first,) = started(standin, playbooks.CHECK_ACCESS)
    await wait_for(lambda: cancels(standin, first))

    # executePlaybook's access check: the same budget, a GraphQL upstream error, nothing started.
    status, body, _ = await alice.gql('mutation { executePlaybook(name: "tests/noop") { id } }')
    assert status == 200 and body["errors"][0]["message"] == "auth backend is busy", body
    assert started(standin, "tests/noop") == []
    second = started(standin, playbooks.CHECK_ACCESS)[-1]
    await wait_for(lambda: cancels(standin, second))
    assert all(standin.state.executions[eid].status == "CANCELLED" for eid in (first, second))

    # A start through the proxy: the same 503 (retry later), not a 502 (broken upstream).
    status, body, _ = await alice.call("POST", "/noetl/execute", {"path": "tests/noop"})
    assert (status, body["error"]) == (503, "auth backend is busy")
    assert started(standin, "tests/noop") == []


@pytest.mark.gen_test
async def test_a_cancel_noetl_refuses_is_counted_not_shown(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(AUTH_PLAYBOOK_FAIL_FAST_SECS="0.2")
    auth_api(standin.state).cancel_status = 500
    assert await login(client, gw, "silent-forever") == (503, BUSY)
    await wait_for(lambda: cancel_failures(gw) == 1)
    _, metrics, _ = await call(client, "GET", f"{gw.url}/metrics")
    assert "noetl_gateway_auth_cancel_failed_total 1.0" in metrics


@pytest.mark.gen_test
async def test_fail_fast_off_keeps_the_timeout_and_its_504_and_still_cancels(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(AUTH_PLAYBOOK_FAIL_FAST_SECS="0", AUTH_PLAYBOOK_TIMEOUT_SECS="0.3")
    status, body = await login(client, gw, "silent-once")
    assert status == 504 and body == {"error": "No answer from the auth playbook within 0.3s"}
    (execution_id,) = started(standin, playbooks.LOGIN)
    await wait_for(lambda: cancels(standin, execution_id))
