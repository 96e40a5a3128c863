"""Callback authentication (CONTRACT §6): signed per-request tokens, checked before any lookup."""

from __future__ import annotations

import time

import aiohttp
import jwt
import pytest

from tests.conftest import GatewayFactory, Replicas, SilentLoginFactory
from tests.support.gateway import GatewayInstance, call
from tests.support.silent_login import callback_body


@pytest.mark.gen_test
async def test_missing_forged_and_mismatched_tokens(
    gateway: GatewayInstance, silent_login: SilentLoginFactory, client: aiohttp.ClientSession
) -> None:
    login = await silent_login(gateway)
    rid = login.request_id
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

    assert not login.task.done()  # none of the above resolved the waiting login
    status, body = await login.answer(gateway)
    assert status == 200 and body["delivered"] is True
    status, answer, _ = await login.task
    assert status == 200
    assert answer["user"] == {
        "user_id": 9,
        "email": "dan@example.com",
        "display_name": "dan@example.com",
        "roles": ["ops"],
    }


@pytest.mark.gen_test
async def test_legacy_mode_accepts_unsigned_callback_for_pending_request(
    make_gateway: GatewayFactory, silent_login: SilentLoginFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(GATEWAY_CALLBACK_AUTH="legacy", NATS_URL="")
    login = await silent_login(gw)
    url = f"{gw.url}/api/internal/callback"
    status, body, _ = await call(client, "POST", url, callback_body("5d1e3b5c00004000800000000000abcd"))
    assert status == 404
    status, body, _ = await call(client, "POST", url, callback_body(login.request_id))  # no token at all
    assert status == 200 and body["delivered"] is True
    status, answer, _ = await login.task
    assert status == 200 and answer["session_token"] == "sess_manual_token_1"


@pytest.mark.gen_test
async def test_callback_bad_bodies(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    url = f"{gateway.url}/api/internal/callback"
    status, body, _ = await call(client, "POST", url, {"status": "success"})
    assert status == 400 and body["error"] == "Missing required field 'request_id'"
    status, body, _ = await call(client, "POST", url, raw=b"{oops", headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"] == "Malformed JSON in request body"


@pytest.mark.gen_test
async def test_callback_reaches_waiter_on_another_replica(replicas: Replicas, silent_login: SilentLoginFactory) -> None:
    a, b = replicas
    login = await silent_login(a)
    status, body = await login.answer(b)
    assert status == 200 and body["delivered"] is True
    status, answer, _ = await login.task
    assert status == 200 and answer["session_token"] == "sess_manual_token_1"
