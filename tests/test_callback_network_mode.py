"""``GATEWAY_CALLBACK_AUTH=network`` (issue 15): unsigned callbacks of playbooks written for the
reference gateway, accepted only from the workers' network and only for pending request ids;
signed callbacks from anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from gateway.auth.callback_sources import CallbackSources
from gateway.auth.tokens import CallbackTokenError
from tests.conftest import GatewayFactory, SilentLoginFactory
from tests.support.gateway import GatewayInstance, call
from tests.support.live import callback_headers, services_of, waiting_client
from tests.support.silent_login import callback_body

UNKNOWN_ID = "5d1e3b5c-0000-4000-8000-0000000000ee"
OUTSIDE = "Unsigned callbacks are not accepted from this address"


def travel_result(request_id: str) -> dict[str, Any]:
    """What noetl/travel's playbooks post: no callback_token, no execution_id, no Authorization."""
    return {"request_id": request_id, "status": "COMPLETED", "data": {"flights": [{"from": "SFO", "to": "JFK"}]}}


NetworkMode = Callable[..., Awaitable[GatewayInstance]]


@pytest.fixture
def network_mode(make_gateway: GatewayFactory) -> NetworkMode:
    """``await network_mode(networks, **env)``: a gateway taking unsigned callbacks from ``networks`` only."""

    def start(networks: str, **env: str) -> Awaitable[GatewayInstance]:
        return make_gateway(GATEWAY_CALLBACK_AUTH="network", GATEWAY_CALLBACK_TRUSTED_NETWORKS=networks, **env)

    return start


async def post(
    client: aiohttp.ClientSession, gw: GatewayInstance, path: str, body: dict[str, Any], **headers: str
) -> tuple[int, Any]:
    status, answer, _ = await call(client, "POST", f"{gw.url}/api/internal/{path}", body, headers=headers)
    return status, answer


@pytest.mark.gen_test
async def test_travel_style_callback_from_the_trusted_network_reaches_the_client(
    network_mode: NetworkMode, client: aiohttp.ClientSession
) -> None:
    gw = await network_mode("127.0.0.1/32")
    async with waiting_client(client, gw) as (_, stream, request_id):
        progress = {"request_id": request_id, "step": "search", "message": "looking", "progress": 0.5}
        assert await post(client, gw, "progress", progress) == (200, {"status": "delivered"})
        await stream.next_named("playbook/progress")

        # An unknown id is refused even from the trusted network: only pending requests are answered.
        assert await post(client, gw, "callback/async", travel_result(UNKNOWN_ID)) == (
            404,
            {"error": "Request not found"},
        )

        assert await post(client, gw, "callback/async", travel_result(request_id)) == (200, {"status": "delivered"})
        result = await stream.next_named("playbook/result")
        assert result.json["params"] == {
            "requestId": request_id,
            "executionId": "9001",  # from the pending request: the callback had none
            "status": "COMPLETED",
            "data": {"flights": [{"from": "SFO", "to": "JFK"}]},
        }
        # Final: the same unsigned callback again is refused (the request is spent, as with a token).
        status, _ = await post(client, gw, "callback/async", travel_result(request_id))
        assert status == 401


@pytest.mark.gen_test
async def test_unsigned_login_callback_from_the_trusted_network_completes_the_login(
    network_mode: NetworkMode, silent_login: SilentLoginFactory, client: aiohttp.ClientSession
) -> None:
    gw = await network_mode("10.0.0.0/8, ::1, 127.0.0.0/8", NATS_URL="")
    waiting = await silent_login(gw)
    assert await post(client, gw, "callback", callback_body(UNKNOWN_ID)) == (404, {"error": "Request not found"})
    status, answer = await post(client, gw, "callback", callback_body(waiting.request_id))
    assert status == 200 and answer["delivered"] is True
    status, body, _ = await waiting.task
    assert status == 200 and body["session_token"] == "sess_manual_token_1"


