"""``make demo`` end to end: the launcher starts every part, they work together, Ctrl-C stops all."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.stack import http_json
from tests.fixtures.demo import DEMO_TOKEN
from tests.support.nats_server import free_port, nats_server_binary, require_binary

ROOT = Path(__file__).resolve().parents[2]
EXECUTE = 'mutation { executePlaybook(name: "demo/hello", variables: {query: "hi"}) { executionId name } }'


class Launcher:
    """``python -m tests.fixtures.demo`` with its output read line by line in a thread."""

    def __init__(self, gateway_port: int, ui_port: int) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fixtures.demo",
                *("--gateway-port", str(gateway_port), "--ui-port", str(ui_port)),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def read_until(self, text: str, timeout: float = 30.0) -> str:
        """Every line up to and including the first that contains ``text``."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {text!r} from the demo; got: {self.output}") from None
            self.output.append(line)
            if text in line:
                return "\n".join(self.output)


def refuses(url: str) -> bool:
    """Nothing listens at the host:port of ``url`` any more."""
    host, port = re.match(r"\w+://(?:[^@/]+@)?([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) != 0


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    require_binary("nats-server", nats_server_binary())
    running = Launcher(free_port(), free_port())
    yield running
    if running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait(5)


def test_demo_starts_everything_prints_the_urls_and_stops_on_ctrl_c(launcher: Launcher) -> None:
    banner = launcher.read_until("Press Ctrl-C to stop.")
    ui_url = re.search(r"open the UI:\s+(\S+)", banner).group(1)  # type: ignore[union-attr]
    gateway = re.search(r"gateway:\s+(\S+)", banner).group(1)  # type: ignore[union-attr]
    noetl = re.search(r"NoETL:\s+(\S+)\s+DEVELOPMENT STAND-IN", banner).group(1)  # type: ignore[union-attr]
    nats = re.search(r"NATS:\s+(\S+)", banner).group(1)  # type: ignore[union-attr]
    assert f"demo token:   {DEMO_TOKEN}" in banner
    ui_origin = ui_url.split("/?", 1)[0]
    assert ui_url.endswith(f"?gateway={gateway}") and ui_origin != gateway

    status, page = http_json("GET", ui_url)
    assert status == 200 and "<title>NoETL gateway" in page
    status, answer = http_json("POST", f"{gateway}/api/auth/login", {"auth0_token": DEMO_TOKEN})
    assert status == 200 and answer["status"] == "authenticated"
    bearer = {"Authorization": f"Bearer {answer['session_token']}"}
    status, answer = http_json("POST", f"{gateway}/graphql", {"query": EXECUTE}, headers=bearer)
    assert status == 200 and answer["data"]["executePlaybook"]["name"] == "demo/hello", answer
    execution_id = answer["data"]["executePlaybook"]["executionId"]
    status, listing = http_json("GET", f"{gateway}/noetl/executions", headers=bearer)
    assert status == 200 and execution_id in [item["execution_id"] for item in listing["items"]]

    launcher.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert launcher.proc.wait(30) == 0
    assert "Demo stopped." in launcher.read_until("Demo stopped.")
    for url in (ui_origin, gateway, noetl, nats):
        assert refuses(url), f"{url} still answers after the demo stopped"
