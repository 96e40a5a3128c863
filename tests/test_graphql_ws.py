"""GraphQL over WebSocket (graphql-transport-ws) on /graphql: the protocol, its close codes and limits.

The npm clients themselves drive the same endpoint in tests/test_subscriptions_node.py.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from tornado.httpclient import HTTPClientError

from tests.conftest import GatewayFactory, Standin
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance, call
from tests.support.graphql_ws import WsClient
from tests.support.signin import bearer, login
from tests.support.waiting import wait_for

EXECUTE = "mutation($name: String!) { executePlaybook(name: $name) { executionId requestId } }"
EVENTS = (
    "subscription($rid: ID) { playbookEvents(requestId: $rid) "
    "{ kind requestId executionId status step message progress data error at } }"
)


async def signed_in(gw: GatewayInstance, token: str) -> WsClient:
    ws = await WsClient.connect(gw.url)
    ack = await ws.init(token)
    assert ack is not None and ack["type"] == "connection_ack", ack
    assert ack["payload"]["clientId"]
    return ws


@pytest.mark.gen_test(timeout=30)
async def test_queries_and_mutations_run_over_the_socket(gateway: GatewayInstance, token: str) -> None:
    ws = await signed_in(gateway, token)
    messages = await ws.run("q1", "{ health me { email } }")
    assert [m["type"] for m in messages] == ["next", "complete"]
    assert messages[0]["payload"] == {"data": {"health": "ok", "me": {"email": "alice@example.com"}}}
    refused = await ws.run("q2", "{ nope }")
    assert refused[0]["type"] == "error"
    assert refused[0]["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_progress_then_result_of_a_playbook_started_over_the_socket(
    gateway: GatewayInstance, standin: Standin, token: str
) -> None:
    gate = standin.state.gates[playbooks.PROGRESS_RESULT] = asyncio.Event()
    ws = await signed_in(gateway, token)
    started = await ws.run("start", EXECUTE, {"name": playbooks.PROGRESS_RESULT})
    execution = started[0]["payload"]["data"]["executePlaybook"]
    assert execution["requestId"], "over the socket executePlaybook defaults clientId to the connection's"
    await ws.send("subscribe", "events", {"query": EVENTS, "variables": {"rid": execution["requestId"]}})
    first = await ws.receive()
    assert first is not None and first["type"] == "next", first
    progress = first["payload"]["data"]["playbookEvents"]
    assert progress["kind"] == "PROGRESS" and progress["step"] == "start" and progress["progress"] == 0.5
    assert progress["executionId"] == execution["executionId"]
    gate.set()
    kinds = []
    while True:
        message = await ws.receive()
        assert message is not None
        if message["type"] == "complete":
            break
        event = message["payload"]["data"]["playbookEvents"]
        kinds.append(event["kind"])
        last = event
    assert kinds == ["STATE", "RESULT"], kinds
    assert last["status"] == "COMPLETED" and last["data"]["answer"] == 42
    ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_close_codes_of_the_protocol(make_gateway: GatewayFactory, client: aiohttp.ClientSession) -> None:
    gw = await make_gateway(GATEWAY_WS_INIT_TIMEOUT_SECS="0.3")
    token = await login(client, gw)
    cases = []
    ws = await WsClient.connect(gw.url)  # no token anywhere
    await ws.send("connection_init", payload={})
    cases.append(("missing token", await ws.closed(), 4403))
    ws = await WsClient.connect(gw.url)
    await ws.send("connection_init", payload={"session_token": "sess_not-a-session"})
    cases.append(("invalid token", await ws.closed(), 4403))
    ws = await WsClient.connect(gw.url)
    await ws.send("subscribe", "1", {"query": "{ health }"})
    cases.append(("subscribe before ack", await ws.closed(), 4401))
    ws = await signed_in(gw, token)
    await ws.send("connection_init", payload={"session_token": token})
    cases.append(("second init", await ws.closed(), 4429))
    ws = await WsClient.connect(gw.url)
    await ws.connection.write_message("{not json")
    cases.append(("not JSON", await ws.closed(), 4400))
    ws = await WsClient.connect(gw.url)
    cases.append(("no init in time", await ws.closed(), 4408))
    ws = await WsClient.connect(gw.url, protocols=["graphql-ws"])
    cases.append(("other subprotocol", await ws.closed(), 4406))
    ws = await signed_in(gw, token)
    await ws.send("subscribe", "dup", {"query": 'subscription { executionUpdates(executionId: "1") { kind } }'})
    await ws.send("subscribe", "dup", {"query": "{ health }"})
    cases.append(("id in use", await ws.closed(), 4409))
    for name, (code, _reason), expected in cases:
        assert code == expected, (name, code, expected)


@pytest.mark.gen_test(timeout=30)
async def test_token_from_the_handshake_and_expired_sessions(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    ws = await WsClient.connect(gateway.url, headers=bearer(token))
    ack = await ws.init(None)
    assert ack is not None and ack["type"] == "connection_ack"
    ws.close()
    ws = await WsClient.connect(gateway.url, query=f"session_token={token}")
    assert (await ws.init(None) or {}).get("type") == "connection_ack"
    ws.close()
    # Read at the upgrade: the handshake's headers are let go of before connection_init comes.
    ws = await WsClient.connect(gateway.url, headers={"Cookie": f"session_token={token}"})
    assert (await ws.init(None) or {}).get("type") == "connection_ack"
    assert (await ws.run("me", "{ me { email } }"))[0]["payload"]["data"]["me"]["email"] == "alice@example.com"
    ws.close()
    ws = await WsClient.connect(gateway.url)
    await ws.send("connection_init", payload={})
    assert (await ws.closed())[0] == 4403  # no token anywhere
    expired = await login(client, gateway, "expired-x")
    ws = await WsClient.connect(gateway.url)
    await ws.send("connection_init", payload={"session_token": expired})
    assert (await ws.closed())[0] == 4403


@pytest.mark.gen_test(timeout=30)
async def test_permessage_deflate_is_not_negotiated(gateway: GatewayInstance, token: str) -> None:
    """An offered permessage-deflate is declined: no zlib state per socket (≈ 300 KB each at zlib's defaults)."""
    ws = await WsClient.connect(gateway.url, offer_deflate=True)
    assert ws.connection.headers is not None
    assert "Sec-WebSocket-Extensions" not in ws.connection.headers
    assert ws.connection.selected_subprotocol == "graphql-transport-ws"
    assert (await ws.init(token) or {}).get("type") == "connection_ack"
    assert (await ws.run("h", "{ health }"))[0]["payload"] == {"data": {"health": "ok"}}
    ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_cross_origin_handshake_is_refused(gateway: GatewayInstance, token: str) -> None:
    with pytest.raises(HTTPClientError) as refused:
        await WsClient.connect(
            gateway.url, headers={"Origin": "https://evil.example", "Cookie": f"session_token={token}"}
        )
    assert refused.value.code == 403
    ws = await WsClient.connect(gateway.url, headers={"Origin": "http://ui.example:3000"})  # CORS_ALLOWED_ORIGINS
    assert (await ws.init(token) or {}).get("type") == "connection_ack"
    ws.close()


@pytest.mark.gen_test(timeout=30)
async def test_logout_on_another_replica_closes_the_socket_with_4403(
    replicas: tuple[GatewayInstance, GatewayInstance], client: aiohttp.ClientSession
) -> None:
    a, b = replicas
    token = await login(client, a)
    ws = await signed_in(a, token)
    status, _, _ = await call(client, "POST", f"{b.url}/api/auth/logout", {"session_token": token})
    assert status == 200
    loop = asyncio.get_running_loop()
    began = loop.time()
    code, reason = await ws.closed(timeout=3)
    assert code == 4403 and "logged out" in (reason or ""), (code, reason)
    assert loop.time() - began < 1.0


@pytest.mark.gen_test(timeout=60)
async def test_a_burst_of_subscribes_all_start_refusals_included(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """More subscribes at once than start at once (STARTS_AT_ONCE): each waits its turn, refused
    ones give their turn back, none is lost."""
    gw = await make_gateway(GATEWAY_MAX_SUBSCRIPTIONS_PER_SESSION="500")
    assert gw.services is not None
    subscribers = gw.services.subscriptions.subscribers
    token = await login(client, gw)
    sockets = [await signed_in(gw, token) for _ in range(4)]
    watch = 'subscription { executionUpdates(executionId: "%d") { kind } }'
    unknown = 'subscription { playbookEvents(requestId: "%s") { kind } }'
    for n in range(30):  # 4 × 30 = 120: 40 refused (no such request), 80 that start and stay open
        for index, ws in enumerate(sockets):
            query = unknown % f"no-such-{index}-{n}" if (n + index) % 3 == 0 else watch % (100 * index + n)
            await ws.send("subscribe", f"s{n}", {"query": query})
    errors = 0
    for ws in sockets:
        for _ in range(sum(1 for n in range(30) if (n + sockets.index(ws)) % 3 == 0)):
            message = await ws.receive(20)
            assert message is not None and message["type"] == "error", message
            assert message["payload"][0]["extensions"]["code"] == "NOT_FOUND", message
            errors += 1
    assert errors == 40
    await wait_for(lambda: subscribers.open_total == 80, 20)
    for ws in sockets:
        ws.close()
    await wait_for(lambda: subscribers.open_total == 0, 10)


@pytest.mark.gen_test(timeout=30)
async def test_subscriptions_per_session_are_limited(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(GATEWAY_MAX_SUBSCRIPTIONS_PER_SESSION="2")
    assert gw.services is not None
    subscribers = gw.services.subscriptions.subscribers
    token = await login(client, gw)
    first, second = await signed_in(gw, token), await signed_in(gw, token)  # the limit is the session's
    watch = 'subscription { executionUpdates(executionId: "%d") { kind } }'
    await first.send("subscribe", "s0", {"query": watch % 1})
    await second.send("subscribe", "s1", {"query": watch % 2})
    await wait_for(lambda: subscribers.open_total == 2)
    refused = await first.run("s2", watch % 3)
    assert refused[0]["type"] == "error", refused
    assert refused[0]["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
    await first.send("complete", "s0")  # one ends: room for one more
    await wait_for(lambda: subscribers.open_total == 1)
    await second.send("subscribe", "s3", {"query": watch % 4})
    await wait_for(lambda: subscribers.open_total == 2)
    first.close()
    second.close()
    await wait_for(lambda: subscribers.open_total == 0)


@pytest.mark.gen_test(timeout=30)
async def test_subscription_over_plain_post_names_the_transports(
    gateway: GatewayInstance, client: aiohttp.ClientSession, token: str
) -> None:
    status, body, _ = await call(
        client,
        "POST",
        f"{gateway.url}/graphql",
        {"query": 'subscription { executionUpdates(executionId: "1") { kind } }'},
        headers=bearer(token),
    )
    assert status == 200
    assert "graphql-transport-ws" in body["errors"][0]["message"]
