"""A raw ``graphql-transport-ws`` client for protocol tests (the npm clients: tests/node_graphql/)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

PROTOCOL = "graphql-transport-ws"


class WsClient:
    """One socket: send protocol messages, read them (with a deadline), see how it closed."""

    def __init__(self, connection: WebSocketClientConnection) -> None:
        self.connection = connection

    @classmethod
    async def connect(
        cls,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        protocols: list[str] | None = None,
        query: str = "",
        offer_deflate: bool = False,
    ) -> WsClient:
        url = base_url.replace("http://", "ws://", 1) + "/graphql" + (f"?{query}" if query else "")
        request = HTTPRequest(url, headers=headers or {})
        connection = await websocket_connect(
            request,
            subprotocols=[PROTOCOL] if protocols is None else protocols,
            compression_options={} if offer_deflate else None,  # {}: offer permessage-deflate
        )
        return cls(connection)

    async def send(self, kind: str, op_id: str | None = None, payload: Any = None) -> None:
        message: dict[str, Any] = {"type": kind}
        if op_id is not None:
            message["id"] = op_id
        if payload is not None:
            message["payload"] = payload
        await self.connection.write_message(orjson.dumps(message).decode())

    async def receive(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next message, or None when the socket closed."""
        raw = await asyncio.wait_for(self.connection.read_message(), timeout)
        if raw is None:
            return None
        message: dict[str, Any] = orjson.loads(raw)
        return message

    async def init(self, token: str | None, timeout: float = 5.0) -> dict[str, Any] | None:
        """connection_init with the token; the answer (connection_ack, or None when closed)."""
        await self.send("connection_init", payload={"session_token": token} if token else {})
        return await self.receive(timeout)

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str | None]:
        """Read until the socket closes; its close code and reason."""
        while await self.receive(timeout) is not None:
            pass
        return self.connection.close_code, self.connection.close_reason

    async def run(self, op_id: str, query: str, variables: Any = None, timeout: float = 10.0) -> list[dict[str, Any]]:
        """subscribe and collect every message of that id up to complete/error."""
        await self.send("subscribe", op_id, {"query": query, "variables": variables})
        messages = []
        while True:
            message = await self.receive(timeout)
            assert message is not None, messages
            if message.get("id") != op_id:
                continue
            messages.append(message)
            if message["type"] in ("complete", "error"):
                return messages

    def close(self) -> None:
        self.connection.close()
