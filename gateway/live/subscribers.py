"""Who subscribes: open subscriptions per session, the connections to end with their session,
and the live client id a graphql-ws connection holds.

* **Limits.** At most ``GATEWAY_MAX_SUBSCRIPTIONS_PER_SESSION`` open subscriptions per session *in
  this process* (a dict of counters; across replicas it would cost a KV compare-and-set per
  subscribe and a lost release per crashed pod, for a limit that exists to bound one process's
  memory). A :class:`Slot` is taken before a watch starts and given back once, however it ends.
* **The session ends.** A transport attaches each connection with the callback that closes it; a
  logout on any replica (the revocation mirror's watch, milliseconds) or the session's expiry
  calls it. The ping of every connection re-checks revocation too (a logout made while NATS was
  away).
* **Client ids.** A graphql-ws connection is a live client of its session, like an ``/events``
  stream: its id is recorded in the client bucket (owner, "connected", refreshed while it is
  open), so ``executePlaybook(clientId)`` accepts it on every replica and results for it are
  published under it; the connection's subscriptions read them (``watch.py``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from prometheus_client import Gauge

from gateway.auth.sessions import Session, SessionCache
from gateway.errors import TooManySubscriptions
from gateway.live.stream import LiveStream, expires_in
from gateway.live.writes import RecordWriter
from gateway.tasks import stop_tasks

log = logging.getLogger("gateway.subscriptions")

REVOKED = "revoked"
EXPIRED = "expired"
SHUTDOWN = "shutdown"

Ender = Callable[[str], None]  # called with REVOKED, EXPIRED or SHUTDOWN


class Slot:
    """One open subscription counted against its session; ``release`` is idempotent."""

    __slots__ = ("_owner", "session")

    def __init__(self, owner: Subscribers, session: str) -> None:
        self._owner: Subscribers | None = owner
        self.session = session

    def release(self) -> None:
        """Give the slot back (once)."""
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._release(self.session)


class Attachment:
    """A connection registered to be ended with its session; ``detach`` when it closes."""

    __slots__ = ("_owner", "_timer", "end", "session")

    def __init__(self, owner: Subscribers, session: str, end: Ender) -> None:
        self._owner: Subscribers | None = owner
        self.session = session
        self.end = end
        self._timer: asyncio.TimerHandle | None = None

    def detach(self) -> None:
        """Stop watching the session for this connection (idempotent)."""
        owner, self._owner = self._owner, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if owner is not None:
            owner._detach(self)


class Subscribers:
    """Per-session subscription counts, session-end callbacks and connection client ids (module doc)."""

    def __init__(
        self, sessions: SessionCache, writes: RecordWriter, limit: int, refresh_secs: float, gauge: Gauge
    ) -> None:
        self._sessions = sessions
        self._gauge = gauge
        self._writes = writes
        self.limit = limit
        self.refresh_secs = refresh_secs
        self._open: dict[str, int] = {}
        self._attached: dict[str, list[Attachment]] = {}  # lists: mostly one each (a set costs 216 bytes)
        self._clients: dict[str, LiveStream] = {}  # client id -> its record's facts (no queue is used)
        self._task: asyncio.Task[None] | None = None
        sessions.revoked.add_listener(self._on_revoked)

    # -- limits ----------------------------------------------------------------------------

    def admit(self, session_hash: str) -> Slot:
        """A slot for one more subscription of the session, or TooManySubscriptions."""
        count = self._open.get(session_hash, 0)
        if count >= self.limit:
            raise TooManySubscriptions(self.limit)
        self._open[session_hash] = count + 1
        self._gauge.inc()
        return Slot(self, session_hash)

    def _release(self, session_hash: str) -> None:
        self._gauge.dec()
        count = self._open.get(session_hash, 0) - 1
        if count > 0:
            self._open[session_hash] = count
        else:
            self._open.pop(session_hash, None)

    def open_of(self, session_hash: str) -> int:
        """Open subscriptions of a session in this process."""
        return self._open.get(session_hash, 0)

    @property
    def open_total(self) -> int:
        """Open subscriptions in this process."""
        return sum(self._open.values())

    # -- the session ends ------------------------------------------------------------------

    def attach(self, session: Session, end: Ender) -> Attachment:
        """Call ``end`` when the session is logged out (any replica) or expires."""
        attachment = Attachment(self, session.token_hash, end)
        self._attached.setdefault(session.token_hash, []).append(attachment)
        remaining = expires_in(session.expires_epoch)
        if remaining is not None:
            attachment._timer = asyncio.get_running_loop().call_later(remaining, self._expire, attachment)
        return attachment

    def is_revoked(self, session_hash: str) -> bool:
        """True once the session was logged out (the revocation mirror, as every route checks it)."""
        return self._sessions.is_revoked(session_hash)

    def _detach(self, attachment: Attachment) -> None:
        peers = self._attached.get(attachment.session)
        if peers is not None and attachment in peers:
            peers.remove(attachment)
            if not peers:
                del self._attached[attachment.session]

    def _expire(self, attachment: Attachment) -> None:
        attachment._timer = None
        attachment.end(EXPIRED)

    def _on_revoked(self, token_hash: str, value: dict[str, Any] | None) -> None:
        if value is None:
            return
        for attachment in list(self._attached.get(token_hash, ())):
            attachment.end(REVOKED)

    def end_all(self, reason: str) -> None:
        """Every attached connection ends (the process stops)."""
        for attachments in list(self._attached.values()):
            for attachment in list(attachments):
                attachment.end(reason)

    @property
    def attached(self) -> int:
        """Connections attached in this process."""
        return sum(len(attachments) for attachments in self._attached.values())

    # -- a connection's own client id ------------------------------------------------------

    def lease_client(self, session: Session) -> str:
        """A fresh client id owned by the session, recorded (write-behind) as connected."""
        client_id = str(uuid.uuid4())
        identity = LiveStream(client_id, session.token_hash, 1)
        identity.held = None
        self._clients[client_id] = identity
        self._writes.note_record(identity, connected=True)
        return client_id

    def return_client(self, client_id: str) -> None:
        """The connection closed: its record says so (results for it wait in the stream)."""
        identity = self._clients.pop(client_id, None)
        if identity is not None:
            self._writes.note_record(identity, connected=False)

    def start(self) -> None:
        """Keep the records of the leased client ids alive (their max age is the event retention)."""
        self._task = asyncio.create_task(self._refresh(), name="subscription-clients")

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_secs)
            for identity in list(self._clients.values()):
                self._writes.note_record(identity, connected=True)

    async def close(self) -> None:
        """Stop refreshing; the records of open connections say "disconnected"."""
        await stop_tasks(self._task)
        for client_id in list(self._clients):
            self.return_client(client_id)
