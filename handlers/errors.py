"""``ApiError``: the HTTP-level member of the one error family (``gateway.errors.PublicError``)."""

from __future__ import annotations

from typing import Any

from tornado.web import HTTPError

from gateway.errors import PublicError, code_for_status


class ApiError(HTTPError, PublicError):
    """An HTTP-level refusal: ``public`` text is safe to show; ``log_message`` stays in the log.

    ``headers`` are sent with the error body, ``extra`` fields are added to it.
    """

    def __init__(
        self,
        status: int,
        public: str,
        log_message: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        HTTPError.__init__(self, status, log_message)  # Tornado's own fields (it answers HTTPError itself)
        self.status, self.code, self.public = status, code_for_status(status), public
        self.headers = headers or {}
        self.extra = extra
