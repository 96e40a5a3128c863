"""Callbacks from playbooks/workers (CONTRACT §6)."""

from __future__ import annotations

import logging
from typing import Any

from handlers.base import ApiError, CallbackHandler
from handlers.models import AsyncCallbackRequest, CallbackRequest, ProgressRequest

log = logging.getLogger("gateway.callbacks")


class AuthCallbackHandler(CallbackHandler):
    """``POST /api/internal/callback``: the answer a login/check-access request waits for."""

    route_name = "callback"

    async def post(self) -> None:
        body = self.parse_body(CallbackRequest)
        self.check_request_id(body.request_id)
        known = self.services.callbacks.has_waiter(body.request_id) or self.services.nats.connected
        self.verify_callback(body.request_id, body.callback_token, known=known)
        payload = body.model_dump(exclude={"callback_token"})
        await self.spend_callback(body.request_id)  # the waiter's answer is final
        delivered = False
        try:
            delivered = await self.services.callbacks.deliver(body.request_id, payload)
        finally:
            if not delivered:  # nobody took it: the playbook may try again
                await self.services.spent_callbacks.release(body.request_id)
        self.write_json(
            {
                "delivered": delivered,
                "message": "Callback accepted for delivery" if delivered else "No request is waiting for this id",
            }
        )


class LiveCallbackHandler(CallbackHandler):
    """Shared by the result and progress callbacks: token first, then the pending request."""

    async def pending_request(self, request_id: str, body_token: str | None) -> dict[str, Any]:
        """The pending request, after the callback token was checked (401/403 before any lookup)."""
        self.check_request_id(request_id)
        if self.callback_token_from(body_token) or self.config.gateway_callback_auth == "required":
            self.verify_callback(request_id, body_token, known=True)
            record = await self.services.live.find_request(request_id)
        else:  # legacy mode, unsigned: only a pending request id is accepted
            record = await self.services.live.find_request(request_id)
            self.verify_callback(request_id, body_token, known=record is not None)
        if record is None:
            raise ApiError(404, "Request not found")
        return record

    def answer(self, connected: bool) -> None:
        """200 delivered, or 202 queued: kept and delivered when the client reconnects."""
        if connected:
            self.write_json({"status": "delivered"})
        else:
            self.write_json({"status": "queued", "clientDisconnected": True}, status=202)


class AsyncResultHandler(LiveCallbackHandler):
    """``POST /api/internal/callback/async``: a playbook's result for an SSE client."""

    route_name = "callback_async"

    async def post(self) -> None:
        body = self.parse_body(AsyncCallbackRequest)
        record = await self.pending_request(body.request_id, body.callback_token)
        error = body.error.model_dump() if body.error is not None else None
        await self.spend_callback(body.request_id)  # a result is final: progress after it is refused too
        try:
            connected = await self.services.live.deliver_result(
                body.request_id, record, body.execution_id, body.status, body.data, error
            )
        except BaseException:
            await self.services.spent_callbacks.release(body.request_id)
            raise
        log.info("result for request %s: %s", body.request_id[:8], "delivered" if connected else "queued")
        self.answer(connected)


class ProgressHandler(LiveCallbackHandler):
    """``POST /api/internal/progress``: a progress note for an SSE client (the request stays pending)."""

    route_name = "progress"

    async def post(self) -> None:
        body = self.parse_body(ProgressRequest)
        record = await self.pending_request(body.request_id, body.callback_token)
        connected = await self.services.live.deliver_progress(
            body.request_id, record, body.execution_id, body.step, body.message, body.progress
        )
        self.answer(connected)


default_handlers = [
    (r"/api/internal/callback", AuthCallbackHandler),
    (r"/api/internal/callback/async", AsyncResultHandler),
    (r"/api/internal/progress", ProgressHandler),
]
