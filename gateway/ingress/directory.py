"""Which listener a delivery is for: the operator's file first, then NoETL (when it serves them).

NoETL is asked ``GET /api/internal/ingress/{listener}`` with ``NOETL_INTERNAL_API_TOKEN`` only for
names the file does not have, and only when the token is set. Answers — "no such listener"
included — are kept ``GATEWAY_INGRESS_CONFIG_TTL_SECS``; one lookup per name is in flight at a
time; and lookups have a budget, because the names come from anonymous URLs: a flood of made-up
names costs NoETL at most ``LOOKUPS_PER_MINUTE`` calls. When NoETL cannot answer, a listener it
served before keeps working on its last known config.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from urllib.parse import quote

from gateway.auth.rate_limit import RateLimiter
from gateway.config import GatewayConfig
from gateway.ingress.listeners import Listener, listener_from_noetl
from gateway.ingress.rejections import IngressRejected
from gateway.ingress.spec import LISTENER_NAME
from gateway.noetl.client import NoetlClient, UpstreamFailure

log = logging.getLogger("gateway.ingress")

LOOKUPS_PER_MINUTE = 600
MAX_CACHED_NAMES = 10_000
MAX_ANSWER_BYTES = 64 * 1024
LOOKUP_TIMEOUT_SECS = 10.0


class ListenerDirectory:
    """``find(name)``: the listener, or None for a name nobody configured."""

    def __init__(self, config: GatewayConfig, noetl: NoetlClient, file_listeners: dict[str, Listener]) -> None:
        self.config = config
        self._noetl = noetl
        self._file = file_listeners
        self._token = config.noetl_internal_api_token
        self._ttl = config.gateway_ingress_config_ttl_secs
        self._cache: OrderedDict[str, tuple[float, Listener | None]] = OrderedDict()
        self._lookups: dict[str, asyncio.Task[Listener | None]] = {}
        self._budget = RateLimiter(LOOKUPS_PER_MINUTE)
        self.noetl_lookups = 0

    @property
    def file_listeners(self) -> dict[str, Listener]:
        return self._file

    async def find(self, name: str) -> Listener | None:
        """The listener called ``name``; IngressRejected (502/503) only when NoETL must be asked and cannot be."""
        if not LISTENER_NAME.fullmatch(name):
            return None
        listener = self._file.get(name)
        if listener is not None or not self._token:
            return listener
        cached = self._cache.get(name)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        task = self._lookups.get(name)
        if task is None:
            task = asyncio.ensure_future(self._lookup(name, cached[1] if cached else None))
            self._lookups[name] = task
            task.add_done_callback(lambda _: self._lookups.pop(name, None))
        return await asyncio.shield(task)

    async def _lookup(self, name: str, stale: Listener | None) -> Listener | None:
        wait = self._budget.acquire("noetl")
        if wait > 0:
            if stale is not None:
                return stale
            raise IngressRejected(
                503, "lookup_budget", "Too many deliveries to unknown listeners; retry later", retry_after=wait
            )
        self.noetl_lookups += 1
        assert self._token is not None
        try:
            status, answer = await self._noetl.request_json(
                "GET",
                f"internal/ingress/{quote(name, safe='')}",
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=LOOKUP_TIMEOUT_SECS,
                max_bytes=MAX_ANSWER_BYTES,
            )
        except UpstreamFailure as exc:
            return self._unanswered(name, stale, type(exc).__name__)
        if status == 404:  # no such listener — or a NoETL (4.26) without the route: the file is all there is
            self._remember(name, None)
            return None
        if status != 200:
            return self._unanswered(name, stale, f"status {status}")
        try:
            listener = listener_from_noetl(name, answer, self.config)
        except ValueError as exc:
            log.warning("ingress listener %s: NoETL's config is not usable: %s", name, exc)
            return self._unanswered(name, stale, "unusable config")
        self._remember(name, listener)
        return listener

    def _unanswered(self, name: str, stale: Listener | None, why: str) -> Listener | None:
        if stale is not None:
            log.warning("ingress listener %s: NoETL config lookup failed (%s); using the last one", name, why)
            return stale
        log.warning("ingress listener %s: NoETL config lookup failed (%s)", name, why)
        raise IngressRejected(502, "config_error", "The listener's configuration cannot be read right now")

    def _remember(self, name: str, listener: Listener | None) -> None:
        if self._ttl <= 0:
            return
        self._cache[name] = (time.monotonic() + self._ttl, listener)
        self._cache.move_to_end(name)
        while len(self._cache) > MAX_CACHED_NAMES:
            self._cache.popitem(last=False)
