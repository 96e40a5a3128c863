"""What the browser tests run: the stand-in (in a thread, so tests can steer its gates), the
gateway as a real process (so it can be restarted on the same port), and the UI served from
another origin. Playwright's sync API owns the test thread, so nothing here needs its loop."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import orjson
from tornado.httpserver import HTTPServer

from tests.fixtures.static_site import StaticSite
from tests.standin.server import StandinState, start_standin
from tests.support.gateway import GatewayProcess
from tests.support.nats_server import free_port

T = TypeVar("T")

CALLBACK_SECRET = "browser-test-callback-secret-0123456789abcdef"


def eventually(predicate: Callable[[], T], timeout: float = 5.0, what: str = "condition") -> T:
    """Poll a condition until it holds (the sync twin of tests.support.waiting.wait_for)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {timeout} s")
        time.sleep(0.02)  # polling a condition, not synchronising on time


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request from the test itself (not the browser); returns (status, decoded JSON or text)."""
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return status, raw.decode("utf-8", "replace")


class StandinThread:
    """The NoETL stand-in on its own event loop in a daemon thread."""

    def __init__(self, nats_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.state: StandinState | None = None
        self.server: HTTPServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(nats_url,), name="standin", daemon=True)

    def _run(self, nats_url: str) -> None:
        asyncio.set_event_loop(self.loop)
        self.state = StandinState(nats_url=nats_url)
        self.server = start_standin(self.port, self.state)
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> StandinThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("stand-in did not start")
        return self

    def run(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float = 10.0) -> T:
        """Run a coroutine on the stand-in's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout)

    def close_gate(self, path: str) -> None:
        """Hold the playbook ``path`` at its gate (the stand-in's PlaybookRun.gate)."""

        async def close() -> None:
            assert self.state is not None
            self.state.gates[path] = asyncio.Event()

        self.run(close)

    def open_gate(self, path: str) -> None:
        async def release() -> None:
            assert self.state is not None
            gate = self.state.gates.pop(path, None)
            if gate is not None:
                gate.set()

        self.run(release)

    def callback_replies(self, path: str) -> list[tuple[int, Any]]:
        """What the gateway answered the stand-in's playbooks on ``path`` (status, body)."""
        assert self.state is not None
        return [(status, body) for sent, status, body in list(self.state.callback_replies) if sent == path]

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self.state is not None and self.server is not None
            self.server.stop()
            await self.state.close()

        try:
            self.run(shutdown)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()


class FixedPortGateway(GatewayProcess):
    """A gateway process on a chosen port: a restart comes back where the browser expects it."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        super().__init__(env)
        self.port = port
        self.env.update(ROUTER_PORT=str(port), GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{port}")


class UiStack:
    """nats (given) + stand-in + gateway process + the UI on one origin and a stranger on another."""

    def __init__(self, nats_url: str, artifacts: Path) -> None:
        self.nats_url = nats_url
        self.artifacts = artifacts
        self.standin = StandinThread(nats_url)
        self.ui = StaticSite(host="127.0.0.1")
        self.stranger = StaticSite(host="127.0.0.1")  # same files, an origin the gateway does not allow
        self.gateway_port = free_port()
        self.gateway: FixedPortGateway | None = None
        self.restarts = 0
        # As the browser sees it: ``localhost``, while the UI is on ``127.0.0.1`` (another origin).
        self.gateway_url = f"http://localhost:{self.gateway_port}"
        self.direct_url = f"http://127.0.0.1:{self.gateway_port}"

    def page_url(self, site: StaticSite | None = None) -> str:
        return f"{(site or self.ui).origin}/?gateway={self.gateway_url}"

    def gateway_env(self) -> dict[str, str]:
        assert self.standin.state is not None
        return {
            "NOETL_BASE_URL": self.standin.url,
            "NATS_URL": self.nats_url,
            "GATEWAY_CALLBACK_SECRET": CALLBACK_SECRET,
            "CORS_ALLOWED_ORIGINS": self.ui.origin,
            "AUTH_PLAYBOOK_TIMEOUT_SECS": "5",
            "GATEWAY_HEARTBEAT_INTERVAL_SECS": "30",
        }

    def start(self) -> UiStack:
        self.standin.start()
        self.ui.start()
        self.stranger.start()
        self.start_gateway()
        return self

    def start_gateway(self) -> None:
        gateway = FixedPortGateway(self.gateway_env(), self.gateway_port)
        gateway.start(str(self.artifacts / f"browser-gateway-{self.restarts}.log"))
        self.gateway = gateway

    def restart_gateway(self) -> None:
        """Stop the process (SIGTERM) and start a new one on the same port, NATS and secret."""
        self.stop_gateway()
        self.restarts += 1
        self.start_gateway()

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            code = self.gateway.stop()
            self.gateway = None
            assert code == 0, f"gateway exited with {code}"

    def metric(self, name: str) -> float | None:
        """One unlabelled sample from the gateway's /metrics."""
        with urllib.request.urlopen(f"{self.direct_url}/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def stop(self) -> None:
        try:
            self.stop_gateway()
        finally:
            self.ui.stop()
            self.stranger.stop()
            self.standin.stop()
