"""SIGTERM: stop accepting, finish in-flight requests (bounded), drain NATS, exit 0."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Standin
from tests.support.gateway import GatewayProcess, call
from tests.support.waiting import wait_for


@pytest.mark.gen_test(timeout=60)
async def test_sigterm_finishes_inflight_request(
    gateway_env: dict[str, str], standin: Standin, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    proc = GatewayProcess(gateway_env)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, proc.start, str(tmp_path / "gw.log"))
    try:
        gate = asyncio.Event()
        standin.state.gates["api_integration/auth0/auth0_login"] = gate

        async def gated_login(run):  # the login playbook waits for the test's gate
            await run.gate()
            from tests.standin.playbooks import auth0_login

            await auth0_login(run)

        standin.state.playbooks["api_integration/auth0/auth0_login"] = gated_login
        inflight = asyncio.ensure_future(
            # The answer comes over NATS: a stopping replica no longer accepts HTTP callbacks (behind a
            # Service they go to another replica, which forwards them over NATS).
            call(client, "POST", f"{proc.url}/api/auth/login", {"auth0_token": "nats-inflight"})
        )
        await wait_for(lambda: standin.state.calls_to("/api/execute"), timeout=5)
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)

        # New connections are refused once the listener is closed.
        async def refused() -> bool:
            try:
                async with aiohttp.ClientSession() as fresh:
                    await call(fresh, "GET", f"{proc.url}/health")
            except aiohttp.ClientConnectionError:
                return True
            return False

        await wait_for(refused, timeout=5)
        assert not inflight.done()
        gate.set()
        status, body, _ = await inflight
        assert status == 200 and body["status"] == "authenticated"
        code = await loop.run_in_executor(None, proc.proc.wait, 15)
        assert code == 0
    finally:
        await loop.run_in_executor(None, proc.stop)
    log_text = (tmp_path / "gw.log").read_text()
    assert "stopping" in log_text and "stopped" in log_text and "Traceback" not in log_text
