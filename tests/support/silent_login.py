"""A login whose playbook never answers, so that a test can play the playbook's callback by hand."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from tests.support.gateway import GatewayInstance, call
from tests.support.signin import bearer
from tests.support.waiting import wait_for

if TYPE_CHECKING:
    from tests.conftest import Standin


def callback_body(request_id: str) -> dict[str, Any]:
    """The login playbook's "authenticated" answer for ``request_id`` (dan, user 9)."""
    return {
        "request_id": request_id,
        "status": "success",
        "data": {
            "status": "authenticated",
            "session_token": "sess_manual_token_1",
            "user": {"user_id": "9", "email": "dan@example.com", "roles": '["ops"]'},
            "expires_at": "2099-01-01T00:00:00Z",
        },
    }


@dataclass(frozen=True)
class SilentLogin:
    """The waiting login (``task``: its status, body, headers) and what its playbook was given."""

    client: aiohttp.ClientSession
    task: asyncio.Future[tuple[int, Any, Any]]
    variables: dict[str, Any]

    @property
    def request_id(self) -> str:
        return str(self.variables["request_id"])

    @property
    def callback_token(self) -> str:
        return str(self.variables["callback_token"])

    async def answer(self, gw: GatewayInstance) -> tuple[int, Any]:
        """POST the playbook's answer to ``gw``'s callback endpoint with the request's own token."""
        url, body = f"{gw.url}/api/internal/callback", callback_body(self.request_id)
        status, answer, _ = await call(self.client, "POST", url, body, headers=bearer(self.callback_token))
        return status, answer


async def start_silent_login(client: aiohttp.ClientSession, gw: GatewayInstance, standin: Standin) -> SilentLogin:
    """Start the login on ``gw`` and wait until NoETL was asked to run its playbook."""
    task = asyncio.ensure_future(call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "silent-manual"}))
    await wait_for(lambda: standin.state.calls_to("/api/execute"), timeout=5)
    return SilentLogin(client, task, standin.state.calls_to("/api/execute")[-1].body["workload"])