@pytest.mark.gen_test
async def test_unsigned_callbacks_from_outside_are_403_before_any_lookup_signed_ones_pass(
    network_mode: NetworkMode, silent_login: SilentLoginFactory, client: aiohttp.ClientSession
) -> None:
    gw = await network_mode("10.0.0.0/8,fd00::/8")
    refused = (403, {"error": OUTSIDE})
    waiting = await silent_login(gw)  # first: it reads the playbook's variables from the last execute
    assert await post(client, gw, "callback", callback_body(waiting.request_id)) == refused
    assert not waiting.task.done()
    status, _ = await waiting.answer(gw)  # with its token
    assert status == 200 and (await waiting.task)[0] == 200

    async with waiting_client(client, gw) as (_, stream, request_id):
        # The same answer for a pending id and an unknown one: the caller learns nothing.
        assert await post(client, gw, "callback/async", travel_result(request_id)) == refused
        assert await post(client, gw, "callback/async", travel_result(UNKNOWN_ID)) == refused
        assert await post(client, gw, "progress", {"request_id": request_id, "progress": 0.1}) == refused
        assert await services_of(gw).live.find_request(request_id) is not None  # still pending

        # Signed: accepted from anywhere.
        signed = await post(client, gw, "callback/async", travel_result(request_id), **callback_headers(request_id))
        assert signed == (200, {"status": "delivered"})
        await stream.next_named("playbook/result")


@pytest.mark.gen_test
async def test_behind_an_ingress_the_trusted_hops_rule_finds_the_worker(
    network_mode: NetworkMode, client: aiohttp.ClientSession
) -> None:
    gw = await network_mode("10.0.0.0/8")
    async with waiting_client(client, gw) as (_, stream, request_id):
        body = {"request_id": request_id, "progress": 0.2}
        # The ingress appended the worker's address (one trusted hop, the default).
        assert await post(client, gw, "progress", body, **{"X-Forwarded-For": "10.1.2.3"}) == (
            200,
            {"status": "delivered"},
        )
        # A caller outside wrote a trusted address itself; the ingress appended the real one.
        forged = {"X-Forwarded-For": "10.1.2.3, 203.0.113.7"}
        assert await post(client, gw, "progress", body, **forged) == (403, {"error": OUTSIDE})
        await stream.next_named("playbook/progress")

    direct = await network_mode("10.0.0.0/8", GATEWAY_TRUSTED_PROXY_HOPS="0")
    # No proxy trusted: the header means nothing, the peer (127.0.0.1) is the caller.
    spoofed = {"X-Forwarded-For": "10.9.9.9"}
    refused = await post(client, direct, "callback/async", travel_result(UNKNOWN_ID), **spoofed)
    assert refused == (403, {"error": OUTSIDE})


def test_trusted_networks_match_ipv4_ipv6_and_mapped_addresses() -> None:
    sources = CallbackSources("network", ["10.244.0.0/16", "fd00:10::/64", "192.168.1.7"])
    assert sources.is_trusted("10.244.3.9")
    assert sources.is_trusted("::ffff:10.244.3.9")  # dual-stack sockets report IPv4 peers this way
    assert sources.is_trusted("fd00:10::5") and sources.is_trusted("fd00:10::5%eth0")
    assert sources.is_trusted("192.168.1.7") and not sources.is_trusted("192.168.1.8")
    assert not sources.is_trusted("10.245.0.1") and not sources.is_trusted("fd00:11::1")
    assert not sources.is_trusted("") and not sources.is_trusted("not-an-ip")
    with pytest.raises(CallbackTokenError) as refused:
        sources.admit_unsigned("203.0.113.7")
    assert refused.value.status == 403
    with pytest.raises(CallbackTokenError) as missing:
        CallbackSources("required", ["10.0.0.0/8"]).admit_unsigned("10.0.0.1")
    assert missing.value.status == 401 and missing.value.public == "Missing callback token"
    CallbackSources("legacy", []).admit_unsigned("203.0.113.7")  # legacy: anyone (pending ids only)


@pytest.mark.parametrize(
    "env",
    [
        {"GATEWAY_CALLBACK_AUTH": "network"},
        {"GATEWAY_CALLBACK_AUTH": "network", "GATEWAY_CALLBACK_TRUSTED_NETWORKS": " , "},
        {"GATEWAY_CALLBACK_TRUSTED_NETWORKS": "10.0.0.0/33"},
        {"GATEWAY_CALLBACK_TRUSTED_NETWORKS": "10.0.0.0/8,pods"},
    ],
)
def test_network_mode_without_usable_networks_stops_start_up(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway"], env={**os.environ, **env}, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "GATEWAY_CALLBACK_TRUSTED_NETWORKS" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
