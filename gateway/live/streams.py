"""This process's SSE streams, and who holds a client id: the registry, its timers, ownership.

Streams live in process memory (by client id and by session); the ownership and presence of a
client id on *any* replica come from its record in the client bucket (``store.ClientRegistry``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from gateway.auth.sessions import Session, SessionCache
from gateway.live.events import LiveEvent, Pos, is_client_id
from gateway.live.revocation import ending_revoked
from gateway.live.store import ClientRegistry
from gateway.live.stream import EXPIRED, REVOKED, SHUTDOWN, LiveStream, expires_in
from gateway.metrics import Metrics
from gateway.nats.link import NatsLink

log = logging.getLogger("gateway.live")

SHUTDOWN_GRACE_SECS = 5.0
HEARTBEAT_SPREAD = 1.0  # fraction of the interval over which first pings are spread (all of it)


@dataclass
class Opened:
    """A stream just opened: what the init message says and what to replay before going live."""

    stream: LiveStream
    client_id: str
    start: Pos
    pending: list[dict[str, Any]] = field(default_factory=list)
    replay_after: Pos | None = None  # None: nothing to replay
    results_only: bool = False  # client_id without Last-Event-ID: undelivered results only


class StreamRegistry:
    """Open streams of this process, their ping/expiry timers, and the ownership of client ids."""

    def __init__(
        self,
        link: NatsLink,
        metrics: Metrics,
        sessions: SessionCache,
        clients: ClientRegistry,
        *,
        heartbeat_secs: float,
        retention_secs: float,
    ) -> None:
        self._link, self._metrics = link, metrics
        self._sessions, self._clients = sessions, clients
        self._heartbeat_secs = heartbeat_secs
        # How often the client records of the streams held here are rewritten (their max age).
        self.refresh_secs = max(1.0, min(float(retention_secs) / 3.0, 300.0))
        self._streams: dict[str, set[LiveStream]] = {}
        self._by_session: dict[str, set[LiveStream]] = {}
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        sessions.revoked.add_listener(ending_revoked(self._by_session))
        # GraphQL subscriptions (gateway/live/watch.py) see every event handed out here too.
        self.tap: Callable[[LiveEvent], None] | None = None

    # -- what is open here -----------------------------------------------------------------

    def of_session(self, session_hash: str) -> int:
        """Open streams of a session in this process (the per-session limit)."""
        return len(self._by_session.get(session_hash, ()))

    def of_client(self, client_id: str) -> Collection[LiveStream]:
        """Open streams of a client id in this process."""
        return self._streams.get(client_id, ())

    @property
    def count(self) -> int:
        """Open streams in this process."""
        return sum(len(streams) for streams in self._streams.values())

    def is_held(self, client_id: str) -> bool:
        """True if this process has an open stream for the client."""
        return bool(self._streams.get(client_id))

    def held_for(self, client_id: str, session_hash: str) -> bool:
        """True if this process has a stream of that session for the client."""
        return any(s.session == session_hash for s in self._streams.get(client_id, ()))

    def one_per_client(self) -> list[LiveStream]:
        """A stream of every client held here (to refresh the client records)."""
        return [stream for streams in list(self._streams.values()) for stream in list(streams)[:1]]

    # -- who owns a client id (any replica) ------------------------------------------------

    async def owns(self, session_hash: str, client_id: str) -> bool:
        """True if ``client_id`` is a stream client of that session (on any replica)."""
        if not is_client_id(client_id):
            return False
        if self.held_for(client_id, session_hash):
            return True
        record = await self._clients.get(client_id)
        return record is not None and record.get("session") == session_hash

    async def is_connected(self, record: dict[str, Any]) -> bool:
        """True if the request's client has a stream open (here, or on a replica that refreshes it)."""
        client_id, session = str(record["client_id"]), str(record["session"])
        if self.held_for(client_id, session):
            return True
        if not self._link.connected:
            return False
        owner = await self._clients.get(client_id)
        if owner is None or owner.get("session") != session or not owner.get("connected"):
            return False
        seen = owner.get("seen")
        # A replica that died cannot say goodbye: trust "connected" only while it is refreshed.
        return isinstance(seen, int | float) and time.time() - seen < 2 * self.refresh_secs + 30

    # -- registering -----------------------------------------------------------------------

    def add(self, stream: LiveStream, session: Session) -> None:
        """Register a stream and start its ping and session-expiry timers."""
        self._streams.setdefault(stream.client_id, set()).add(stream)
        self._by_session.setdefault(stream.session, set()).add(stream)
        self._all_closed.clear()
        self._metrics.sse_clients.inc()
        loop = asyncio.get_running_loop()
        # The first ping comes at a random point of the first interval: streams accepted in one
        # burst (every client reconnecting after a restart) would otherwise be due together,
        # every interval, and their writes would hold up everything else. Spread over 5% of the
        # interval, 19.5k streams opened in 7 s still gave 3.5× the mean pings in the busiest
        # second (bench/streams_bench.py); over all of it they fall evenly. The period stays exact.
        first = self._heartbeat_secs * (1.0 - HEARTBEAT_SPREAD * random.random())
        stream.set_timer("ping", loop.call_later(first, self._ping, stream))
        remaining = expires_in(session.expires_epoch)
        if remaining is not None:
            stream.set_timer("expiry", loop.call_later(remaining, stream.end, EXPIRED))

    def _ping(self, stream: LiveStream) -> None:
        if stream.reason is not None:
            return
        if self._sessions.is_revoked(stream.session):  # also covers a logout while NATS was away
            stream.end(REVOKED)
            return
        stream.request_ping()
        loop = asyncio.get_running_loop()
        stream.set_timer("ping", loop.call_later(self._heartbeat_secs, self._ping, stream))

    def remove(self, stream: LiveStream) -> bool:
        """Unregister and cancel its timers; True when it was the client's last stream here."""
        stream.close()
        last = False
        peers = self._streams.get(stream.client_id)
        if peers is not None and stream in peers:
            peers.discard(stream)
            if not peers:
                del self._streams[stream.client_id]
            session_streams = self._by_session.get(stream.session)
            if session_streams is not None:
                session_streams.discard(stream)
                if not session_streams:
                    del self._by_session[stream.session]
            self._metrics.sse_clients.dec()
            last = not self._streams.get(stream.client_id)
        if not self._streams:
            self._all_closed.set()
        return last

    def dispatch(self, event: LiveEvent) -> None:
        """Offer an event to the client's streams held here (and to the subscriptions' tap)."""
        for stream in self._streams.get(event.client_id, ()):
            stream.offer(event)
        if self.tap is not None:
            self.tap(event)

    # -- ending ----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Every stream gets a retry hint and a clean close (bounded wait)."""
        for streams in list(self._streams.values()):
            for stream in list(streams):
                stream.end(SHUTDOWN)
        try:
            await asyncio.wait_for(self._all_closed.wait(), SHUTDOWN_GRACE_SECS)
        except TimeoutError:
            log.warning("%d event stream(s) did not close in time", self.count)
