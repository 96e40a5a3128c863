"""Large bodies sent anonymously, as an attacker would: the body-limit tests and bench/anonymous_bench.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from tests.support.routes import REST_JSON_ENDPOINTS

JSON_ENDPOINTS = [*REST_JSON_ENDPOINTS, "/graphql"]
BLOCK = b" " * (64 * 1024)  # whitespace: a body that would still be valid JSON padding; reused, never copied


async def blocks(total: int) -> AsyncIterator[bytes]:
    """``total`` bytes (rounded down to whole blocks), one shared block at a time."""
    for _ in range(total // len(BLOCK)):
        yield BLOCK


async def send_anonymously(client: aiohttp.ClientSession, url: str, size: int, *, declared: bool) -> int | None:
    """POST ``size`` bytes without credentials, with or without Content-Length; the status, or None
    if the connection was cut before an answer could be read (a client still sending may see that)."""
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(size // len(BLOCK) * len(BLOCK))
    try:
        async with client.post(url, data=blocks(size), headers=headers) as resp:
            await resp.read()
            return resp.status
    except aiohttp.ClientError:
        return None
