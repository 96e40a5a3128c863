"""What flows to SSE clients: event positions, JSON-RPC messages and SSE frames (CONTRACT §6, §8).

An event's position orders it within everything a client can receive. With NATS it is the
JetStream stream sequence ``(seq, 0)``; an event made while NATS is away is ``(h, n)``: ``h`` the
highest stream sequence this process had seen, ``n`` a per-process counter. So a local event
sorts after every stream event it followed and before every stream event published after NATS
returns. The SSE ``id:`` is the position as text: ``"seq"`` or ``"h.n"`` (without NATS at all the
counter alone: ``"n"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.version import __version__

Pos = tuple[int, int]
ZERO: Pos = (0, 0)

PROTOCOL_VERSION = "2024-11-05"
KIND_RESULT = "result"
KIND_PROGRESS = "progress"
KIND_STATE = "state"  # playbook/state; with a request id: the synthetic one before a result

# JSON-RPC error codes of CONTRACT §8.
PLAYBOOK_FAILED = -32000
UNAUTHORIZED = -32002
RATE_LIMITED = -32004  # beyond CONTRACT §8's list: a server error code of JSON-RPC's reserved range
INTERNAL_ERROR = -32603

_POS_RE = re.compile(r"(\d{1,19})(?:\.(\d{1,19}))?")
_CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def format_pos(pos: Pos) -> str:
    """The SSE ``id:`` text of a position."""
    return str(pos[0]) if pos[1] == 0 else f"{pos[0]}.{pos[1]}"


def parse_pos(text: str | None) -> Pos | None:
    """A position from a ``Last-Event-ID``; None when absent or not one of ours."""
    if not text:
        return None
    match = _POS_RE.fullmatch(text.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def is_client_id(text: str | None) -> bool:
    """A client id is used as a NATS subject token and a KV key: keep it to a safe alphabet."""
    return bool(text) and _CLIENT_ID_RE.fullmatch(text or "") is not None


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event for one client: already-encoded JSON-RPC payload plus what routing needs."""

    pos: Pos
    client_id: str
    session: str  # token hash of the session that owns the client; events never cross sessions
    method: str
    payload: bytes  # the JSON-RPC message, one line of JSON
    kind: str | None = None  # KIND_RESULT / KIND_PROGRESS, None for others
    request_id: str | None = None

    def frame(self) -> bytes:
        """The SSE frame: ``id``, ``event`` (the method), ``data`` (the message)."""
        return sse_frame(format_pos(self.pos), self.method, self.payload)


def sse_frame(event_id: str, event: str, payload: bytes) -> bytes:
    """One SSE event; orjson output never holds a newline, so one ``data:`` line suffices."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), event.encode(), payload)


def retry_frame(millis: int) -> bytes:
    """The reconnection hint a browser's EventSource honours."""
    return b"retry: %d\n\n" % millis


# -- JSON-RPC messages ------------------------------------------------------------------------


def notification(method: str, params: Any) -> bytes:
    """A JSON-RPC 2.0 notification, encoded."""
    return orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params})


def error_message(code: int, message: str, data: Any = None) -> bytes:
    """A JSON-RPC 2.0 error response with a null id (it answers no request of the client)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return orjson.dumps({"jsonrpc": "2.0", "id": None, "error": error})


def init_message(client_id: str, pending: list[dict[str, Any]] | None) -> bytes:
    """The first event of every stream (CONTRACT §8.1): a response with JSON-RPC id 1."""
    result: dict[str, Any] = {
        "protocolVersion": PROTOCOL_VERSION,
        "serverInfo": {"name": "noetl-gateway", "version": __version__},
        "clientId": client_id,
        # subscriptions: GraphQL subscriptions (graphql-ws on /graphql, graphql-sse on /graphql/stream);
        # playbookState: playbook/state frames.
        "capabilities": {"playbooks": True, "callbacks": True, "subscriptions": True, "playbookState": True},
    }
    if pending:
        result["pendingRequests"] = pending
    return orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": result})


PING = notification("ping", {})


def result_params(
    request_id: str,
    execution_id: str | None,
    status: str,
    data: Any,
    error: dict[str, Any] | None,
) -> dict[str, Any]:
    """``playbook/result`` params: success, or FAILED with a JSON-RPC style error (CONTRACT §6)."""
    if error is not None or status.upper() == "FAILED":
        failure = error or {}
        code = failure.get("code")
        return {
            "requestId": request_id,
            "executionId": execution_id,
            "status": "FAILED",
            "error": {
                "code": PLAYBOOK_FAILED if code is None else code,
                "message": failure.get("message") or "Playbook execution failed",
                "data": failure.get("data") if error is not None else data,
            },
        }
    return {"requestId": request_id, "executionId": execution_id, "status": status, "data": data}


def progress_params(
    request_id: str,
    execution_id: str | None,
    step: str | None,
    message: str | None,
    progress: float | None,
) -> dict[str, Any]:
    """``playbook/progress`` params (CONTRACT §6)."""
    return {
        "requestId": request_id,
        "executionId": execution_id,
        "step": step,
        "message": message,
        "progress": progress,
    }
