"""Helpers for live-results tests: register a pending request, post worker callbacks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import aiohttp
from nats.js.kv import KeyValue

from gateway.auth.tokens import CallbackSigner, token_hash
from gateway.services import Services
from tests.support.gateway import GatewayInstance, GatewayProcess, call
from tests.support.signin import login
from tests.support.sse_client import SseStream, init_of, streaming

Gateway = GatewayInstance | GatewayProcess

SECRET = "test-callback-secret-0123456789abcdefghij"  # the gateway_env fixture's GATEWAY_CALLBACK_SECRET


def services_of(gw: GatewayInstance) -> Services:
    assert gw.services is not None
    return gw.services


async def pending_request(gw: GatewayInstance, token: str, client_id: str, path: str = "tests/manual") -> str:
    """What executePlaybook(clientId) does on its side of the seam, without running a playbook."""
    services = services_of(gw)
    session = await services.auth.validate(token, client=None)
    assert session is not None
    request_id = await services.live.prepare_request(session, client_id)
    await services.live.record_pending(request_id, client_id, session, "9001", path)
    return request_id


class WaitingClient(NamedTuple):
    """A signed-in client with its event stream open and one request pending for it."""

    token: str
    stream: SseStream
    request_id: str


@asynccontextmanager
async def waiting_client(client: aiohttp.ClientSession, gw: GatewayInstance) -> AsyncIterator[WaitingClient]:
    """Sign in on ``gw``, open the event stream, record a pending request for it (``pending_request``):
    what a worker's callback is addressed to."""
    token = await login(client, gw)
    async with streaming(client, gw.url, token) as stream:
        yield WaitingClient(token, stream, await pending_request(gw, token, init_of(stream)["clientId"]))


async def raw_bucket(gw: GatewayInstance, name: str) -> KeyValue:
    """A KV bucket as nats-py sees it, over the gateway's own connection (bytes as stored, no fallback)."""
    js = services_of(gw).nats.js
    assert js is not None
    return await js.key_value(name)


def callback_headers(request_id: str) -> dict[str, str]:
    """The Authorization header a playbook sends with its callback token (any replica: shared secret)."""
    return {"Authorization": f"Bearer {CallbackSigner(SECRET, 3600).issue(request_id)}"}


class WorkerPost:
    """A worker's POST to one of the gateway's internal endpoints, with the fields it usually sends."""

    def __init__(self, path: str, fields: dict[str, Any]) -> None:
        self.path = path
        self.fields = fields

    async def __call__(
        self,
        client: aiohttp.ClientSession,
        gw: Gateway,
        request_id: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """POST for ``request_id`` (``body`` overrides the usual fields); returns (status, answer)."""
        payload = {"request_id": request_id, "execution_id": "9001", **self.fields, **(body or {})}
        status, answer, _ = await call(client, "POST", f"{gw.url}{self.path}", payload, headers=headers)
        return status, answer


post_result = WorkerPost("/api/internal/callback/async", {"status": "COMPLETED", "data": {"ok": True}})
"""POST /api/internal/callback/async like a worker: a completed result."""
post_progress = WorkerPost("/api/internal/progress", {"step": "s1", "message": "working", "progress": 0.5})
"""POST /api/internal/progress like a worker: a note half-way."""


def hashed(token: str) -> str:
    return token_hash(token)


class StreamOnA(NamedTuple):
    """Two replicas on one NATS and a signed-in client streaming from A (the replicas' shared set-up);
    unpack it: ``as (a, b, token, stream, client_id)``."""

    a: GatewayInstance
    b: GatewayInstance
    token: str
    stream: SseStream
    client_id: str


@asynccontextmanager
async def stream_on_a(
    make_replicas: Callable[..., Awaitable[tuple[GatewayInstance, GatewayInstance]]],
    nats_url: str,
    client: aiohttp.ClientSession,
) -> AsyncIterator[StreamOnA]:
    """Replicas A and B on ``nats_url``; a session signed in on A with its event stream open there."""
    a, b = await make_replicas(NATS_URL=nats_url)
    token = await login(client, a)
    async with streaming(client, a.url, token) as stream:
        yield StreamOnA(a, b, token, stream, init_of(stream)["clientId"])
