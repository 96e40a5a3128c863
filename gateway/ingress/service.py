"""``IngressService`` (``services.ingress``): one delivery from the listener's lookup to its execution.

``admit(name)`` runs before the body is read (which listener, its rate limit); ``deliver`` runs
on the complete body: verify, read the message, claim the delivery id, start the playbook through
NoETL's ``POST /api/execute`` (the same client call every start uses), record the execution.
There is no session: the listener's verification is the principal. Every refusal is counted in
``noetl_ingress_rejected_total{subscription,reason}`` and written as one audit line; so is every
start (``noetl_ingress_dispatched_total``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

import aiohttp
import orjson

from gateway.audit import AuditLog
from gateway.auth.rate_limit import RateLimiter
from gateway.config import GatewayConfig
from gateway.executions.service import execution_id_of
from gateway.ingress.directory import ListenerDirectory
from gateway.ingress.ledger import Claim, DeliveryLedger
from gateway.ingress.listeners import Listener
from gateway.ingress.message import build_workload, read_message
from gateway.ingress.oidc import JwksKeys, OidcVerifier
from gateway.ingress.rejections import IngressRejected
from gateway.ingress.verify import verify_delivery
from gateway.metrics import Metrics
from gateway.nats.kv import KvBucket
from gateway.noetl.client import NoetlClient, UpstreamFailure

UNKNOWN = "(unknown)"  # the metric label of names no listener has: URLs must not mint label values


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to a delivery: the execution it started (or, redelivered, had started)."""

    execution_id: str
    delivery_id: str | None
    duplicate: bool


class IngressService:
    """Push ingress for every listener of this process."""

    def __init__(
        self,
        config: GatewayConfig,
        directory: ListenerDirectory,
        ledger: DeliveryLedger,
        oidc: OidcVerifier,
        noetl: NoetlClient,
        metrics: Metrics,
        audit: AuditLog,
    ) -> None:
        self.audit = audit
        self.config = config
        self.directory = directory
        self.ledger = ledger
        self.oidc = oidc
        self.noetl = noetl
        self.metrics = metrics
        self._limits: dict[str, tuple[int, RateLimiter]] = {}  # listener -> (its rate, its bucket)

    @classmethod
    def create(
        cls,
        config: GatewayConfig,
        file_listeners: dict[str, Listener],
        bucket: KvBucket,
        noetl: NoetlClient,
        http: aiohttp.ClientSession,
        metrics: Metrics,
        audit: AuditLog,
    ) -> IngressService:
        """Wire the parts (``Services.create`` builds the bucket, so the NATS link sets it up)."""
        return cls(
            config,
            ListenerDirectory(config, noetl, file_listeners),
            # A claim outlives the longest execute call, so only a dead claimant is taken over.
            DeliveryLedger(bucket, claim_secs=config.noetl_timeout_secs + 5),
            OidcVerifier(JwksKeys(config.gateway_ingress_jwks_url, http)),
            noetl,
            metrics,
            audit,
        )

    async def admit(self, name: str, peer: str) -> Listener:
        """The listener a delivery is for, within its rate limit (before the body is read)."""
        try:
            listener = await self.directory.find(name)
        except IngressRejected as exc:
            self.reject(UNKNOWN, exc, peer)
        if listener is None:
            self.reject(UNKNOWN, IngressRejected(404, "unknown_listener", "Not found"), peer)
        self.metrics.ingress_received.labels(listener.name).inc()
        wait = self._limiter(listener).acquire(listener.name)
        if wait > 0:
            self.reject(
                listener.name,
                IngressRejected(429, "rate_limited", "Too many deliveries to this listener", retry_after=wait),
                peer,
            )
        return listener

    async def deliver(self, listener: Listener, headers: Mapping[str, str], body: bytes, peer: str) -> Accepted:
        """Verify, then start one execution per delivery id; IngressRejected or UpstreamFailure otherwise."""
        received_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        try:
            await verify_delivery(listener, headers, body, self.oidc)  # before anything else reads the body
            message = read_message(listener, headers, body)
        except IngressRejected as exc:
            self.reject(listener.name, exc, peer)
        claim: Claim | None = None
        if message.delivery_id is not None:
            try:
                claimed = await self.ledger.claim(listener.name, message.delivery_id)
            except IngressRejected as exc:
                self.reject(listener.name, exc, peer, message.delivery_id)
            if isinstance(claimed, str):
                return self._accepted(listener, message.delivery_id, claimed, peer, duplicate=True)
            claim = claimed
        try:
            execution_id = await self._start(listener, build_workload(listener, message, received_at))
        except (UpstreamFailure, IngressRejected) as exc:
            if claim is not None:
                await self.ledger.release(claim)
            if isinstance(exc, UpstreamFailure):  # NoETL's status (502, 504): the source retries
                exc = IngressRejected(exc.status, "dispatch_error", exc.public)
            self.reject(listener.name, exc, peer, message.delivery_id)
        if claim is not None:
            await self.ledger.settle(claim, execution_id)
        self.metrics.ingress_dispatched.labels(listener.name).inc()
        return self._accepted(listener, message.delivery_id, execution_id, peer, duplicate=False)

    def _accepted(
        self, listener: Listener, delivery_id: str | None, execution_id: str, peer: str, *, duplicate: bool
    ) -> Accepted:
        """Audit the answer a delivery gets: its execution (a redelivery's is the first one's)."""
        self.audit.record(
            "ingress_accepted",
            ip=peer,
            listener=listener.name,
            delivery_id=delivery_id,
            playbook=listener.playbook,
            execution_id=execution_id,
            duplicate=duplicate,
        )
        return Accepted(execution_id, delivery_id, duplicate=duplicate)

    async def _start(self, listener: Listener, workload: dict[str, object]) -> str:
        try:
            answer = await self.noetl.execute(listener.playbook, workload)
        except orjson.JSONEncodeError:  # a payload nested deeper than JSON encoding allows
            raise IngressRejected(400, "bad_payload", "The payload cannot be sent on as JSON") from None
        return str(execution_id_of(answer))

    def rejected(self, listener: str, reason: str, status: int, peer: str) -> None:
        """Count and audit a refusal decided by the HTTP layer (a body over the listener's limit)."""
        self._count_rejection(listener, reason, status, peer, None)

    def reject(self, listener: str, exc: IngressRejected, peer: str, delivery_id: str | None = None) -> NoReturn:
        """Count, audit, raise: the one way a delivery is refused."""
        self._count_rejection(listener, exc.reason, exc.status, peer, delivery_id)
        raise exc

    def _count_rejection(self, listener: str, reason: str, status: int, peer: str, delivery_id: str | None) -> None:
        self.metrics.ingress_rejected.labels(listener, reason).inc()
        self.audit.record(
            "ingress_refused", ip=peer, listener=listener, reason=reason, status=status, delivery_id=delivery_id
        )

    def _limiter(self, listener: Listener) -> RateLimiter:
        """The listener's token bucket; a new one when NoETL changed the listener's rate."""
        found = self._limits.get(listener.name)
        if found is None or found[0] != listener.rate_per_minute:
            found = self._limits[listener.name] = (
                listener.rate_per_minute,
                RateLimiter(listener.rate_per_minute, max_keys=1),
            )
        return found[1]
