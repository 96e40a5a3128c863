"""``POST /ingress/{listener}``: verified push ingress (webhooks, Pub/Sub push) that starts playbooks.

Before the body: the method (405 for every name alike), the listener (404 for a name nobody
configured, the same answer as any unknown path), its rate limit (429) and its body limit (413,
``BoundedBodyHandler``: a declared length over it is refused before a byte is read). On the
complete body: ``services.ingress.deliver`` — verification first — then 202
``{"status": "accepted", "execution_id"}``. No session: the source is the principal.
Refusals carry the reference gateway's reason code: ``{"error": ..., "reason": ...}``.
"""

from __future__ import annotations

from typing import Any

from gateway.ingress.listeners import Listener
from gateway.ingress.rejections import IngressRejected
from gateway.ingress.service import IngressService
from handlers.base import BaseHandler
from handlers.bodies import DISCARD_BODY_BYTES, body_read_ceiling
from handlers.errors import ApiError


def refusal(exc: IngressRejected) -> ApiError:
    """The HTTP answer of a refused delivery (the reason rides along; unknown listeners get plain 404)."""
    headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
    if exc.reason == "unknown_listener":
        return ApiError(404, exc.public)
    return ApiError(exc.status, exc.public, headers=headers, reason=exc.reason)


class IngressHandler(BaseHandler):
    """One delivery to one listener."""

    route_name = "ingress"
    _listener: Listener | None = None

    @property
    def ingress(self) -> IngressService:
        return self.services.ingress

    async def prepare(self) -> None:
        """The listener first, so that its body limit is the one enforced before the body is read."""
        refused: IngressRejected | None = None
        if self.request.method == "POST":
            try:
                self._listener = await self.ingress.admit(self.path_args[0], self.client_ip())
            except IngressRejected as exc:
                refused = exc
        await super().prepare()  # request id; a declared body over body_limit() is refused here
        if self.request.method == "OPTIONS":
            return
        if self.request.method != "POST":
            raise ApiError(405, "Method not allowed: deliveries are POSTed", headers={"Allow": "POST, OPTIONS"})
        if refused is not None:
            raise refusal(refused)
        # A listener may take bodies larger than the JSON routes: Tornado's own limit follows (with the
        # same drop allowance above it as every route), so the listener's 413 (JSON) answers first.
        needed = self.body_limit() + 2 * DISCARD_BODY_BYTES
        set_limit = getattr(self.request.connection, "set_max_body_size", None)
        if set_limit is not None and needed > body_read_ceiling(self.config):
            set_limit(needed)

    def body_limit(self) -> int:
        """The listener's limit; for a name no listener has, the JSON routes' limit."""
        if self._listener is not None:
            return self._listener.max_body_bytes
        return super().body_limit()

    def body_too_large(self, limit: int | None = None) -> ApiError:
        """Counted as a refusal of the listener (declared or chunked, the one place both pass)."""
        if self._listener is not None:  # an unknown name was counted as such already
            self.ingress.rejected(self._listener.name, "body_too_large", 413, self.client_ip())
        error = super().body_too_large(limit)
        error.extra["reason"] = "body_too_large"
        return error

    async def post(self, *_args: Any) -> None:
        listener = self._listener
        assert listener is not None
        try:
            accepted = await self.ingress.deliver(
                listener, self.request.headers, self.request.body or b"", self.client_ip()
            )
        except IngressRejected as exc:
            raise refusal(exc) from None
        self.write_json(
            {
                "status": "accepted",
                "execution_id": accepted.execution_id,
                "delivery_id": accepted.delivery_id,
                "duplicate": accepted.duplicate,
            },
            status=202,
        )


default_handlers = [(r"/ingress/([^/]+)", IngressHandler)]
