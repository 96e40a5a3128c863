"""Running tests/node_graphql/clients.mjs: the real npm ``graphql-ws`` and ``graphql-sse`` clients.

Node runs the script (packages from its lock file, ``npm ci``); each scenario (``MODE``) prints
JSON lines a test reads, and waits on stdin where the test acts in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.support.gateway import GatewayInstance

NODE_DIR = Path(__file__).resolve().parent.parent / "node_graphql"
SCRIPT = NODE_DIR / "clients.mjs"


class NodeRun:
    """One run of the script: its JSON lines, and "go" on its stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[dict[str, Any]] = []

    async def line(self, timeout: float = 15.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not raw:
            assert self.process.stderr is not None
            error = (await self.process.stderr.read()).decode()[-2000:]
            raise AssertionError(f"the script ended without a word after {self.seen}: {error}")
        line: dict[str, Any] = json.loads(raw)
        self.seen.append(line)
        return line

    async def until(self, key: str, timeout: float = 15.0) -> dict[str, Any]:
        """Lines up to the first that has ``key``."""
        while True:
            line = await self.line(timeout)
            assert "fatal" not in line, self.seen
            if key in line:
                return line

    async def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()

    def events(self) -> list[dict[str, Any]]:
        """The playbookEvents the script printed, in order."""
        return [line["event"]["data"]["playbookEvents"] for line in self.seen if "event" in line]


@contextlib.asynccontextmanager
async def node_run(node: str, gw: GatewayInstance, token: str | None, mode: str, **env: str) -> AsyncIterator[NodeRun]:
    variables = {**os.environ, "GATEWAY_URL": gw.url, "MODE": mode, **env}
    if token is not None:
        variables["SESSION_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        cwd=NODE_DIR,
        env=variables,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeRun(process)
    finally:
        if process.returncode is None:
            process.kill()
        with contextlib.suppress(Exception):
            await process.wait()
