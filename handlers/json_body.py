"""Reading a JSON request body: one rule for every route that takes one (REST, GraphQL, the proxy's
playbook starts). Its size was bounded before it was read (handlers/bodies.py)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import BAD_REQUEST, PublicError


class RequestProblem(PublicError):
    """The HTTP request itself is malformed: ``status`` and public text (GraphQL code ``BAD_REQUEST``)."""

    def __init__(self, status: int, public: str) -> None:
        super().__init__(status, BAD_REQUEST, public)


def decode_json_body(raw: bytes, content_type: str | None, *, empty: str = "Request body must be a JSON object") -> Any:
    """The decoded body; 415 for a non-JSON media type, 400 when empty (``empty`` says what) or malformed."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if raw and media not in ("application/json", "") and not media.endswith("+json"):
        raise RequestProblem(415, "Content-Type must be application/json")
    if not raw.strip():
        raise RequestProblem(400, empty)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RequestProblem(400, "Malformed JSON in request body") from None
