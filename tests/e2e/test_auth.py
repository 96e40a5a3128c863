"""Login, validation and access checks against the real NoETL server and our auth playbooks."""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from tests.e2e import catalog
from tests.e2e.conftest import ALICE, BOB, Deployed, Login
from tests.e2e.issuer import TestIssuer
from tests.support.gateway import GatewayProcess, call


async def login(client: aiohttp.ClientSession, url: str, token: str, **extra: object) -> tuple[int, object]:
    status, body, _ = await call(client, "POST", f"{url}/api/auth/login", {"auth0_token": token, **extra})
    return status, body


def sql_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@pytest.mark.gen_test(timeout=60)
async def test_login_creates_a_session_in_the_auth_schema(
    gw: GatewayProcess, deployed: Deployed, issuer: TestIssuer, client: aiohttp.ClientSession
) -> None:
    token = issuer.token(ALICE["sub"], ALICE["email"], ALICE["name"])
    status, body = await login(client, gw.url, token, session_duration_hours=2, client_user_agent="e2e-agent")
    assert status == 200, body
    assert body["status"] == "authenticated"
    assert body["user"]["email"] == "alice@e2e.test"
    assert body["user"]["display_name"] == "Alice Analyst"
    assert body["user"]["roles"] == ["analyst"]
    assert isinstance(body["user"]["user_id"], int)
    assert body["expires_at"].endswith("Z")
    # The playbook wrote the session where NoETL's validate API will look for it.
    row = deployed.sql(
        "SELECT s.user_id, u.email, s.user_agent, round(extract(epoch FROM s.expires_at - s.created_at) / 3600)"
        " FROM auth.sessions s JOIN auth.users u USING (user_id)"
        f" WHERE s.session_token = {sql_quote(body['session_token'])}"
    )
    assert row == f"{body['user']['user_id']}|alice@e2e.test|e2e-agent|2"


@pytest.mark.gen_test(timeout=60)
async def test_first_login_of_an_unknown_user_gets_the_viewer_role(
    gw: GatewayProcess, issuer: TestIssuer, client: aiohttp.ClientSession
) -> None:
    who = uuid.uuid4().hex[:10]
    status, body = await login(client, gw.url, issuer.token(f"auth0|{who}", f"{who}@e2e.test"))
    assert status == 200, body
    assert body["user"]["roles"] == ["viewer"]
    assert body["user"]["display_name"] == f"{who}@e2e.test"  # no name claim: falls back to the email


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("expired", "Signature has expired"),
        ("audience", "Audience doesn't match"),
        ("issuer", "Invalid issuer"),
        ("signature", "Signature verification failed"),
        ("garbage", "DecodeError"),
    ],
)
@pytest.mark.gen_test(timeout=60)
async def test_login_refuses_tokens_the_playbook_cannot_verify(
    gw: GatewayProcess, issuer: TestIssuer, client: aiohttp.ClientSession, case: str, expected: str
) -> None:
    tokens = {
        "expired": issuer.token(ALICE["sub"], ALICE["email"], expires_in=-120),
        "audience": issuer.token(ALICE["sub"], ALICE["email"], audience="https://someone-else/api"),
        "issuer": issuer.token(ALICE["sub"], ALICE["email"], issuer="https://evil.example/"),
        "signature": issuer.token(ALICE["sub"], ALICE["email"], rogue=True),
        "garbage": "not-a-jwt",
    }
    status, body = await login(client, gw.url, tokens[case])
    assert status == 401, body
    assert body["error"].startswith("Invalid Auth0 token"), body
    assert expected in body["error"], body


