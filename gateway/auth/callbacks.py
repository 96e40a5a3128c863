"""Routing of auth-playbook callbacks to the HTTP request waiting for them.

A login or check-access request registers a waiter for its ``request_id`` and waits.
The playbook's answer may reach *any* replica — over HTTP (``/api/internal/callback``)
or as a NATS message on ``{prefix}.{request_id}``. Every replica subscribes to
``{prefix}.>``: a replica that receives an HTTP callback for a waiter it does not hold
publishes it there, and the replica holding the waiter resolves it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from gateway.auth.tokens import is_callback_request_id
from gateway.metrics import Metrics
from gateway.nats.link import NatsLink

log = logging.getLogger("gateway.callbacks")


class CallbackTimeout(Exception):
    """The playbook did not call back in time."""


class CallbackRouter:
    """Waiters by request id, fed by HTTP callbacks and NATS messages."""

    def __init__(self, link: NatsLink, subject_prefix: str, metrics: Metrics) -> None:
        self._link = link
        self._prefix = subject_prefix.rstrip(".")
        self._metrics = metrics
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._sub: Any = None
        link.add_setup_hook("callbacks", self._subscribe)

    def subject_for(self, request_id: str) -> str:
        """The NATS subject a playbook may publish its answer on."""
        return f"{self._prefix}.{request_id}"

    async def _subscribe(self, link: NatsLink) -> None:
        assert link.nc is not None
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
        self._sub = await link.nc.subscribe(f"{self._prefix}.>", cb=self._on_message)

    async def _on_message(self, msg: Any) -> None:
        request_id = msg.subject[len(self._prefix) + 1 :]
        if not is_callback_request_id(request_id):
            log.warning("callback on NATS with a malformed request id ignored")
            return
        if request_id not in self._waiters:
            return  # another replica's waiter
        try:
            payload = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            log.warning("undecodable callback on NATS for request %s ignored", request_id)
            return
        if isinstance(payload, dict):
            self._resolve(request_id, payload)

    # -- waiting side ----------------------------------------------------------------------

    def register(self, request_id: str) -> None:
        """Create the waiter *before* the playbook starts, so a fast answer is not missed."""
        self._waiters[request_id] = asyncio.get_running_loop().create_future()

    def has_waiter(self, request_id: str) -> bool:
        """True if this process holds a waiter for the id."""
        return request_id in self._waiters

    async def wait(self, request_id: str, timeout: float) -> dict[str, Any]:
        """Wait for the callback; the waiter is removed on every path."""
        future = self._waiters.get(request_id)
        if future is None:
            raise KeyError(request_id)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._metrics.callbacks.labels("timeout").inc()
            raise CallbackTimeout(request_id) from None
        finally:
            self._waiters.pop(request_id, None)

    def discard(self, request_id: str) -> None:
        """Drop a waiter whose playbook could not be started."""
        future = self._waiters.pop(request_id, None)
        if future is not None and not future.done():
            future.cancel()

    @property
    def pending(self) -> int:
        """How many requests wait for a callback in this process."""
        return len(self._waiters)

    # -- delivering side -------------------------------------------------------------------

    def _resolve(self, request_id: str, payload: dict[str, Any]) -> bool:
        future = self._waiters.get(request_id)
        if future is None or future.done():
            return False
        future.set_result(payload)
        self._metrics.callbacks.labels("delivered").inc()
        return True

    async def deliver(self, request_id: str, payload: dict[str, Any]) -> bool:
        """Deliver locally, or hand to the other replicas over NATS ("accepted for delivery")."""
        if not is_callback_request_id(request_id):
            return False  # never a subject token: it could name other subjects
        if self._resolve(request_id, payload):
            return True
        if self._link.connected and self._link.nc is not None:
            try:
                await self._link.nc.publish(self.subject_for(request_id), orjson.dumps(payload))
                self._metrics.callbacks.labels("forwarded").inc()
                return True
            except Exception as exc:
                log.warning("could not forward callback over NATS: %s", type(exc).__name__)
        self._metrics.callbacks.labels("unknown").inc()
        return False
