"""The audit stream (GATEWAY_AUDIT_LOG): one JSON line per security event, exactly once, never a token.

A real gateway, the stand-in and nats-server; the audit file is read after the gateway's writer
has been closed (which writes everything queued), so "exactly once" means once.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import GatewayFactory, SignedInFactory
from tests.standin import playbooks
from tests.support.gateway import GatewayInstance, call
from tests.support.signin import bearer, login

CALLBACK_SECRET = "test-callback-secret-0123456789abcdefghij"


@pytest.fixture
def audit_file(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


def audit_settings(audit_file: Path, **env: str) -> dict[str, str]:
    """A gateway's settings with the audit stream on (and a NATS password the audit must mask)."""
    return {"GATEWAY_AUDIT_LOG": str(audit_file), "NATS_PASSWORD": "nats-secret-pw", **env}


async def audited_gateway(make_gateway: GatewayFactory, audit_file: Path, **env: str) -> GatewayInstance:
    return await make_gateway(**audit_settings(audit_file, **env))


def audit_lines(gw: GatewayInstance, audit_file: Path) -> list[dict[str, Any]]:
    """Everything the gateway audited so far (its writer is closed first: nothing is still queued)."""
    assert gw.services is not None
    gw.services.audit.close()
    return [orjson.loads(line) for line in audit_file.read_bytes().splitlines()]


def text_of(audit_file: Path) -> str:
    return audit_file.read_text()


def events(lines: list[dict[str, Any]]) -> Counter[str]:
    return Counter(line["event"] for line in lines)


@pytest.mark.gen_test
async def test_the_configuration_is_audited_once_at_start_with_secrets_masked(
    make_gateway: GatewayFactory, audit_file: Path
) -> None:
    gw = await audited_gateway(
        make_gateway, audit_file, NATS_URL="nats://gw:url-password@127.0.0.1:1", GATEWAY_BIND="127.0.0.1"
    )
    lines = audit_lines(gw, audit_file)
    assert events(lines) == {"config": 1}
    settings = lines[0]["settings"]
    assert settings["gateway_callback_secret"] == "[set]"
    assert settings["nats_password"] == "[set]"
    assert settings["gateway_audit_log"] == str(audit_file)
    assert "url-password" not in text_of(audit_file)
    assert CALLBACK_SECRET not in text_of(audit_file)
    assert "nats-secret-pw" not in text_of(audit_file)
    assert lines[0]["v"] == 1 and lines[0]["ts"].endswith("Z")


@pytest.mark.gen_test
async def test_a_refused_route_and_an_admin_route_are_each_audited_once_with_who_and_which_rule(
    make_signed_in: SignedInFactory, audit_file: Path
) -> None:
    member = await make_signed_in(auth0_token="member-audit", **audit_settings(audit_file))
    admin = await member.as_user("good-audit-admin")
    gw = member.gateway

    status, _, _ = await member.call("GET", "/noetl/credentials", headers={"X-Request-Id": "audit-denied-1"})
    assert status == 403
    status, _, _ = await admin.call("GET", "/noetl/credentials")
    assert status == 200
    status, _, _ = await member.call("GET", "/noetl/executions")  # an ordinary route: no audit line
    assert status == 200

    lines = audit_lines(gw, audit_file)
    assert events(lines) == {"config": 1, "login": 2, "access_denied": 1, "admin_route": 1}
    denied = next(line for line in lines if line["event"] == "access_denied")
    assert denied["method"] == "GET" and denied["route"] == "credentials"
    assert denied["rule"].startswith("admin:")
    assert denied["ip"] == "127.0.0.1" and denied["request_id"] == "audit-denied-1"
    assert "member" in denied["email"] or denied["user_id"] is not None
    used = next(line for line in lines if line["event"] == "admin_route")
    assert used["route"] == "credentials" and used["email"] == "alice@example.com"
    text = text_of(audit_file)
    assert member.token not in text and admin.token not in text


@pytest.mark.gen_test
async def test_a_refused_playbook_start_is_audited_with_the_playbook(
    make_signed_in: SignedInFactory, audit_file: Path
) -> None:
    member = await make_signed_in(auth0_token="member-audit", **audit_settings(audit_file))
    gw = member.gateway
    status, answer, _ = await member.gql(
        "mutation($n: String!) { executePlaybook(name: $n) { executionId } }", {"n": playbooks.FORBIDDEN}
    )
    assert status == 200 and answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    lines = audit_lines(gw, audit_file)
    assert events(lines)["access_denied"] == 1
    denied = next(line for line in lines if line["event"] == "access_denied")
    assert denied["playbook"] == playbooks.FORBIDDEN and denied["rule"] == "playbook access"


@pytest.mark.gen_test
async def test_a_client_over_its_session_check_budget_is_audited(
    make_gateway: GatewayFactory, audit_file: Path, client: aiohttp.ClientSession
) -> None:
    gw = await audited_gateway(make_gateway, audit_file, GATEWAY_VALIDATE_MISS_BURST="1")
    refused = 0
    for n in range(3):
        headers = {"Authorization": f"Bearer unknown-session-token-{n:04d}-abcdefghijklmnop"}
        status, _, _ = await call(client, "GET", f"{gw.url}/noetl/catalog/list", headers=headers)
        refused += status == 429
    assert refused >= 1
    lines = audit_lines(gw, audit_file)
    assert events(lines)["rate_limited"] == refused
    line = next(line for line in lines if line["event"] == "rate_limited")
    assert line["limit"] == "session check misses" and line["ip"] == "127.0.0.1"
    assert "unknown-session-token" not in text_of(audit_file)


