"""Run gateway instances (in the test's loop, or as real processes) against test servers."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import aiohttp
import orjson
from tornado.httpserver import HTTPServer
from tornado.web import Application

from gateway.app import make_app, make_server
from gateway.config import GatewayConfig, load_config
from gateway.services import Services
from tests.support.nats_server import free_port
from tests.support.processes import stop_process, wait_http_ok


class GatewayInstance:
    """One gateway (services + app + server) listening on a free port in the current loop."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.env = {
            "ROUTER_PORT": str(self.port),
            "GATEWAY_BIND": "127.0.0.1",  # what it listens on (below); GATEWAY_AUTH_BYPASS requires loopback
            "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            **env,
        }
        self.config: GatewayConfig = load_config(self.env)
        self.services: Services | None = None
        self.server: HTTPServer | None = None
        self.app: Application | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, nats_wait_secs: float = 5.0) -> GatewayInstance:
        self.services = Services.create(self.config)
        self.app = app = make_app(self.config, self.services)
        self.server = make_server(app, self.config)  # the limits and timeouts of production
        self.server.listen(self.port, address="127.0.0.1")
        await self.services.start(nats_wait_secs=nats_wait_secs)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.services is not None:
            await self.services.run_shutdown_hooks()
        if self.server is not None:
            await self.server.close_all_connections()
        if self.services is not None:
            await self.services.close()


class GatewayProcess:
    """The gateway as a real OS process (``python -m gateway``), for multi-process tests."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            **env,
            "ROUTER_PORT": str(self.port),
            "GATEWAY_BIND": "127.0.0.1",
            "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The running gateway's process id (its memory is read from /proc/<pid>)."""
        assert self.proc is not None, "the gateway process is not running"
        return self.proc.pid

    def start(self, log_path: str, timeout: float = 15.0) -> GatewayProcess:
        self.log_file = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway"], env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT
        )
        wait_http_ok(self.proc, f"{self.url}/health", "gateway", timeout)
        return self

    def stop(self) -> int | None:
        code = stop_process(self.proc, 15)
        if self.log_file is not None:
            self.log_file.close()
        return code


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, Any]:
    """One request; returns (status, decoded JSON or text, headers)."""
    send_headers = dict(headers or {})
    data = raw
    if body is not None:
        data = orjson.dumps(body)
        send_headers.setdefault("Content-Type", "application/json")
    async with session.request(method, url, data=data, headers=send_headers) as resp:
        content = await resp.read()
        try:
            decoded: Any = orjson.loads(content) if content else None
        except orjson.JSONDecodeError:
            decoded = content.decode("utf-8", "replace")
        return resp.status, decoded, resp.headers
