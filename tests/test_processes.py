"""``GATEWAY_PROCESSES``: pre-forked workers share the port; SIGTERM reaches them all."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Standin
from tests.support.gateway import GatewayProcess, call


def gone_or_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def children_of(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(part) for part in text.split()]


@pytest.mark.gen_test(timeout=60)
async def test_two_workers_share_port_and_state(
    gateway_env: dict[str, str], standin: Standin, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    env = {k: v for k, v in gateway_env.items() if k != "GATEWAY_CALLBACK_SECRET"}
    proc = GatewayProcess({**env, "GATEWAY_PROCESSES": "2"})
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, proc.start, str(tmp_path / "gw.log"))
    try:
        assert proc.proc is not None
        workers = children_of(proc.proc.pid)
        assert len(workers) == 2
        # Logins and validations spread over both workers; callbacks and sessions are shared via NATS
        # and the supervisor's one callback key.
        tokens = []
        for i in range(6):
            async with aiohttp.ClientSession() as fresh:  # new connections: the kernel spreads them
                status, body, _ = await call(fresh, "POST", f"{proc.url}/api/auth/login", {"auth0_token": f"good{i}"})
                assert status == 200, body
                tokens.append(body["session_token"])
        for token in tokens:
            async with aiohttp.ClientSession() as fresh:
                _, body, _ = await call(fresh, "POST", f"{proc.url}/api/auth/validate", {"session_token": token})
                assert body["valid"] is True
        proc.proc.terminate()
        code = await loop.run_in_executor(None, proc.proc.wait, 20)
        assert code == 0
        assert all(gone_or_zombie(pid) for pid in workers)
    finally:
        await loop.run_in_executor(None, proc.stop)


def test_several_processes_need_nats() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--processes", "2"],
        env={**os.environ, "NATS_URL": "", "ROUTER_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "GATEWAY_PROCESSES" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.gen_test(timeout=60)
async def test_new_connections_spread_over_workers(
    gateway_env: dict[str, str], standin: Standin, tmp_path: Path
) -> None:
    """Each worker has its own SO_REUSEPORT socket: a burst of connections reaches both, not the first awake."""
    proc = GatewayProcess({**gateway_env, "GATEWAY_PROCESSES": "2"})
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, proc.start, str(tmp_path / "gw.log"))
    try:
        # Every worker counts in its own registry, so the first /metrics a worker answers shows no
        # earlier /metrics request: two such answers mean two workers took connections. The
        # connections open at once, as wrk's do (with one shared socket, one worker took them all).
        opened = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", proc.port) for _ in range(32)))
        request = f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{proc.port}\r\nConnection: close\r\n\r\n".encode()
        firsts = 0
        for reader, writer in opened:
            writer.write(request)
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200")
            if b'route="metrics"' not in answer:
                firsts += 1
        assert firsts == 2
    finally:
        await loop.run_in_executor(None, proc.stop)
