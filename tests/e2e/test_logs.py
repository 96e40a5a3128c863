"""After real traffic (logins, callbacks, SSE, proxy), the gateway's log holds no token."""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.e2e.conftest import Deployed, Login
from tests.support.gateway import GatewayProcess, call
from tests.support.waiting import wait_for

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")  # Auth0 tokens and callback tokens


@pytest.mark.gen_test(timeout=60)
async def test_gateway_log_has_no_tokens(
    gw: GatewayProcess, deployed: Deployed, alice: Login, client: aiohttp.ClientSession
) -> None:
    # Traffic of this test's own, so the check never passes on an empty log.
    status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/validate", {"session_token": alice.token})
    assert status == 200 and body["valid"] is True
    status, _, _ = await call(client, "GET", f"{gw.url}/noetl/health", headers=alice.headers)
    assert status == 200
    log_file = deployed.stack.paths.logs / "gateway.log"

    def read() -> str:
        return log_file.read_text(encoding="utf-8", errors="replace")

    # The access line is written after the response went out: wait for it, do not race it.
    await wait_for(lambda: "GET /noetl/health" in read(), timeout=10)
    text = read()
    assert "POST /api/auth/login" in text and "POST /api/internal/callback" in text
    assert alice.token not in text
    assert "sess_" not in text, [line for line in text.splitlines() if "sess_" in line][:3]
    assert not JWT.search(text), JWT.search(text)