@pytest.mark.gen_test
async def test_off_writes_nothing_and_adds_no_work(make_gateway: GatewayFactory, client: aiohttp.ClientSession) -> None:
    gw = await make_gateway(GATEWAY_AUDIT_LOG="off")
    assert gw.services is not None and not gw.services.audit.enabled
    token = await login(client, gw, "member-off")
    status, _, _ = await call(
        client, "GET", f"{gw.url}/noetl/credentials", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 403


@pytest.mark.gen_test
async def test_logins_logouts_and_the_login_limit_are_each_audited_once(
    make_gateway: GatewayFactory, audit_file: Path, client: aiohttp.ClientSession
) -> None:
    gw = await audited_gateway(make_gateway, audit_file, GATEWAY_LOGIN_RATE_PER_MINUTE="2")
    token = await login(client, gw, "good-audit")
    status, _, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "reject-audit"})
    assert status == 401
    status, _, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "good-audit-3"})
    assert status == 429
    status, _, _ = await call(client, "POST", f"{gw.url}/api/auth/logout", headers=bearer(token))
    assert status == 200

    lines = audit_lines(gw, audit_file)
    assert events(lines) == {"config": 1, "login": 2, "rate_limited": 1, "logout": 1}
    success, failure = (line for line in lines if line["event"] == "login")
    assert success["outcome"] == "success" and success["email"] == "alice@example.com" and success["ip"] == "127.0.0.1"
    assert failure["outcome"] == "failure" and "rejected" in failure["reason"] and "email" not in failure
    limited = next(line for line in lines if line["event"] == "rate_limited")
    assert limited["limit"] == "logins per minute" and limited["route"] == "/api/auth/login"
    out = next(line for line in lines if line["event"] == "logout")
    assert out["email"] == "alice@example.com"
    assert token not in text_of(audit_file)


@pytest.mark.gen_test
async def test_push_deliveries_refused_and_accepted_are_audited(
    make_gateway: GatewayFactory,
    audit_file: Path,
    client: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listeners = tmp_path / "listeners.yaml"
    listeners.write_text(
        "listeners:\n  hooks:\n    verify: {type: bearer, secret_env: AUDIT_HOOK_SECRET}\n"
        "    dispatch: {playbook: tests/noop}\n"
    )
    monkeypatch.setenv("AUDIT_HOOK_SECRET", "hook-secret-value-0123456789")
    gw = await audited_gateway(make_gateway, audit_file, GATEWAY_INGRESS_CONFIG=str(listeners))
    url = f"{gw.url}/ingress/hooks"
    assert (await call(client, "POST", url, {"a": 1}, headers=bearer("wrong-secret")))[0] == 401
    assert (await call(client, "POST", url, {"a": 1}, headers=bearer("hook-secret-value-0123456789")))[0] == 202

    lines = audit_lines(gw, audit_file)
    assert events(lines)["ingress_refused"] == 1 and events(lines)["ingress_accepted"] == 1
    refused = next(line for line in lines if line["event"] == "ingress_refused")
    assert refused["listener"] == "hooks" and refused["status"] == 401 and refused["ip"] == "127.0.0.1"
    accepted = next(line for line in lines if line["event"] == "ingress_accepted")
    assert accepted["playbook"] == "tests/noop" and accepted["duplicate"] is False
    assert "hook-secret-value" not in text_of(audit_file) and "wrong-secret" not in text_of(audit_file)


@pytest.mark.gen_test
async def test_refused_callbacks_are_audited_and_a_lost_one_counted_as_undelivered(
    make_gateway: GatewayFactory, audit_file: Path, client: aiohttp.ClientSession
) -> None:
    gw = await audited_gateway(make_gateway, audit_file)
    assert gw.services is not None
    nobody = str(uuid.uuid4())  # a request id nobody waits for
    url = f"{gw.url}/api/internal/callback/async"
    result = {"request_id": nobody, "status": "COMPLETED", "data": {}}
    forged = bearer(gw.services.signer.issue(str(uuid.uuid4())))  # signed, for another request
    assert (await call(client, "POST", url, result, headers=forged))[0] == 403
    signed = bearer(gw.services.signer.issue(nobody))
    assert (await call(client, "POST", url, result, headers=signed))[0] == 404

    undelivered = gw.services.metrics.registry.get_sample_value("noetl_gateway_callback_undelivered_total")
    lines = audit_lines(gw, audit_file)
    assert events(lines)["callback_refused"] == 2
    reasons = [line["reason"] for line in lines if line["event"] == "callback_refused"]
    assert reasons[1] == "Request not found" and all(
        line["route"] == "/api/internal/callback/async" for line in lines[1:]
    )
    assert undelivered == 1
    text = text_of(audit_file)
    assert forged["Authorization"][7:] not in text and signed["Authorization"][7:] not in text
