"""Callback tokens are single-use and short-lived; callback request ids are checked for shape
before anything is looked up or published (issue 13 §3).

Once a request's final callback is accepted — the answer a login/check-access waits for, or an
async result — its token is refused on every replica (a NATS KV bucket of spent request ids);
progress notes before it keep working.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jwt
import nats
import orjson
import pytest

from gateway.auth.tokens import CallbackSigner
from gateway.config import load_config
from tests.conftest import GatewayFactory, Replicas, SilentLoginFactory
from tests.support.gateway import GatewayInstance, call
from tests.support.live import callback_headers, pending_request, post_progress, post_result
from tests.support.nats_server import NatsServer, kv_bucket
from tests.support.signin import login
from tests.support.silent_login import callback_body
from tests.support.sse_client import init_of, streaming
from tests.support.waiting import wait_for

SPENT = {"error": "Callback token already used"}


async def post_callback(
    client: aiohttp.ClientSession, gw: GatewayInstance, body: dict[str, Any], token: str
) -> tuple[int, Any]:
    status, answer, _ = await call(
        client, "POST", f"{gw.url}/api/internal/callback", body, headers={"Authorization": f"Bearer {token}"}
    )
    return status, answer


@pytest.mark.gen_test
async def test_a_login_callback_token_is_refused_once_used_on_every_replica(
    replicas: Replicas, silent_login: SilentLoginFactory, nats_server: NatsServer
) -> None:
    a, b = replicas
    login = await silent_login(a)
    status, answer = await login.answer(a)
    assert (status, answer["delivered"]) == (200, True)
    status, login_answer, _ = await login.task
    assert status == 200
    # A forged "authenticated" answer with the captured token: refused here and on the other replica.
    for gw in (a, b):
        status, answer = await login.answer(gw)
        assert (status, answer) == (401, SPENT)
    # What landed in NATS: the spent request id, in its own bucket.
    async with kv_bucket(nats_server.url, a.config.nats_spent_callback_bucket) as kv:
        entry = await kv.get(login.request_id)
        assert entry.value is not None and "at" in orjson.loads(entry.value)


@pytest.mark.gen_test
async def test_two_final_callbacks_at_once_one_is_accepted(
    replicas: Replicas, silent_login: SilentLoginFactory
) -> None:
    a, b = replicas
    login = await silent_login(a)
    answers = await asyncio.gather(login.answer(a), login.answer(b))
    assert sorted(status for status, _ in answers) == [200, 401]
    assert (await login.task)[0] == 200


@pytest.mark.gen_test
async def test_an_undelivered_callback_does_not_spend_its_token(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Without NATS and without a waiter nobody took the answer: the playbook may post it again."""
    gw = await make_gateway(NATS_URL="")
    rid = "5d1e3b5c-0000-4000-8000-0000000000bb"
    token = CallbackSigner(gw.config.gateway_callback_secret, 60).issue(rid)
    for _ in range(2):
        status, answer = await post_callback(client, gw, callback_body(rid), token)
        assert (status, answer["delivered"]) == (200, False)


@pytest.mark.gen_test
@pytest.mark.parametrize("nats_url", ["shared", ""])
async def test_an_async_result_spends_its_token_progress_before_it_works(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, nats_url: str
) -> None:
    overrides = {} if nats_url == "shared" else {"NATS_URL": ""}
    gw = await make_gateway(**overrides)
    other = await make_gateway(**overrides) if nats_url == "shared" else gw
    token = await login(client, gw)
    async with streaming(client, gw.url, token) as stream:
        request_id = await pending_request(gw, token, init_of(stream)["clientId"])
        headers = callback_headers(request_id)
        for _ in range(2):
            assert (await post_progress(client, gw, request_id, headers=headers))[0] == 200
        assert await post_result(client, gw, request_id, headers=headers) == (200, {"status": "delivered"})
        await stream.next_named("playbook/result")
        for target in (gw, other):
            assert await post_result(client, target, request_id, headers=headers) == (401, SPENT)
            assert await post_progress(client, target, request_id, headers=headers) == (401, SPENT)
        assert len(stream.named("playbook/result")) == 1


@pytest.mark.gen_test
async def test_malformed_request_ids_are_refused_before_any_lookup_or_subject(
    gateway: GatewayInstance, client: aiohttp.ClientSession, nats_server: NatsServer
) -> None:
    """Even with a token the gateway signed for them: ``.``, ``*`` and ``>`` would address other
    NATS subjects, and the gateway never issues anything but a uuid."""
    nc = await nats.connect(nats_server.url)
    seen: list[str] = []

    async def record(msg: Any) -> None:
        seen.append(msg.subject)

    await nc.subscribe("noetl.callbacks.>", cb=record)
    await nc.subscribe("probe", cb=record)
    try:
        for request_id in ("x.y", "*", ">", "a b", "REQ-1", "5D1E3B5C-0000-4000-8000-000000000000", "1" * 129):
            signed = {"Authorization": f"Bearer {gateway.services.signer.issue(request_id)}"}  # type: ignore[union-attr]
            for path in ("/api/internal/callback", "/api/internal/callback/async", "/api/internal/progress"):
                body = {"request_id": request_id, "status": "success"}
                status, answer, _ = await call(client, "POST", f"{gateway.url}{path}", body, headers=signed)
                assert status == 400, (request_id, path, answer)
                assert "request_id" in answer["error"]
        # Flushed round trip: anything the gateway published before now has arrived.
        await nc.publish("probe", b"")
        await nc.flush()
        await wait_for(lambda: "probe" in seen)
        assert seen == ["probe"]
    finally:
        await nc.close()


@pytest.mark.gen_test
async def test_auth_playbook_tokens_live_only_as_long_as_the_wait(
    gateway: GatewayInstance, silent_login: SilentLoginFactory
) -> None:
    login = await silent_login(gateway)
    claims = jwt.decode(login.callback_token, options={"verify_signature": False})
    timeout = gateway.config.auth_playbook_timeout_secs
    assert claims["rid"] == login.request_id
    assert claims["exp"] <= time.time() + timeout + 5
    await login.answer(gateway)
    assert (await login.task)[0] == 200


def test_callback_secret_must_be_32_bytes_and_the_generated_one_is() -> None:
    assert load_config({"GATEWAY_CALLBACK_SECRET": "x" * 32}).gateway_callback_secret == "x" * 32
    assert load_config({"GATEWAY_CALLBACK_SECRET": "é" * 16}).gateway_callback_secret  # 32 bytes in UTF-8
    generated = CallbackSigner(None, 60)
    token = generated.issue("5d1e3b5c-0000-4000-8000-000000000000")
    assert generated.secret_was_generated
    assert len(generated._secret.encode()) >= 32
    generated.verify(token, "5d1e3b5c-0000-4000-8000-000000000000")
