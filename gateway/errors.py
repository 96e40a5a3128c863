"""Errors a client may see: one family, :class:`PublicError` (HTTP ``status``, GraphQL ``code``, ``public`` text).

Every domain error derives from it (``AuthError``, ``Auth0Error``, ``CallbackTokenError``,
``UpstreamFailure``, ``RequestProblem``, ``ApiError``, the authorization refusals of
``gateway.access.refusals`` and the execution refusals below), and each
wire format maps the family once: ``BaseHandler.write_error`` for HTTP (``{"error": public}``),
``schema.errors.public_extensions`` for GraphQL (``extensions.code``). The public text never holds
an upstream URL or a traceback; those go to the log only.
"""

from __future__ import annotations

# GraphQL ``extensions.code`` values of the family (schema/errors.py adds the request-level ones).
BAD_USER_INPUT = "BAD_USER_INPUT"
UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
RATE_LIMITED = "RATE_LIMITED"
UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
UPSTREAM_ERROR = "UPSTREAM_ERROR"
INTERNAL = "INTERNAL"
BAD_REQUEST = "BAD_REQUEST"

_CODE_OF_STATUS = {400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN, 429: RATE_LIMITED}


def code_for_status(status: int) -> str:
    """The code of an error that has no code of its own (HTTP-only errors)."""
    if status in (502, 503, 504):
        return UPSTREAM_UNAVAILABLE
    return _CODE_OF_STATUS.get(status, INTERNAL if status >= 500 else BAD_REQUEST)


class PublicError(Exception):
    """An error whose ``public`` text may be shown, with the HTTP ``status`` and GraphQL ``code`` it maps to."""

    status: int = 500
    code: str = INTERNAL

    def __init__(self, status: int, code: str, public: str) -> None:
        super().__init__(public)
        self.status = status
        self.code = code
        self.public = public


class ExecutionRefused(PublicError):
    """A refusal of an execution start or API call; subclasses set ``status`` and ``code``."""

    code = BAD_USER_INPUT
    status = 400

    def __init__(self, public: str) -> None:
        super().__init__(self.status, self.code, public)


class BadExecutionInput(ExecutionRefused):
    """The request itself is wrong (name, variables, clientId)."""


class ClientNotOwned(ExecutionRefused):
    """``clientId`` is not an SSE client of the calling session (or is unknown).

    Raised by ``services.live.prepare_request``; unknown and foreign ids get the same
    answer so a caller cannot probe which client ids exist.
    """

    def __init__(self, public: str = "clientId is not an event stream of this session") -> None:
        super().__init__(public)


class TooManyPending(ExecutionRefused):
    """The session already has ``GATEWAY_MAX_PENDING_PER_SESSION`` requests waiting for results."""

    code = RATE_LIMITED
    status = 429

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Too many pending requests for this session (limit {limit}); wait for their results and retry"
        )


class RequestStateUnavailable(PublicError):
    """A callback's pending request cannot be looked up now: NATS is away or failing over, and the
    request may be stored by another replica. 503, so the worker retries (HTTP's "try again later")
    instead of dropping a result on a 404 (docs/deployment.md, "Clustered NATS")."""

    def __init__(self) -> None:
        super().__init__(503, UPSTREAM_UNAVAILABLE, "Pending requests are unavailable for a moment; retry the callback")


# -- GraphQL subscriptions (gateway/live/watch.py) ------------------------------------------


class SubscriptionRefused(ExecutionRefused):
    """A subscription that cannot start: nothing of this session to watch under that id."""

    code = "NOT_FOUND"
    status = 404


class TooManySubscriptions(ExecutionRefused):
    """The session (on every replica together) or the connection already has its limit of open subscriptions."""

    code = RATE_LIMITED
    status = 429

    def __init__(self, limit: int, per: str = "session") -> None:
        super().__init__(f"Too many open subscriptions for this {per} (limit {limit})")
