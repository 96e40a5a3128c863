"""Running an auth playbook and waiting for its callback, within a budget (CONTRACT §3).

Login and check-access wait at most ``AUTH_PLAYBOOK_FAIL_FAST_SECS`` (12 s, the reference
gateway's budget): a worker pool that is slow to pick the playbook up then answers
``503 {"error": "auth backend is busy"}`` — retry later — instead of holding the browser for a
minute. ``AUTH_PLAYBOOK_TIMEOUT_SECS`` bounds the other waits (and these two when fail-fast is
off, ``0``, or longer), answered 504. Either way the execution nobody waits for any more is
cancelled in NoETL, in the background; a cancel that fails is counted
(``noetl_gateway_auth_cancel_failed_total``) and logged, never shown to the client.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any
from urllib.parse import quote

from gateway.auth.callbacks import CallbackRouter, CallbackTimeout
from gateway.auth.tokens import CallbackSigner
from gateway.config import GatewayConfig
from gateway.errors import UPSTREAM_ERROR, UPSTREAM_UNAVAILABLE, PublicError
from gateway.metrics import Metrics
from gateway.noetl.client import NoetlClient, UpstreamFailure

log = logging.getLogger("gateway.auth")

BUSY = "auth backend is busy"  # the reference's words; clients match on them


class AuthError(PublicError):
    """An auth failure with the status and public text the client sees."""

    def __init__(self, status: int, public: str) -> None:
        # Seen from GraphQL, a failed auth playbook (timeout, error) is an upstream failure.
        super().__init__(status, UPSTREAM_UNAVAILABLE if status in (502, 503, 504) else UPSTREAM_ERROR, public)


class AuthPlaybooks:
    """Starts auth playbooks with their callback variables and waits for the answer."""

    def __init__(
        self,
        config: GatewayConfig,
        noetl: NoetlClient,
        callbacks: CallbackRouter,
        signer: CallbackSigner,
        metrics: Metrics,
    ) -> None:
        self._config, self._noetl, self._callbacks, self._signer = config, noetl, callbacks, signer
        self._metrics = metrics
        self._background: set[asyncio.Task[Any]] = set()

    def budget(self, *, fail_fast: bool) -> tuple[float, bool]:
        """(seconds to wait, whether running out is "busy" 503 rather than a 504 timeout)."""
        timeout = self._config.auth_playbook_timeout_secs
        quick = self._config.auth_playbook_fail_fast_secs
        if fail_fast and 0 < quick <= timeout:
            return quick, True
        return timeout, False

    def callback_variables(self, request_id: str, wait_secs: float | None = None) -> dict[str, Any]:
        """What every playbook run by the gateway needs to call back; its token ends soon after the wait."""
        wait = self._config.auth_playbook_timeout_secs if wait_secs is None else wait_secs
        return {
            "callback_subject": self._callbacks.subject_for(request_id),
            "request_id": request_id,
            "gateway_url": self._config.public_url,
            "callback_token": self._signer.issue(
                request_id, min(float(self._config.gateway_callback_token_ttl_secs), wait + 5.0)
            ),
        }

    async def run_and_wait(self, playbook: str, variables: dict[str, Any], *, fail_fast: bool) -> dict[str, Any]:
        """Execute a playbook and wait for its callback; the waiter is cleaned up on every path."""
        wait, busy = self.budget(fail_fast=fail_fast)
        request_id = str(uuid.uuid4())
        self._callbacks.register(request_id)
        execution_id: Any = None
        try:
            answer = await self._noetl.execute(playbook, {**variables, **self.callback_variables(request_id, wait)})
            execution_id = answer.get("execution_id")
            log.info("playbook %s started (execution %s)", playbook, execution_id)
            return await self._callbacks.wait(request_id, wait)
        except CallbackTimeout:
            if execution_id is not None:
                self._cancel_later(str(execution_id), f"gateway gave up on {playbook} after {wait:g}s")
            if busy:
                raise AuthError(503, BUSY) from None
            raise AuthError(504, f"No answer from the auth playbook within {wait:g}s") from None
        finally:
            self._callbacks.discard(request_id)

    def _cancel_later(self, execution_id: str, reason: str) -> None:
        task = asyncio.create_task(self._cancel(execution_id, reason))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _cancel(self, execution_id: str, reason: str) -> None:
        """``POST /api/executions/{id}/cancel``: the orphaned run must not keep a worker busy."""
        try:
            status, _ = await self._noetl.request_json(
                "POST", f"executions/{quote(execution_id, safe='')}/cancel", {"reason": reason, "cascade": True}
            )
        except UpstreamFailure as exc:
            failure = exc.public
        else:
            if status < 400:
                log.info("auth execution %s cancelled: %s", execution_id, reason)
                return
            failure = f"status {status}"
        self._metrics.reference.auth_cancel_failed.inc()
        log.warning("could not cancel auth execution %s (%s)", execution_id, failure)

    def run_later(self, playbook: str, variables: dict[str, Any]) -> None:
        """Start a playbook nobody waits for (logout), keeping the task until it is sent."""
        task = asyncio.create_task(self._start(playbook, variables))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _start(self, playbook: str, variables: dict[str, Any]) -> None:
        try:
            await self._noetl.execute(playbook, {**variables, **self.callback_variables(str(uuid.uuid4()))})
        except UpstreamFailure as exc:
            log.warning("playbook %s could not be started: %s", playbook, exc.public)

    async def close(self) -> None:
        """Let background cancels and logout playbooks finish (bounded)."""
        if self._background:
            await asyncio.wait(self._background, timeout=5.0)
