"""Callbacks from playbooks/workers (CONTRACT §6)."""

from __future__ import annotations

import logging
from http.client import responses
from typing import Any

from gateway.auth.tokens import is_callback_request_id
from gateway.errors import PublicError
from handlers.base import APIHandler
from handlers.errors import ApiError
from handlers.models import AsyncCallbackRequest, CallbackRequest, ProgressRequest

log = logging.getLogger("gateway.callbacks")

SPENT_TOKEN = "Callback token already used"


class CallbackHandler(APIHandler):
    """Worker callbacks: the request id's shape, then the callback token (signed, for this id, not
    yet spent), all before the request id is looked up or becomes a NATS subject."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every refused callback is audited once, with the reason its caller reads; a callback for
        a request nobody waits for any more is the reference's "undelivered" (its answer is lost)."""
        if 400 <= status_code < 500:
            exc = kwargs.get("exc_info", (None, None, None))[1]
            reason = exc.public if isinstance(exc, PublicError) else responses.get(status_code, "refused")
            self.services.audit.record("callback_refused", route=self.request.path, reason=reason)
            if status_code == 404:
                self.metrics.reference.callback_undelivered.inc()
        super().write_error(status_code, **kwargs)

    def check_request_id(self, request_id: str) -> None:
        """400 unless the id is one the gateway could have issued (a uuid)."""
        if not is_callback_request_id(request_id):
            raise ApiError(400, "Field 'request_id' is malformed: expected the request id the gateway issued")

    def callback_token_from(self, body_token: str | None) -> str | None:
        """Token from Authorization Bearer, X-Callback-Token or the body."""
        header = self.request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            return header[7:].strip()
        return self.request.headers.get("X-Callback-Token") or body_token

    def verify_callback(self, request_id: str, body_token: str | None) -> bool:
        """Before any lookup: a valid token naming request_id (accepted from anywhere), or an unsigned
        callback the ``GATEWAY_CALLBACK_AUTH`` mode admits from this caller (401/403 otherwise) — and
        not spent: once the request's final callback was accepted, nothing more is. True when
        unsigned: the caller must then refuse an id that is not pending (404)."""
        token = self.callback_token_from(body_token)
        if token:
            self.services.signer.verify(token, request_id)  # CallbackTokenError: 401/403
        else:
            self.auth.callback_sources.admit_unsigned(self.client_ip())  # the trusted-hops rule
        if self.services.spent_callbacks.is_spent(request_id):
            raise ApiError(401, SPENT_TOKEN)
        return not token

    async def spend_callback(self, request_id: str) -> None:
        """Accept this request's final callback, once: a replay (or a race) gets 401."""
        if not await self.services.spent_callbacks.spend(request_id):
            raise ApiError(401, SPENT_TOKEN)


class AuthCallbackHandler(CallbackHandler):
    """``POST /api/internal/callback``: the answer a login/check-access request waits for."""

    route_name = "callback"

    async def post(self) -> None:
        body = self.parse_body(CallbackRequest)
        self.check_request_id(body.request_id)
        if self.verify_callback(body.request_id, body.callback_token):
            # Unsigned: a waiter here, or possibly on another replica (NATS routes it there).
            if not (self.services.callbacks.has_waiter(body.request_id) or self.services.nats.connected):
                raise ApiError(404, "Request not found")
        payload = body.model_dump(exclude={"callback_token"})
        await self.spend_callback(body.request_id)  # the waiter's answer is final
        delivered = False
        try:
            delivered = await self.services.callbacks.deliver(body.request_id, payload)
        finally:
            if not delivered:  # nobody took it: the playbook may try again
                self.metrics.reference.callback_undelivered.inc()
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
        self.verify_callback(request_id, body_token)  # signed or unsigned: only a pending id goes on
        record = await self.services.live.find_request(request_id, for_callback=True)
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
