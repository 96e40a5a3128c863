"""SSE streams held by a client process of their own: what sse_bench.py and streams_bench.py share.

The driver talks to the holding process with one JSON command per line on its stdin and reads one
``{"ok": answer}`` line back (``ChildProcess`` / ``serve_commands``); streams open with
``open_streams`` (``GET /events``, read until the init event names the client id). Pending
requests go into the ``requests`` KV bucket as ``executePlaybook`` writes them, and results come
back through signed worker callbacks — the same records and calls for every benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import harness

CLIENT_ID = re.compile(rb'"clientId":"([^"]+)"')
Command = Callable[[dict[str, Any]], Awaitable[Any]]


async def open_streams(
    url: str,
    prefix: str,
    start: int,
    count: int,
    on_open: Callable[[asyncio.StreamReader, asyncio.StreamWriter], None],
    source: str | None = None,
) -> list[str]:
    """Open ``count`` streams (session tokens ``prefix{start}``…), 200 at a time; their client ids.

    ``on_open`` gets each stream as soon as its init event is read (so its reader starts at once);
    ``source`` is the local address to connect from.
    """
    host, port, _ = harness.split_url(url)
    gate = asyncio.Semaphore(200)

    async def one(index: int) -> str:
        async with gate:
            local = (source, 0) if source else None
            reader, writer = await asyncio.open_connection(host, port, local_addr=local)
            path = f"/events?session_token={prefix}{index}"
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
            data = b""
            while (match := CLIENT_ID.search(data)) is None:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError(f"stream closed before its init event: {data[:200]!r}")
                data += chunk
            on_open(reader, writer)
            return match.group(1).decode()

    return list(await asyncio.gather(*(one(start + i) for i in range(count))))


async def serve_commands(commands: dict[str, Command]) -> None:
    """The holding process's loop: run each command read on stdin, answer on stdout; stop on an unknown one."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        run = commands.get(command["cmd"])
        if run is None:
            return
        answer = await run(command)
        sys.stdout.write(json.dumps({"ok": answer}) + "\n")
        sys.stdout.flush()


class ChildProcess:
    """The driver's handle on a holding process (``argv`` runs ``serve_commands``)."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def call(self, **command: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} process died")
        return json.loads(line)["ok"]

    async def acall(self, **command: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: self.call(**command))

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call(cmd="exit")
        self.proc.terminate()
        self.proc.wait(10)


def open_gauge(base: str) -> int:
    """Streams the gateway counts as open (its ``gateway_sse_clients`` gauge); -1 when absent."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        match = re.search(r"^gateway_sse_clients (\S+)$", resp.read().decode(), re.M)
    return int(float(match.group(1))) if match else -1


async def store_pending(nats_url: str, pairs: list[tuple[str, str, int]], prefix: str, playbook: str) -> None:
    """Pending requests (request id, client id, stream index) in the ``requests`` bucket, 256 at a time."""
    import nats

    nc = await nats.connect(nats_url)
    kv = await nc.jetstream().key_value("requests")
    for start in range(0, len(pairs), 256):
        await asyncio.gather(
            *(
                kv.put(rid, json.dumps(pending_record(client_id, f"{prefix}{index}", playbook)).encode())
                for rid, client_id, index in pairs[start : start + 256]
            )
        )
    await nc.close()


def pending_record(client_id: str, token: str, playbook: str) -> dict[str, Any]:
    """A pending request as ``executePlaybook`` stores it (CONTRACT §7)."""
    return {
        "client_id": client_id,
        "session": hashlib.sha256(token.encode()).hexdigest(),
        "execution_id": "1",
        "playbook_path": playbook,
        "created_at": int(time.time()),
    }


def callback(signer: Any, rid: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Body and headers of a worker's signed result callback for ``rid``."""
    body = {"request_id": rid, "execution_id": "1", "status": "COMPLETED", "data": {"n": 1}}
    return body, {"Authorization": f"Bearer {signer.issue(rid)}"}
