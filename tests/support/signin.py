"""Signing in through the stand-in's login playbook, and carrying the session token."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from tornado.ioloop import IOLoop

from tests.support.gateway import GatewayInstance, GatewayProcess, call
from tests.support.graphql_client import gql

Gateway = GatewayInstance | GatewayProcess


async def login(client: aiohttp.ClientSession, gw: Gateway, auth0_token: str = "good") -> str:
    """A fresh session token; "good…" is alice (user 42), "member…" a member, "good:bob@x" that address."""
    status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": auth0_token})
    assert status == 200, body
    return str(body["session_token"])


def bearer(token: str, **extra: str) -> dict[str, str]:
    """The headers of a signed-in request (plus any ``extra`` ones)."""
    return {"Authorization": f"Bearer {token}", **extra}


@dataclass(frozen=True)
class SignedIn:
    """What a signed-in test works with: a gateway, a client and a session token on that gateway."""

    gateway: GatewayInstance
    client: aiohttp.ClientSession
    token: str

    @property
    def url(self) -> str:
        return self.gateway.url

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> tuple[int, Any, Any]:
        """``method path`` on the gateway with this session's bearer token (plus ``headers``), as ``gateway.call``."""
        signed = bearer(self.token, **(headers or {}))
        return await call(self.client, method, f"{self.url}{path}", body, headers=signed, raw=raw)

    def request(self, method: str, path: str, **options: Any) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """``async with alice.request("GET", path) as resp``: the response itself, for its headers and stream."""
        signed = bearer(self.token, **options.pop("headers", {}))
        return self.client.request(method, f"{self.url}{path}", headers=signed, **options)

    async def gql(self, query: str, variables: Any = None, **options: Any) -> tuple[int, Any, Any]:
        """One GraphQL request with this session (options as for ``graphql_client.gql``)."""
        return await gql(self.client, self.gateway, self.token, query, variables, **options)

    async def as_user(self, auth0_token: str) -> SignedIn:
        """The same gateway and client, signed in with another Auth0 token (see ``login``)."""
        return replace(self, token=await login(self.client, self.gateway, auth0_token))


def signed_in_as(auth0_token: str) -> Any:
    """A fixture: a session for ``auth0_token`` on the ``gateway`` fixture (``member = signed_in_as("member-x")``)."""

    @pytest.fixture
    def fixture(io_loop: IOLoop, gateway: GatewayInstance, client: aiohttp.ClientSession) -> SignedIn:
        async def sign_in() -> SignedIn:
            return SignedIn(gateway, client, await login(client, gateway, auth0_token))

        signed_in: SignedIn = io_loop.run_sync(sign_in, timeout=15)
        return signed_in

    return fixture


def seed_session(standin: Any, token: str, *, hours: float = 1.0, valid: bool = True) -> None:
    """A session that exists in 'NoETL' but not yet in the gateway cache."""
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + hours * 3600))
    standin.state.sessions[token] = {
        "user": {"user_id": 7, "email": "carol@example.com", "display_name": "Carol", "roles": ["viewer"]},
        "expires_at": expires,
        "valid": valid,
    }
