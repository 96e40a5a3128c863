"""Push ingress against the stand-in and a real nats-server (issue 16): a verified delivery starts one
execution, anything else starts nothing — the stand-in's own record of ``POST /api/execute`` is the witness."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from tornado.ioloop import IOLoop

from tests.conftest import GatewayFactory, Standin
from tests.support.gateway import GatewayInstance, call
from tests.support.jwks import JwksServer, SigningKey, serve_jwks
from tests.support.webhooks import (
    BEARER_TOKEN,
    LISTENER_SECRETS,
    PLAYBOOK,
    STAMPED_SECRET,
    github_delivery,
    listener_file,
    oidc_token,
    pubsub_push,
    signature,
)


@pytest.fixture
def push_keys(io_loop: IOLoop) -> Iterator[JwksServer]:
    """Google's push signing keys, as a local JWKS with one test key."""
    yield from serve_jwks("push-key")


@pytest.fixture
def ingress_env(tmp_path: Path, push_keys: JwksServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in LISTENER_SECRETS.items():
        monkeypatch.setenv(name, value)
    return {"GATEWAY_INGRESS_CONFIG": listener_file(tmp_path), "GATEWAY_INGRESS_JWKS_URL": push_keys.url}


@pytest.fixture
def gw(io_loop: IOLoop, make_gateway: GatewayFactory, ingress_env: dict[str, str]) -> GatewayInstance:
    instance: GatewayInstance = io_loop.run_sync(lambda: make_gateway(**ingress_env), timeout=15)
    return instance


def executes(standin: Standin) -> list[Any]:
    return standin.state.calls_to("/api/execute")


async def post(
    client: aiohttp.ClientSession, gw: GatewayInstance, listener: str, body: bytes, headers: dict[str, str]
) -> tuple[int, Any, Any]:
    return await call(client, "POST", f"{gw.url}/ingress/{listener}", headers=headers, raw=body)


def metric(gw: GatewayInstance, line_start: str) -> float:
    assert gw.services is not None
    for line in gw.services.metrics.render().decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- a verified webhook starts one execution ---------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_signed_github_webhook_starts_the_configured_playbook(
    gw: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    body, headers = github_delivery(
        {"ref": "refs/heads/main", "repository": {"full_name": "acme/app"}, "ingress": "spoofed"},
        Cookie="session_token=stolen",
        Authorization="Bearer some-user-token",
    )
    status, answer, _ = await post(client, gw, "github", body, headers)
    assert status == 202, answer
    assert answer["status"] == "accepted" and answer["duplicate"] is False
    assert answer["delivery_id"] == headers["X-GitHub-Delivery"]
    (sent,) = executes(standin)
    assert sent.body["path"] == PLAYBOOK
    workload = sent.body["workload"]
    assert workload == sent.body["payload"]
    assert workload["ref"] == "refs/heads/main" and workload["repository"] == {"full_name": "acme/app"}
    assert workload["github_event"] == "push"  # an allowed directive
    ingress = workload["ingress"]  # the gateway's block, not the body's "ingress" field
    assert ingress["listener"] == "github" and ingress["subscription"] == "subscriptions/github"
    assert ingress["source"] == "webhook" and ingress["delivery_id"] == headers["X-GitHub-Delivery"]
    assert ingress["received_at"].endswith("Z")
    text = orjson.dumps(sent.body).decode()
    for secret in ("stolen", "some-user-token", headers["X-Hub-Signature-256"][7:], "GitHub-Hookshot"):
        assert secret not in text, secret
    assert "Authorization" not in sent.headers or "some-user-token" not in sent.headers["Authorization"]
    assert "Cookie" not in sent.headers
    execution = standin.state.executions[answer["execution_id"]]
    assert execution.path == PLAYBOOK
    assert metric(gw, 'noetl_ingress_received_total{subscription="github"}') == 1
    assert metric(gw, 'noetl_ingress_dispatched_total{subscription="github"}') == 1


@pytest.mark.parametrize(
    ("listener", "tamper", "status", "reason"),
    [
        ("github", {"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401, "bad_signature"),
        ("github", {"X-Hub-Signature-256": signature("another-secret-0123456789", b'{"a": 1}')}, 401, "bad_signature"),
        ("github", {"X-Hub-Signature-256": None}, 401, "missing_signature"),
        ("alerts", {"Authorization": "Bearer wrong-token-0123456789abcdef"}, 401, "bad_token"),
        ("alerts", {"Authorization": None}, 401, "missing_token"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_a_delivery_that_does_not_verify_starts_nothing(
    gw: GatewayInstance,
    standin: Standin,
    client: aiohttp.ClientSession,
    listener: str,
    tamper: dict[str, str | None],
    status: int,
    reason: str,
) -> None:
    body, headers = github_delivery({"a": 1})
    headers["Authorization"] = f"Bearer {BEARER_TOKEN}"
    for name, value in tamper.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    got, answer, _ = await post(client, gw, listener, body, headers)
    assert (got, answer["reason"]) == (status, reason), answer
    assert set(answer) == {"error", "reason"}
    assert executes(standin) == []
    assert metric(gw, f'noetl_ingress_rejected_total{{reason="{reason}",subscription="{listener}"}}') == 1


@pytest.mark.gen_test(timeout=30)
async def test_bearer_listener_accepts_its_token(
    gw: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": f"Bearer {BEARER_TOKEN}", "X-Delivery": "alert-1"}
    status, answer, _ = await post(client, gw, "alerts", b'{"alert": "disk full"}', headers)
    assert status == 202, answer
    (sent,) = executes(standin)
    assert sent.body["workload"]["alert"] == "disk full"
    assert BEARER_TOKEN not in orjson.dumps(sent.body).decode()


@pytest.mark.gen_test(timeout=30)
async def test_timestamped_signature_refuses_stale_and_missing_timestamps(
    gw: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    body = b'{"event": "invoice.paid"}'

    def signed(stamp: int) -> dict[str, str]:
        return {
            "X-Signature-Timestamp": str(stamp),
            "X-Signature": signature(STAMPED_SECRET, body, str(stamp)),
            "X-Delivery": f"evt-{stamp}",
        }

    stale = signed(int(time.time()) - 3600)  # correctly signed, an hour old: a replay
    status, answer, _ = await post(client, gw, "stamped", body, stale)
    assert (status, answer["reason"]) == (401, "stale_timestamp")
    missing = signed(int(time.time()))
    missing.pop("X-Signature-Timestamp")
    status, answer, _ = await post(client, gw, "stamped", body, missing)
    assert (status, answer["reason"]) == (401, "missing_timestamp")
    moved = signed(int(time.time()))
    moved["X-Signature-Timestamp"] = str(int(time.time()) + 1)  # the signature covers the timestamp
    status, answer, _ = await post(client, gw, "stamped", body, moved)
    assert (status, answer["reason"]) == (401, "bad_signature")
    assert executes(standin) == []
    status, answer, _ = await post(client, gw, "stamped", body, signed(int(time.time())))
    assert status == 202, answer
    assert len(executes(standin)) == 1


# -- Pub/Sub push with Google's OIDC token -----------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_pubsub_push_with_a_valid_oidc_token_is_accepted(
    gw: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, push_keys: JwksServer
) -> None:
    body = pubsub_push({"invoice": 17, "amount": "12.50"}, message_id="9001", eventType="invoice.paid")
    headers = {"Authorization": f"Bearer {oidc_token(push_keys.keys[0])}", "Content-Type": "application/json"}
    status, answer, _ = await post(client, gw, "billing", body, headers)
    assert status == 202, answer
    assert answer["delivery_id"] == "9001"
    (sent,) = executes(standin)
    workload = sent.body["workload"]
    assert workload["invoice"] == 17 and workload["amount"] == "12.50"  # the decoded message data
    assert workload["eventtype"] == "invoice.paid"  # an allowed attribute, snake-cased
    assert workload["ingress"]["source"] == "pubsub" and workload["ingress"]["delivery_id"] == "9001"
    assert headers["Authorization"][7:] not in orjson.dumps(sent.body).decode()


@pytest.mark.parametrize(
    ("claims", "kid", "status", "reason"),
    [
        ({"aud": "https://elsewhere.test/ingress/billing"}, None, 403, "oidc_wrong_audience"),
        ({"email": "attacker@evil.iam.gserviceaccount.com"}, None, 403, "oidc_wrong_sa"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, None, 401, "oidc_expired"),
        ({"email_verified": False}, None, 403, "oidc_unverified_email"),
        ({"iss": "https://issuer.evil.test"}, None, 401, "oidc_wrong_issuer"),
        ({}, "unknown-kid", 401, "oidc_unknown_kid"),
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_pubsub_push_with_a_wrong_token_starts_nothing(
    gw: GatewayInstance,
    standin: Standin,
    client: aiohttp.ClientSession,
    push_keys: JwksServer,
    claims: dict[str, Any],
    kid: str | None,
    status: int,
    reason: str,
) -> None:
    key = push_keys.keys[0] if kid is None else SigningKey(kid)  # an unknown kid: a key nobody published
    headers = {"Authorization": f"Bearer {oidc_token(key, **claims)}"}
    got, answer, _ = await post(client, gw, "billing", pubsub_push({"invoice": 1}), headers)
    assert (got, answer["reason"]) == (status, reason), answer
    assert executes(standin) == []


@pytest.mark.gen_test(timeout=30)
async def test_a_token_signed_by_another_key_with_the_published_kid_is_refused(
    gw: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, push_keys: JwksServer
) -> None:
    forger = SigningKey(push_keys.keys[0].kid)  # same kid, different private key
    headers = {"Authorization": f"Bearer {oidc_token(forger)}"}
    status, answer, _ = await post(client, gw, "billing", pubsub_push({"x": 1}), headers)
    assert (status, answer["reason"]) == (401, "oidc_bad_signature")
    status, answer, _ = await post(client, gw, "billing", b"{}", {"Authorization": "Bearer not.a.jwt"})
    assert (status, answer["reason"]) == (401, "oidc_malformed")
    assert executes(standin) == []


@pytest.mark.gen_test(timeout=30)
async def test_a_verified_push_that_is_not_an_envelope_is_400(
    gw: GatewayInstance, standin: Standin, client: aiohttp.ClientSession, push_keys: JwksServer
) -> None:
    headers = {"Authorization": f"Bearer {oidc_token(push_keys.keys[0])}"}
    status, answer, _ = await post(client, gw, "billing", b'{"not": "an envelope"}', headers)
    assert (status, answer["reason"]) == (400, "malformed_envelope")
    assert executes(standin) == []


# -- idempotency across replicas ---------------------------------------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_a_redelivery_on_another_replica_starts_nothing_new(
    make_gateway: GatewayFactory, ingress_env: dict[str, str], standin: Standin, client: aiohttp.ClientSession
) -> None:
    first, second = await make_gateway(**ingress_env), await make_gateway(**ingress_env)
    body, headers = github_delivery({"ref": "refs/heads/main"})
    status, answer, _ = await post(client, first, "github", body, headers)
    assert status == 202, answer
    for replica in (second, first, second):  # GitHub's "Redeliver", Pub/Sub's at-least-once
        again, repeated, _ = await post(client, replica, "github", body, headers)
        assert again == 202, repeated
        assert repeated["execution_id"] == answer["execution_id"] and repeated["duplicate"] is True
    assert len(executes(standin)) == 1
    other_body, other = github_delivery({"ref": "refs/heads/main"})  # a new delivery id: a new execution
    status, fresh, _ = await post(client, second, "github", other_body, other)
    assert status == 202 and fresh["execution_id"] != answer["execution_id"]
    assert len(executes(standin)) == 2


@pytest.mark.gen_test(timeout=60)
async def test_a_failed_start_is_retried_by_the_redelivery(
    gw: GatewayInstance, standin: Standin, client: aiohttp.ClientSession
) -> None:
    body, headers = github_delivery({"ref": "refs/heads/main"})
    standin.state.execute_status = 500
    status, answer, _ = await post(client, gw, "github", body, headers)
    assert (status, answer["reason"]) == (502, "dispatch_error"), answer  # the source retries
    assert metric(gw, 'noetl_ingress_rejected_total{reason="dispatch_error",subscription="github"}') == 1
    standin.state.execute_status = None
    status, answer, _ = await post(client, gw, "github", body, headers)
    assert status == 202 and answer["duplicate"] is False, answer
    status, again, _ = await post(client, gw, "github", body, headers)
    assert status == 202 and again["execution_id"] == answer["execution_id"] and again["duplicate"] is True
    assert len(standin.state.executions) == 1


@pytest.mark.gen_test(timeout=60)
async def test_concurrent_copies_of_a_delivery_start_one_execution(
    make_gateway: GatewayFactory, ingress_env: dict[str, str], standin: Standin, client: aiohttp.ClientSession
) -> None:
    first, second = await make_gateway(**ingress_env), await make_gateway(**ingress_env)
    standin.state.execute_delay = 0.3  # NoETL is slow: the copies overlap while the first is starting
    body, headers = github_delivery({"ref": "refs/heads/main"})
    answers = await asyncio.gather(*(post(client, gw, "github", body, headers) for gw in (first, second, first)))
    assert [status for status, _, _ in answers] == [202, 202, 202], answers
    assert len({answer["execution_id"] for _, answer, _ in answers}) == 1
    assert sorted(answer["duplicate"] for _, answer, _ in answers) == [False, True, True]
    assert len(executes(standin)) == 1
