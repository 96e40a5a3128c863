"""Signing in through the stand-in's login playbook, and carrying the session token."""

from __future__ import annotations

import aiohttp

from tests.support.gateway import GatewayInstance, GatewayProcess, call

Gateway = GatewayInstance | GatewayProcess


async def login(client: aiohttp.ClientSession, gw: Gateway, auth0_token: str = "good") -> str:
    """A fresh session token; "good…" is alice (user 42), "member…" a member, "good:bob@x" that address."""
    status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": auth0_token})
    assert status == 200, body
    return str(body["session_token"])


def bearer(token: str, **extra: str) -> dict[str, str]:
    """The headers of a signed-in request (plus any ``extra`` ones)."""
    return {"Authorization": f"Bearer {token}", **extra}
