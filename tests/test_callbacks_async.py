"""Worker callbacks for SSE clients: /api/internal/callback/async and /api/internal/progress (CONTRACT §6)."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.auth.tokens import CallbackSigner
from gateway.live.hub import LiveHub
from tests.conftest import GatewayFactory
from tests.support.gateway import GatewayInstance, call
from tests.support.live import callback_headers, pending_request, post_progress, post_result, services_of
from tests.support.signin import login
from tests.support.sse_client import init_of, streaming
from tests.support.waiting import wait_for


@pytest.mark.gen_test
async def test_result_and_progress_reach_the_stream(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    async with streaming(client, gateway.url, token) as stream:
        client_id = init_of(stream)["clientId"]
        request_id = await pending_request(gateway, token, client_id)
        headers = callback_headers(request_id)

        status, answer = await post_progress(client, gateway, request_id, headers=headers)
        assert (status, answer) == (200, {"status": "delivered"})
        progress = await stream.next_named("playbook/progress")
        assert progress.json == {
            "jsonrpc": "2.0",
            "method": "playbook/progress",
            "params": {
                "requestId": request_id,
                "executionId": "9001",
                "step": "s1",
                "message": "working",
                "progress": 0.5,
            },
        }
        live = services_of(gateway).live
        assert await live.find_request(request_id) is not None  # progress keeps the request pending

        status, answer = await post_result(client, gateway, request_id, {"data": {"rows": [1, 2]}}, headers=headers)
        assert (status, answer) == (200, {"status": "delivered"})
        result = await stream.next_named("playbook/result")
        assert result.json == {
            "jsonrpc": "2.0",
            "method": "playbook/result",
            "params": {"requestId": request_id, "executionId": "9001", "status": "COMPLETED", "data": {"rows": [1, 2]}},
        }
        ids = [int(e.id or "0") for e in stream.events]
        assert ids == sorted(ids) and ids[-1] > ids[0]  # every event has an id, increasing

        # Result delivery removes the pending request; its token is spent: the same callback again is refused.
        await wait_for(lambda: request_gone(live, request_id))
        status, answer = await post_result(client, gateway, request_id, headers=headers)
        assert (status, answer) == (401, {"error": "Callback token already used"})


async def request_gone(live: LiveHub, request_id: str) -> bool:
    return await live.find_request(request_id) is None


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"status": "FAILED"}, {"code": -32000, "message": "Playbook execution failed", "data": {"ok": True}}),
        (
            {"status": "FAILED", "data": None, "error": {"message": "step http_call failed"}},
            {"code": -32000, "message": "step http_call failed", "data": None},
        ),
        (
            {"status": "COMPLETED", "error": {"code": -32001, "message": "timed out", "data": {"step": "x"}}},
            {"code": -32001, "message": "timed out", "data": {"step": "x"}},
        ),
    ],
)
async def test_failure_shape(
    gateway: GatewayInstance,
    client: aiohttp.ClientSession,
    extra: dict[str, object],
    error: dict[str, object],
    token: str,
) -> None:
    async with streaming(client, gateway.url, token) as stream:
        request_id = await pending_request(gateway, token, init_of(stream)["clientId"])
        status, _ = await post_result(client, gateway, request_id, extra, headers=callback_headers(request_id))
        assert status == 200
        result = await stream.next_named("playbook/result")
        assert result.json["params"] == {
            "requestId": request_id,
            "executionId": "9001",
            "status": "FAILED",
            "error": error,
        }


@pytest.mark.gen_test
async def test_unknown_request_is_404(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    request_id = "5d1e3b5c-0000-4000-8000-000000000000"
    for post in (post_result, post_progress):
        status, answer = await post(client, gateway, request_id, headers=callback_headers(request_id))
        assert (status, answer) == (404, {"error": "Request not found"})


@pytest.mark.gen_test
async def test_callback_token_checked_before_lookup(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    async with streaming(client, gateway.url, token) as stream:
        known = await pending_request(gateway, token, init_of(stream)["clientId"])
        unknown = "5d1e3b5c-0000-4000-8000-000000000001"
        forged = CallbackSigner("some-other-secret-0123456789abcdefghijkl", 60).issue(known)
        for post in (post_result, post_progress):
            for request_id in (known, unknown):
                # Same answers whether the request exists or not: nothing learned about ids.
                status, answer = await post(client, gateway, request_id)
                assert (status, answer) == (401, {"error": "Missing callback token"})
                status, answer = await post(client, gateway, request_id, headers={"Authorization": f"Bearer {forged}"})
                assert (status, answer) == (401, {"error": "Invalid callback token"})
                status, answer = await post(client, gateway, request_id, {"callback_token": "not-a-jwt"})
                assert status == 401
                other = callback_headers("5d1e3b5c-0000-4000-8000-00000000beef")
                status, answer = await post(client, gateway, request_id, headers=other)
                assert (status, answer) == (403, {"error": "Callback token does not match request_id"})
        assert not stream.named("playbook/result") and not stream.named("playbook/progress")
        # The token may also come in X-Callback-Token or the body.
        signed = CallbackSigner("test-callback-secret-0123456789abcdefghij", 60).issue(known)
        status, _ = await post_progress(client, gateway, known, headers={"X-Callback-Token": signed})
        assert status == 200
        status, _ = await post_result(client, gateway, known, {"callback_token": signed})
        assert status == 200
        await stream.next_named("playbook/result")


@pytest.mark.gen_test
async def test_legacy_mode_accepts_unsigned_callbacks_for_pending_requests(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(GATEWAY_CALLBACK_AUTH="legacy")
    token = await login(client, gw)
    async with streaming(client, gw.url, token) as stream:
        request_id = await pending_request(gw, token, init_of(stream)["clientId"])
        status, answer = await post_result(client, gw, "5d1e3b5c-0000-4000-8000-000000000002")
        assert (status, answer) == (404, {"error": "Request not found"})
        status, answer = await post_result(client, gw, request_id)
        assert (status, answer) == (200, {"status": "delivered"})
        await stream.next_named("playbook/result")


@pytest.mark.gen_test
async def test_bad_bodies(gateway: GatewayInstance, client: aiohttp.ClientSession) -> None:
    url = f"{gateway.url}/api/internal/callback/async"
    status, body, _ = await call(client, "POST", url, {"status": "COMPLETED"})
    assert (status, body) == (400, {"error": "Missing required field 'request_id'"})
    status, body, _ = await call(client, "POST", url, raw=b"{nope", headers={"Content-Type": "application/json"})
    assert status == 400 and body == {"error": "Malformed JSON in request body"}
    status, body, _ = await call(
        client, "POST", f"{gateway.url}/api/internal/progress", {"request_id": "r", "progress": "lots"}
    )
    assert status == 400 and "progress" in body["error"]
