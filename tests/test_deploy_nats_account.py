"""The NATS account that docs/deployment.md tells operators to create really works: a real
nats-server runs the documented configuration, the gateway connects with the documented
gateway user and sets up every bucket and stream, and a login is answered over NATS by a
"worker" holding only the documented worker permissions."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from tornado.ioloop import IOLoop

from tests.standin.server import StandinState, start_standin
from tests.support.gateway import GatewayInstance, call
from tests.support.nats_server import free_port
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_PASSWORD = "gw-secret-Passw0rd"
WORKER_PASSWORD = "worker-secret-Passw0rd"


def documented_config() -> str:
    """The ```conf block of docs/deployment.md that defines the accounts."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    blocks = re.findall(r"```conf\n(.*?)```", text, flags=re.DOTALL)
    (block,) = [b for b in blocks if "accounts {" in b]
    return block


class ConfiguredNats:
    """nats-server started with a configuration file (listen address and ports from the command line)."""

    def __init__(self, binary: str, config: str, store: Path) -> None:
        self.port = free_port()
        self.monitor_port = free_port()
        conf = store / "nats.conf"
        conf.write_text(re.sub(r'store_dir: "[^"]*"', f'store_dir: "{store / "js"}"', config))
        env = {"GATEWAY_NATS_PASSWORD": GATEWAY_PASSWORD, "WORKER_NATS_PASSWORD": WORKER_PASSWORD}
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf), "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server refused the documented config: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=0.5) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.02)  # polling the server's health endpoint
        raise RuntimeError("nats-server did not start")

    def url(self, user: str, password: str) -> str:
        return f"nats://{user}:{password}@127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def documented_nats(nats_binary: str, tmp_path: Path) -> Iterator[ConfiguredNats]:
    server = ConfiguredNats(nats_binary, documented_config(), tmp_path)
    yield server
    server.close()


@pytest.mark.gen_test(timeout=40)
async def test_gateway_and_worker_work_with_the_documented_permissions(
    documented_nats: ConfiguredNats, io_loop: IOLoop, client: aiohttp.ClientSession
) -> None:
    state = StandinState(nats_url=documented_nats.url("noetl-worker", WORKER_PASSWORD))
    standin_port = free_port()
    standin = start_standin(standin_port, state)
    gateway = GatewayInstance(
        {
            "NOETL_BASE_URL": f"http://127.0.0.1:{standin_port}",
            "NATS_URL": f"nats://127.0.0.1:{documented_nats.port}",
            "NATS_USERNAME": "noetl-gateway",
            "NATS_PASSWORD": GATEWAY_PASSWORD,
            "GATEWAY_CALLBACK_SECRET": "documented-account-test-secret-0123456789",
            "AUTH_PLAYBOOK_TIMEOUT_SECS": "10",
        }
    )
    await gateway.start(nats_wait_secs=10)
    try:
        # Every setup hook (KV buckets, the events stream and its consumer, the callback
        # subscription) succeeded under the restricted user.
        _, ready, _ = await call(client, "GET", f"{gateway.url}/health/ready")
        assert ready["nats"] == "connected", ready
        assert ready["status"] == "ready"

        # The login playbook answers over NATS as the worker user; the gateway caches the session in KV.
        status, body, _ = await call(client, "POST", f"{gateway.url}/api/auth/login", {"auth0_token": "nats-good"})
        assert status == 200, body
        assert body["status"] == "authenticated"
        status, body, _ = await call(
            client, "POST", f"{gateway.url}/api/auth/validate", {"session_token": body["session_token"]}
        )
        assert body["valid"] is True
        assert not state.calls_to("/api/auth/session/validate")  # answered from the NATS-backed cache
    finally:
        await gateway.stop()
        standin.stop()
        await state.close()


@pytest.mark.gen_test(timeout=40)
async def test_an_account_without_jetstream_leaves_the_gateway_degraded(
    nats_binary: str, tmp_path: Path, io_loop: IOLoop, client: aiohttp.ClientSession
) -> None:
    """The requirement is real: the same account without `jetstream: enabled` is not enough."""
    config = documented_config().replace("jetstream: enabled", "")
    server = ConfiguredNats(nats_binary, config, tmp_path)
    gateway = GatewayInstance(
        {
            "NOETL_BASE_URL": f"http://127.0.0.1:{free_port()}",
            "NATS_URL": f"nats://127.0.0.1:{server.port}",
            "NATS_USERNAME": "noetl-gateway",
            "NATS_PASSWORD": GATEWAY_PASSWORD,
        }
    )
    await gateway.start(nats_wait_secs=0.5)
    try:
        assert gateway.services is not None
        link = gateway.services.nats
        await wait_for(lambda: link.nc is not None and link.nc.is_connected and link.last_error, timeout=15)
        assert "jetstream" in (link.last_error or "").lower() or "JetStream" in (link.last_error or "")
        _, ready, _ = await call(client, "GET", f"{gateway.url}/health/ready")
        assert ready["nats"] == "disconnected"
    finally:
        await gateway.stop()
        server.close()
