"""Auth0 token verification at the edge (issue 10): bad tokens never reach the login playbook."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import jwt
import pytest
from tornado.ioloop import IOLoop

from tests.conftest import GatewayFactory, Standin
from tests.support.gateway import call
from tests.support.jwks import JwksServer, SigningKey, claims, serve_jwks

DOMAIN = "tenant.example.auth0.com"
AUDIENCE = "https://api.noetl.example"


@pytest.fixture
def jwks(io_loop: IOLoop) -> Iterator[JwksServer]:
    yield from serve_jwks("k1")


@pytest.fixture
def auth0_env(jwks: JwksServer) -> dict[str, str]:
    return {"AUTH0_DOMAIN": DOMAIN, "AUTH0_AUDIENCE": AUDIENCE, "AUTH0_JWKS_URL": jwks.url}


LoginWith = Callable[[str], Awaitable[tuple[int, Any]]]


@pytest.fixture
def login_with(
    io_loop: IOLoop, make_gateway: GatewayFactory, auth0_env: dict[str, str], client: aiohttp.ClientSession
) -> LoginWith:
    """``status, body = await login_with(auth0_token)`` on a gateway that verifies tokens against ``jwks``."""
    gw = io_loop.run_sync(lambda: make_gateway(**auth0_env), timeout=15)

    async def post(auth0_token: str) -> tuple[int, Any]:
        status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": auth0_token})
        return status, body

    return post


def login_runs(standin: Standin) -> int:
    return len(standin.state.calls_to("/api/execute"))


@pytest.mark.gen_test
async def test_valid_token_reaches_playbook_invalid_ones_do_not(
    login_with: LoginWith, jwks: JwksServer, standin: Standin
) -> None:
    key = jwks.keys[0]
    status, body = await login_with(key.sign(claims(DOMAIN, AUDIENCE)))
    assert status == 200, body
    assert login_runs(standin) == 1

    other_key = SigningKey("k1")  # same kid, different key: a forgery
    hs256 = jwt.encode(claims(DOMAIN, AUDIENCE), "secret" * 8, algorithm="HS256", headers={"kid": "k1"})
    unsigned = jwt.encode(claims(DOMAIN, AUDIENCE), None, algorithm="none")
    cases = {
        "not a jwt": "Auth0 token is not a valid JWT",
        key.sign(claims(DOMAIN, AUDIENCE, exp=int(time.time()) - 3600)): "Auth0 token has expired",
        key.sign(claims(DOMAIN, "https://other.api")): "Auth0 token was issued for another audience",
        key.sign(claims("evil.example", AUDIENCE)): "Auth0 token was issued by another tenant",
        key.sign(claims(DOMAIN, AUDIENCE, nbf=int(time.time()) + 3600)): "Auth0 token is not valid yet",
        other_key.sign(claims(DOMAIN, AUDIENCE)): "Auth0 token signature is invalid",
        hs256: "Auth0 token uses an unsupported algorithm",
        unsigned: "Auth0 token uses an unsupported algorithm",
    }
    for token, message in cases.items():
        status, body = await login_with(token)
        assert status == 401, (message, body)
        assert body == {"error": message}
    assert login_runs(standin) == 1  # no refused token started a playbook


@pytest.mark.gen_test
async def test_key_rotation_refreshes_once_per_minute(login_with: LoginWith, jwks: JwksServer) -> None:
    status, _ = await login_with(jwks.keys[0].sign(claims(DOMAIN, AUDIENCE)))
    assert status == 200 and jwks.fetches == 1
    # The tenant rotates: a new key appears in the JWKS; a token with its kid triggers one refresh.
    rotated = SigningKey("k2")
    jwks.keys.append(rotated)
    status, body = await login_with(rotated.sign(claims(DOMAIN, AUDIENCE)))
    assert status == 200, body
    assert jwks.fetches == 2
    # Unknown kids within the minute do not hammer the JWKS endpoint.
    for i in range(3):
        stranger = SigningKey(f"unknown-{i}")
        status, body = await login_with(stranger.sign(claims(DOMAIN, AUDIENCE)))
        assert status == 401 and body == {"error": "Auth0 token was signed by an unknown key"}
    assert jwks.fetches == 2


@pytest.mark.gen_test
async def test_jwks_unreachable_is_503(make_gateway, standin: Standin, client: aiohttp.ClientSession) -> None:
    from tests.support.nats_server import free_port

    gw = await make_gateway(AUTH0_DOMAIN=DOMAIN, AUTH0_JWKS_URL=f"http://127.0.0.1:{free_port()}/jwks.json")
    token = SigningKey("k1").sign(claims(DOMAIN, AUDIENCE))
    status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": token})
    assert status == 503 and body == {"error": "Cannot fetch the Auth0 signing keys right now"}
    assert not standin.state.calls_to("/api/execute")


@pytest.mark.gen_test
async def test_login_rate_limit_per_client_ip(make_gateway, standin: Standin, client: aiohttp.ClientSession) -> None:
    gw = await make_gateway(GATEWAY_LOGIN_RATE_PER_MINUTE="3")
    url = f"{gw.url}/api/auth/login"
    for _ in range(3):
        status, _, _ = await call(client, "POST", url, {"auth0_token": "reject-x"})
        assert status == 401
    status, body, headers = await call(client, "POST", url, {"auth0_token": "good"})
    assert status == 429 and body == {"error": "Too many login attempts; retry later"}
    assert int(headers["Retry-After"]) >= 1
    # Another client address has its own budget.
    status, _, _ = await call(client, "POST", url, {"auth0_token": "good"}, headers={"X-Forwarded-For": "198.51.100.7"})
    assert status == 200
