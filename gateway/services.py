"""Everything a gateway process shares between requests, created once and closed once.

``Services.start()`` never fails because NATS or NoETL are away: the link keeps trying,
KV buckets fall back to process memory, and ``/health/ready`` tells the operator.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from gateway.access.guard import AccessGuard
from gateway.access.policy_file import load_route_policy
from gateway.access.starts import PlaybookAccess
from gateway.audit import AuditLog
from gateway.auth.callbacks import CallbackRouter
from gateway.auth.service import AuthService
from gateway.auth.sessions import SessionCache, tombstone_obsolete
from gateway.auth.tokens import CallbackSigner, SpentCallbacks
from gateway.config import GatewayConfig
from gateway.executions.api_call import ApiCalls
from gateway.executions.service import Executions
from gateway.ingress.listeners import load_listeners
from gateway.ingress.service import IngressService
from gateway.live.hub import LiveHub
from gateway.metrics import Metrics
from gateway.nats.kv import KvBucket
from gateway.nats.link import NatsLink
from gateway.noetl.client import NoetlClient, make_http_session
from gateway.subscriptions.service import Subscriptions
from gateway.tracing import activate, shutdown_tracing, tracing_from_environ
from gateway.version import __version__

if TYPE_CHECKING:
    from gateway.tracing.sdk import Tracing

log = logging.getLogger("gateway.services")


@dataclass
class Services:
    """The process-wide objects handlers reach through ``Application.settings``."""

    config: GatewayConfig
    metrics: Metrics
    http: aiohttp.ClientSession
    nats: NatsLink
    noetl: NoetlClient
    signer: CallbackSigner
    callbacks: CallbackRouter
    sessions: SessionCache
    auth: AuthService
    access: AccessGuard
    live: LiveHub
    executions: Executions
    api_calls: ApiCalls
    spent_callbacks: SpentCallbacks
    audit: AuditLog
    ingress: IngressService
    # hash → GraphQL document, shared by every replica (schema/persisted.py reads and writes it)
    persisted_queries: KvBucket
    subscriptions: Subscriptions
    buckets: list[KvBucket] = field(default_factory=list)
    tracing: Tracing | None = None  # OTEL_* (gateway/tracing): None = off, the SDK never imported
    shutdown_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    inflight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def request_started(self) -> None:
        """Count a request in flight (graceful stop waits for these)."""
        self.inflight += 1
        self._idle.clear()

    def request_ended(self) -> None:
        """Uncount a request; wake the stopper when none are left."""
        self.inflight = max(0, self.inflight - 1)
        if self.inflight == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if the grace ran out."""
        if self.inflight == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def run_shutdown_hooks(self) -> None:
        """Tell long-lived streams to close (SSE sends its retry hint)."""
        for hook in self.shutdown_hooks:
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")

    @classmethod
    def create(cls, config: GatewayConfig) -> Services:
        """Build (not start) every service; must run inside the event loop."""
        listeners = load_listeners(config)  # a bad GATEWAY_INGRESS_CONFIG stops here, before anything opens
        metrics = Metrics()
        metrics.reference.describe_build(__version__, config.gateway_auth_bypass)
        audit = AuditLog(config.gateway_audit_log, on_drop=metrics.audit_dropped.inc)
        tracing = tracing_from_environ()
        http = make_http_session(config.noetl_connect_timeout_secs, traced=tracing is not None)
        link = NatsLink(config)
        link.add_state_listener(lambda up: metrics.nats_connected.set(1 if up else 0))
        noetl = NoetlClient(http, config.noetl_default_url, config.noetl_timeout_secs, config.shard_urls)
        signer = CallbackSigner(config.gateway_callback_secret, config.gateway_callback_token_ttl_secs)
        callbacks = CallbackRouter(link, config.nats_callback_subject_prefix, metrics)
        session_bucket = KvBucket(link, config.nats_session_bucket, config.nats_session_cache_ttl_secs, mirror=True)
        revoked_bucket = KvBucket(
            link,
            config.nats_revoked_bucket,
            config.gateway_revocation_ttl_secs,
            mirror=True,
            max_local=config.gateway_revocation_mirror_max,
            obsolete=tombstone_obsolete,
        )
        sessions = SessionCache(session_bucket, revoked_bucket, metrics)
        auth = AuthService(config, noetl, callbacks, sessions, signer, metrics)
        access = AccessGuard(
            load_route_policy(config),
            PlaybookAccess(auth, noetl, enforce=config.gateway_enforce_playbook_access),
            metrics,
            audit,
        )
        live = LiveHub(config, link, metrics, sessions, noetl)  # noetl: playbook/state polling
        # Kept as long as a token lives; mirrored, so checking a callback costs no round trip.
        spent_bucket = KvBucket(
            link, config.nats_spent_callback_bucket, config.gateway_callback_token_ttl_secs, mirror=True
        )
        executions = Executions(
            noetl, access, live, signer, public_url=config.public_url, admin_roles=config.gateway_admin_roles
        )
        # Not mirrored: each process keeps the documents it uses in its document cache instead.
        persisted_bucket = KvBucket(
            link,
            config.nats_persisted_query_bucket,
            config.gateway_persisted_query_ttl_secs,
            mirror=False,
            max_local=1024,
        )
        api_calls = ApiCalls(
            noetl,
            access,
            timeout_secs=config.gateway_proxy_timeout_secs,
            max_answer_bytes=config.gateway_proxy_request_max_answer_bytes,
            admin_roles=config.gateway_admin_roles,
        )
        # Push ingress (docs/ingress.md): listeners from GATEWAY_INGRESS_CONFIG, delivery ids in NATS KV.
        ingress_bucket = KvBucket(
            link, config.nats_ingress_bucket, config.gateway_ingress_idempotency_secs, mirror=False
        )
        ingress = IngressService.create(config, listeners, ingress_bucket, noetl, http, metrics, audit)
        services = cls(
            config=config,
            metrics=metrics,
            http=http,
            nats=link,
            noetl=noetl,
            signer=signer,
            callbacks=callbacks,
            sessions=sessions,
            auth=auth,
            access=access,
            live=live,
            executions=executions,
            api_calls=api_calls,
            spent_callbacks=SpentCallbacks(spent_bucket),
            audit=audit,
            ingress=ingress,
            persisted_queries=persisted_bucket,
            # GraphQL subscriptions (graphql-ws, graphql-sse): watches over the live events and NoETL's lifecycle.
            subscriptions=Subscriptions(config, sessions, live, access, executions, noetl, metrics),
            buckets=[session_bucket, revoked_bucket, spent_bucket, ingress_bucket, persisted_bucket],
            tracing=tracing,
        )
        services.shutdown_hooks.append(live.shutdown)
        services.shutdown_hooks.append(services.subscriptions.shutdown)
        return services

    async def start(self, nats_wait_secs: float = 2.0) -> None:
        """Connect what can be connected now; the rest keeps trying in the background."""
        self.audit.start()
        self.audit.record_config(self.config.model_dump())
        activate(self.tracing)  # before any task starts: the NATS consumers inherit it
        self.live.start()
        self.subscriptions.start()
        if self.config.gateway_auth_bypass:
            log.warning(
                "GATEWAY_AUTH_BYPASS is ON: any non-empty token is accepted as dev@localhost. "
                "Never use this in production."
            )
        if self.signer.secret_was_generated:
            log.warning(
                "GATEWAY_CALLBACK_SECRET not set: using a random per-process key; set it when "
                "running several replicas or callbacks to other replicas will be refused"
            )
        if self.noetl.router.sharded:
            log.info("shard routing on: %d NoETL shards (docs/sharding.md)", self.noetl.router.shard_count)
        await self.nats.start(first_attempt_timeout=nats_wait_secs)

    async def close(self) -> None:
        """Stop background work, drain NATS, close the HTTP pool."""
        await self.subscriptions.close()
        await self.live.close()
        await self.auth.close()
        for bucket in self.buckets:
            await bucket.close()
        await self.nats.close()
        await self.http.close()
        self.audit.close()
        await shutdown_tracing(self.tracing)
