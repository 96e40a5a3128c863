"""Errors a client may see: each carries the public text, an HTTP ``status`` and a GraphQL ``code``.

Callers map them to their own wire format (the base handler for HTTP, the GraphQL error
formatter); the public text never holds an upstream URL or a traceback.
"""

from __future__ import annotations


class ExecutionRefused(Exception):
    """A refusal the caller may see: ``public`` text, GraphQL ``code``, HTTP ``status``."""

    code = "BAD_USER_INPUT"
    status = 400

    def __init__(self, public: str) -> None:
        super().__init__(public)
        self.public = public


class BadExecutionInput(ExecutionRefused):
    """The request itself is wrong (name, variables, clientId)."""


class ExecutionForbidden(ExecutionRefused):
    """The access check said no."""

    code = "FORBIDDEN"
    status = 403


class ClientNotOwned(ExecutionRefused):
    """``clientId`` is not an SSE client of the calling session (or is unknown).

    Raised by ``services.live.prepare_request``; unknown and foreign ids get the same
    answer so a caller cannot probe which client ids exist.
    """

    def __init__(self, public: str = "clientId is not an event stream of this session") -> None:
        super().__init__(public)


class TooManyPending(ExecutionRefused):
    """The session already has ``GATEWAY_MAX_PENDING_PER_SESSION`` requests waiting for results."""

    code = "RATE_LIMITED"
    status = 429

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Too many pending requests for this session (limit {limit}); wait for their results and retry"
        )
