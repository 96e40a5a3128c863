"""HTTP as raw bytes over a socket, for requests no HTTP client would send (bad lengths, stalls, odd paths)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def raw_connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A TCP connection to a local server, closed however the test ends."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Read whatever remains until the server closes (EOF or reset); fails the test if it never does."""
    try:
        await asyncio.wait_for(reader.read(), 15)
    except ConnectionError:
        pass
    return reader.at_eof() or reader.exception() is not None


async def raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send bytes exactly as given (no client-side normalisation); parse the answer."""
    async with raw_connection(port) as (reader, writer):
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
        head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
        lines = head_bytes.decode("latin-1").rstrip("\r\n").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            payload = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 15)
        else:
            payload = await asyncio.wait_for(reader.read(), 15)
    return status, headers, payload


def request_head(method: str, target: str, token: str, *extra: str, connection: str = "close") -> str:
    """A signed-in request head, byte for byte as written."""
    lines = [f"{method} {target} HTTP/1.1", "Host: gateway.test", f"Authorization: Bearer {token}"]
    lines.append(f"Connection: {connection}")
    return "\r\n".join([*lines, *extra]) + "\r\n\r\n"
