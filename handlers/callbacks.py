"""Callbacks from playbooks/workers (CONTRACT §6)."""

from __future__ import annotations

from gateway.models import CallbackRequest
from handlers.base import CallbackHandler


class AuthCallbackHandler(CallbackHandler):
    """``POST /api/internal/callback``: the answer a login/check-access request waits for."""

    route_name = "callback"

    async def post(self) -> None:
        body = self.parse_body(CallbackRequest)
        known = self.services.callbacks.has_waiter(body.request_id) or self.services.nats.connected
        self.verify_callback(body.request_id, body.callback_token, known=known)
        payload = body.model_dump(exclude={"callback_token"})
        delivered = await self.services.callbacks.deliver(body.request_id, payload)
        self.write_json(
            {
                "delivered": delivered,
                "message": "Callback accepted for delivery" if delivered else "No request is waiting for this id",
            }
        )


default_handlers = [
    (r"/api/internal/callback", AuthCallbackHandler),
]