@pytest.mark.gen_test(timeout=60)
async def test_validate_hits_the_cache_then_noetl_on_a_miss(
    gw: GatewayProcess, deployed: Deployed, alice: Login, make_gateway, client: aiohttp.ClientSession
) -> None:
    # The gateway that logged Alice in answers from its session cache.
    status, cached, _ = await call(client, "POST", f"{gw.url}/api/auth/validate", {"session_token": alice.token})
    assert status == 200 and cached["valid"] is True, cached
    assert cached["user"] == alice.user
    # A gateway with an empty cache (no NATS: nothing shared) must ask NoETL's
    # POST /api/auth/session/validate, which reads the auth schema through the pg_auth credential.
    fresh = await make_gateway(NATS_URL="")
    status, missed, _ = await call(client, "POST", f"{fresh.url}/api/auth/validate", {"session_token": alice.token})
    assert status == 200 and missed["valid"] is True, missed
    assert missed["user"] == alice.user
    assert missed["expires_at"]  # NoETL's text form of the same timestamp
    # Proof that NoETL (not a cache) answered: end the session in the database; another
    # empty-cache gateway now gets "invalid" from NoETL, while the first one's cache still holds it.
    token = alice.token
    other = await make_gateway(NATS_URL="")
    deployed.sql(f"UPDATE auth.sessions SET is_active = FALSE WHERE session_token = {sql_quote(token)}")
    try:
        status, gone, _ = await call(client, "POST", f"{other.url}/api/auth/validate", {"session_token": token})
        assert status == 200 and gone["valid"] is False, gone
        status, still, _ = await call(client, "POST", f"{fresh.url}/api/auth/validate", {"session_token": token})
        assert status == 200 and still["valid"] is True, still
    finally:
        deployed.sql(f"UPDATE auth.sessions SET is_active = TRUE WHERE session_token = {sql_quote(token)}")


@pytest.mark.gen_test(timeout=60)
async def test_validate_unknown_token_asks_noetl_and_says_invalid(
    gw: GatewayProcess, client: aiohttp.ClientSession
) -> None:
    status, body, _ = await call(
        client, "POST", f"{gw.url}/api/auth/validate", {"session_token": "sess_" + uuid.uuid4().hex}
    )
    assert status == 200, body
    assert body["valid"] is False and body["user"] is None


@pytest.mark.parametrize(
    ("who", "playbook", "permission", "allowed"),
    [
        ("alice", catalog.ASYNC_PROGRESS, "execute", True),
        ("alice", "e2e/restricted/payroll", "execute", False),  # analyst's deny_pattern
        ("alice", catalog.ASYNC_PROGRESS, "edit", False),  # analysts may not modify
        ("bob", catalog.ASYNC_PROGRESS, "view", True),
        ("bob", catalog.ASYNC_PROGRESS, "execute", False),  # viewers may not run
    ],
)
@pytest.mark.gen_test(timeout=60)
async def test_check_access_reads_permissions_from_the_auth_schema(
    gw: GatewayProcess,
    alice: Login,
    bob: Login,
    client: aiohttp.ClientSession,
    who: str,
    playbook: str,
    permission: str,
    allowed: bool,
) -> None:
    session = {"alice": alice, "bob": bob}[who]
    status, body, _ = await call(
        client,
        "POST",
        f"{gw.url}/api/auth/check-access",
        {"session_token": session.token, "playbook_path": playbook, "permission_type": permission},
    )
    assert status == 200, body
    assert body["allowed"] is allowed, body
    assert body["playbook_path"] == playbook and body["permission_type"] == permission
    assert body["user"]["email"] == {"alice": ALICE, "bob": BOB}[who]["email"]
    assert body["message"] == f"{permission} access to {playbook} {'granted' if allowed else 'denied'}"


@pytest.mark.gen_test(timeout=60)
async def test_check_access_with_an_unknown_session_is_refused(
    gw: GatewayProcess, client: aiohttp.ClientSession
) -> None:
    status, body, _ = await call(
        client,
        "POST",
        f"{gw.url}/api/auth/check-access",
        {
            "session_token": "sess_" + uuid.uuid4().hex,
            "playbook_path": catalog.ASYNC_PROGRESS,
            "permission_type": "execute",
        },
    )
    assert status == 200, body
    assert body["allowed"] is False and body["user"] is None
