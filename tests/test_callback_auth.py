"""Callback authentication (CONTRACT §6): signed per-request tokens, checked before any lookup."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import jwt
import pytest

from tests.conftest import ReplicasFactory, Standin
from tests.support.gateway import GatewayInstance, call
from tests.support.waiting import wait_for


async def start_silent_login(client: aiohttp.ClientSession, gw: GatewayInstance, standin: Standin):
    """A login whose playbook never answers: its request waits for our hand-made callback."""
    task = asyncio.ensure_future(call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "silent-manual"}))
    await wait_for(lambda: standin.state.calls_to("/api/execute"), timeout=5)
    variables = standin.state.calls_to("/api/execute")[-1].body["workload"]
    return task, variables


def callback_body(request_id: str) -> dict:
    return {
        "request_id": request_id,
        "status": "success",
        "data": {
            "status": "authenticated",
            "session_token": "sess_manual_token_1",
            "user": {"user_id": "9", "email": "dan@example.com", "roles": '["ops"]'},
            "expires_at": "2099-01-01T00:00:00Z",
        },
    }


@pytest.mark.gen_test
async def test_missing_forged_and_mismatched_tokens(
    gateway: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    task, variables = await start_silent_login(client, gateway, standin)
    rid = variables["request_id"]
    url = f"{gateway.url}/api/internal/callback"

    status, body, _ = await call(client, "POST", url, callback_body(rid))
    assert status == 401 and body == {"error": "Missing callback token"}

    forged = jwt.encode({"rid": rid, "exp": int(time.time()) + 60}, "not-the-secret" * 4, algorithm="HS256")
    status, body, _ = await call(client, "POST", url, callback_body(rid), headers={"Authorization": f"Bearer {forged}"})
    assert status == 401 and body == {"error": "Invalid callback token"}

    none_alg = jwt.encode({"rid": rid, "exp": int(time.time()) + 60}, None, algorithm="none")
    status, _, _ = await call(client, "POST", url, callback_body(rid), headers={"X-Callback-Token": none_alg})
    assert status == 401

    other = gateway.services.signer.issue("some-other-request")
    status, body, _ = await call(client, "POST", url, {**callback_body(rid), "callback_token": other})
    assert status == 403 and body == {"error": "Callback token does not match request_id"}

    expired = gateway.services.signer.issue(rid, ttl_secs=-10)
    status, body, _ = await call(client, "POST", url, callback_body(rid), headers={"X-Callback-Token": expired})
    assert status == 401 and body == {"error": "Callback token expired"}

    # Unknown ids are refused the same way: an unauthenticated caller learns nothing.
    status, _, _ = await call(client, "POST", url, callback_body("5d1e3b5c-0000-4000-8000-0000000000aa"))
    assert status == 401

    assert not task.done()  # none of the above resolved the waiting login
    status, body, _ = await call(
        client, "POST", url, callback_body(rid), headers={"Authorization": f"Bearer {variables['callback_token']}"}
    )
    assert status == 200 and body["delivered"] is True
    status, login, _ = await task
    assert status == 200
    assert login["user"] == {
        "user_id": 9,
        "email": "dan@example.com",
        "display_name": "dan@example.com",
        "roles": ["ops"],
    }


@pytest.mark.gen_test
async def test_legacy_mode_accepts_unsigned_callback_for_pending_request(
    make_gateway, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(GATEWAY_CALLBACK_AUTH="legacy", NATS_URL="")
    task, variables = await start_silent_login(client, gw, standin)
    url = f"{gw.url}/api/internal/callback"
    status, body, _ = await call(client, "POST", url, callback_body("5d1e3b5c00004000800000000000abcd"))
    assert status == 404
    status, body, _ = await call(client, "POST", url, callback_body(variables["request_id"]))
    assert status == 200 and body["delivered"] is True
    status, login, _ = await task
    assert status == 200 and login["session_token"] == "sess_manual_token_1"


@pytest.mark.gen_test
async def test_callback_bad_bodies(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    url = f"{gateway.url}/api/internal/callback"
    status, body, _ = await call(client, "POST", url, {"status": "success"})
    assert status == 400 and body["error"] == "Missing required field 'request_id'"
    status, body, _ = await call(client, "POST", url, raw=b"{oops", headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"] == "Malformed JSON in request body"


@pytest.mark.gen_test
async def test_callback_reaches_waiter_on_another_replica(
    make_replicas: ReplicasFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    a, b = await make_replicas()
    task, variables = await start_silent_login(client, a, standin)
    status, body, _ = await call(
        client,
        "POST",
        f"{b.url}/api/internal/callback",
        callback_body(variables["request_id"]),
        headers={"Authorization": f"Bearer {variables['callback_token']}"},
    )
    assert status == 200 and body["delivered"] is True
    status, login, _ = await task
    assert status == 200 and login["session_token"] == "sess_manual_token_1"
