"""The ``graphql-transport-ws`` protocol as the npm ``graphql-ws`` library speaks it: messages and close codes.

Client → server: ``connection_init`` {payload?}, ``subscribe`` {id, payload: {query, variables?,
operationName?, extensions?}}, ``complete`` {id}, ``ping``/``pong`` {payload?}. Server → client:
``connection_ack`` {payload?}, ``next`` {id, payload: ExecutionResult}, ``error`` {id, payload:
[GraphQLError]}, ``complete`` {id}, ``ping``/``pong``. Close codes are the protocol's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from handlers.graphql_http import GraphQLRequest, request_from_json
from handlers.json_body import RequestProblem

PROTOCOL = "graphql-transport-ws"

# Close codes (graphql-ws PROTOCOL.md); 1001/1013 are WebSocket's own.
INVALID_MESSAGE = 4400  # a message the protocol does not allow
UNAUTHORIZED = 4401  # subscribe before connection_ack
FORBIDDEN = 4403  # connection_init refused: no/invalid/expired session; later: logged out or expired
SUBPROTOCOL_NOT_ACCEPTABLE = 4406
INIT_TIMEOUT = 4408  # no connection_init in time
SUBSCRIBER_EXISTS = 4409  # a subscribe reusing an id that is still running
TOO_MANY_INITS = 4429  # a second connection_init (also: over the session-check budget)
GOING_AWAY = 1001  # the gateway stops
TRY_AGAIN_LATER = 1013  # the session could not be checked (NoETL away): the client may retry

MAX_ID_LENGTH = 128


class ProtocolViolation(Exception):
    """The client broke the protocol: close with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Message:
    """One client message: its type, id (subscribe/complete) and payload."""

    type: str
    id: str | None
    payload: Any


def parse_message(raw: str | bytes) -> Message:
    """A client message, or ProtocolViolation(4400)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolViolation(INVALID_MESSAGE, "Invalid message received") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolViolation(INVALID_MESSAGE, "Invalid message received")
    kind = data["type"]
    op_id = data.get("id")
    if kind in ("subscribe", "complete"):
        if not isinstance(op_id, str) or not op_id or len(op_id) > MAX_ID_LENGTH:
            raise ProtocolViolation(INVALID_MESSAGE, f'Invalid message received: "{kind}" needs an id')
    else:
        op_id = None
    payload = data.get("payload")
    if payload is not None and not isinstance(payload, dict) and kind in ("connection_init", "subscribe"):
        raise ProtocolViolation(INVALID_MESSAGE, f'Invalid message received: "{kind}" payload must be an object')
    return Message(kind, op_id, payload)


def subscribe_request(payload: Any) -> GraphQLRequest:
    """The GraphQL request of a ``subscribe`` (the POST body's rules: handlers/graphql_http.py)."""
    try:
        request = request_from_json(orjson.dumps(payload or {}), "application/json")
    except RequestProblem as exc:
        raise ProtocolViolation(INVALID_MESSAGE, f"Invalid message received: {exc.public}") from None
    if request.query is None:  # a persisted query's hash alone is for POST/GET /graphql
        raise ProtocolViolation(INVALID_MESSAGE, "Invalid message received: 'query' is required")
    return request


def token_of_init(payload: Any) -> str | None:
    """The session token a ``connection_init`` carries (``connectionParams`` in graphql-ws).

    Accepted keys: ``session_token``, ``sessionToken``, ``token``, and ``Authorization`` /
    ``authorization`` as ``Bearer <token>`` (what an Apollo/urql setup copies from its HTTP headers).
    """
    if not isinstance(payload, dict):
        return None
    for key in ("session_token", "sessionToken", "token"):
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    headers = payload.get("headers")
    if not isinstance(headers, dict):
        headers = payload
    for key in ("Authorization", "authorization"):
        value = headers.get(key)
        if isinstance(value, str) and value[:7].lower() == "bearer " and value[7:].strip():
            return value[7:].strip()
    return None


def encode(kind: str, op_id: str | None = None, payload: Any = None) -> bytes:
    """One server message."""
    message: dict[str, Any] = {"type": kind}
    if op_id is not None:
        message["id"] = op_id
    if payload is not None:
        message["payload"] = payload
    return orjson.dumps(message)
