"""The one NATS connection of a gateway process, which may come and go.

NATS is optional (CONTRACT §1): the gateway starts without it, keeps trying in the
background, and every component that needs JetStream registers a *setup hook* that is
run each time the connection is (re)established — buckets are ensured, watches and
subscriptions restarted — so a restarted nats-server is picked up without a restart here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from gateway.config import GatewayConfig

log = logging.getLogger("gateway.nats")

SetupHook = Callable[["NatsLink"], Awaitable[None]]
StateListener = Callable[[bool], None]


class NatsLink:
    """Owns the NATS client; reconnects forever; runs setup hooks on every (re)connect."""

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self._hooks: list[tuple[str, SetupHook]] = []
        self._listeners: list[StateListener] = []
        self._connect_task: asyncio.Task[None] | None = None
        self._setup_task: asyncio.Task[None] | None = None
        self._ready = False
        self._closing = False
        self.ever_connected = asyncio.Event()
        self.last_error: str | None = None
        # Buckets/streams NATS would not give NATS_REPLICAS replicas: name -> why (gateway/nats/replicas.py).
        self.replica_shortfalls: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        """False when NATS_URL is empty: the operator chose the in-process mode."""
        return self._config.nats_enabled

    @property
    def replicas(self) -> int:
        """``NATS_REPLICAS``: how many copies every bucket and stream should have."""
        return self._config.nats_replicas

    @property
    def connected(self) -> bool:
        """True once connected *and* every setup hook has run for this connection."""
        return self._ready and self.nc is not None and self.nc.is_connected

    def add_setup_hook(self, name: str, hook: SetupHook) -> None:
        """Run ``hook`` now (if connected) and after every reconnect."""
        self._hooks.append((name, hook))

    def add_state_listener(self, listener: StateListener) -> None:
        """Call ``listener(connected)`` whenever the usable state flips."""
        self._listeners.append(listener)

    async def start(self, first_attempt_timeout: float = 2.0) -> None:
        """Begin connecting in the background; wait briefly for the first attempt."""
        if not self.enabled:
            log.warning("NATS disabled (NATS_URL empty): in-process state, single replica only")
            return
        self._connect_task = asyncio.create_task(self._connect_forever(), name="nats-connect")
        try:
            await asyncio.wait_for(asyncio.shield(self.ever_connected.wait()), first_attempt_timeout)
        except TimeoutError:
            log.warning(
                "NATS not reachable at start (%s); running degraded with in-process state "
                "(single replica only) and retrying in the background",
                self.last_error or "no answer",
            )

    async def _connect_forever(self) -> None:
        delay = 0.25
        while not self._closing:
            try:
                options: dict[str, Any] = {
                    "servers": self._config.nats_servers,
                    "connect_timeout": self._config.nats_connect_timeout_secs,
                    "allow_reconnect": True,
                    "max_reconnect_attempts": -1,
                    "reconnect_time_wait": 0.5,
                    # A hung node (partitioned, frozen) keeps the socket open: unanswered pings are what
                    # notice it. 2 s x 2 moves to another node of a cluster within ~4-6 s.
                    "ping_interval": 2,
                    "max_outstanding_pings": 2,
                    "disconnected_cb": self._on_disconnected,
                    "reconnected_cb": self._on_reconnected,
                    "error_cb": self._on_error,
                    "closed_cb": self._on_closed,
                    "name": "noetl-gateway",
                }
                if self._config.nats_username:
                    options["user"] = self._config.nats_username
                    options["password"] = self._config.nats_password or ""
                self.nc = await nats.connect(**options)
                self.js = self.nc.jetstream(timeout=5.0)
                log.info("NATS connected")
                await self._run_setup()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = type(exc).__name__
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _run_setup(self) -> None:
        """Run every hook; retry until all succeed (JetStream may lag the connection)."""
        delay = 0.1
        while not self._closing and self.nc is not None and self.nc.is_connected:
            try:
                for name, hook in self._hooks:
                    await hook(self)
                    log.debug("NATS setup hook %s done", name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("NATS setup failed (%s); retrying", self.last_error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._set_ready(True)
            self.ever_connected.set()
            return

    def _set_ready(self, ready: bool) -> None:
        if ready == self._ready:
            return
        self._ready = ready
        for listener in self._listeners:
            try:
                listener(ready)
            except Exception:
                log.exception("NATS state listener failed")

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("NATS disconnected; in-process fallback until it returns")
        self._set_ready(False)

    async def _on_reconnected(self) -> None:
        log.info("NATS reconnected; re-running setup")
        if self._setup_task is not None and not self._setup_task.done():
            self._setup_task.cancel()
        if self.ever_connected.is_set() and self.clustered:
            # Failover to another node of a cluster: the buckets and the stream are where they were
            # (replicated), so reads and writes go to NATS at once, each falling back on its own if
            # JetStream is still electing. Waiting for the set-up instead (watches and the consumer
            # restart only once a meta-leader is elected, seconds) would put this replica in-process
            # meanwhile: its writes queued where no other replica sees them.
            self._set_ready(True)
        self._setup_task = asyncio.create_task(self._run_setup(), name="nats-setup")

    @property
    def clustered(self) -> bool:
        """More than one server known (configured or learnt from the cluster): losing one is a
        failover of seconds, not an outage."""
        return self.nc is not None and len(self.nc.servers) > 1

    async def _on_error(self, exc: Exception) -> None:
        self.last_error = type(exc).__name__
        log.debug("NATS error: %s", type(exc).__name__)

    async def _on_closed(self) -> None:
        self._set_ready(False)

    async def close(self) -> None:
        """Drain (not close) so in-flight publishes and subscriptions finish."""
        self._closing = True
        for task in (self._connect_task, self._setup_task):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.drain(), 5.0)
            except Exception:
                try:
                    await self.nc.close()
                except Exception:
                    pass
        self._set_ready(False)
