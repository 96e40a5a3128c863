"""Who subscribes: open subscriptions per session, the connections to end with their session,
and the live client id a graphql-ws connection holds.

* **Limits.** At most ``GATEWAY_MAX_SUBSCRIPTIONS_PER_SESSION`` open subscriptions per session, on
  every replica together: the pending-request slots' mechanism (``slots.SessionSlots``: one KV
  record per session, compare-and-set) under its own keys, ``subscriptions-by-session.<hash>`` in
  the requests bucket. A :class:`Slot` is taken before a watch starts and given back once, however
  it ends (complete, unsubscribe, the connection closed): here at once, in the bucket just after.
  This process stamps its open slots every ``slot_refresh_secs`` (30 s, or a third of the event
  retention when shorter); an entry counts ``SLOT_HOLD_REFRESHES`` refreshes after its last stamp,
  so a replica that dies frees its sessions' places within that. A session already at the limit in
  this process is refused without a round trip. Fail-open, like the pending slots: while NATS is
  away the count is this process's alone, and a read or write that fails while NATS is up does not
  count the subscription.
* **The session ends.** A transport attaches each connection with the callback that closes it; a
  logout on any replica (the revocation mirror's watch, milliseconds) or the session's expiry
  calls it. The ping of every connection re-checks revocation too (a logout made while NATS was
  away).
* **Client ids.** A graphql-ws connection is a live client of its session, like an ``/events``
  stream: its id is recorded in the client bucket (owner, "connected", refreshed while it is
  open), so ``executePlaybook(clientId)`` accepts it on every replica and results for it are
  published under it; the connection's subscriptions read them (``watch.py``). This process
  knows it at once (``ClientRegistry.leased``): no owner check here waits for the write-behind.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import Callable

from prometheus_client import Gauge

from gateway.auth.sessions import Session, SessionCache
from gateway.errors import TooManySubscriptions
from gateway.live.revocation import ending_revoked
from gateway.live.slots import SessionSlots
from gateway.live.store import ClientRegistry
from gateway.live.stream import EXPIRED, LiveStream, expires_in
from gateway.live.writes import RecordWriter
from gateway.tasks import stop_tasks

log = logging.getLogger("gateway.subscriptions")


SLOTS_PREFIX = "subscriptions-by-session."
SLOT_REFRESH_SECS = 30.0
SLOT_HOLD_REFRESHES = 3  # an entry outlives two missed refreshes (a slow KV write, a NATS hiccup)
_REFRESH_BATCH = 64

Ender = Callable[[str], None]  # called with REVOKED, EXPIRED or SHUTDOWN


class Slot:
    """One open subscription counted against its session; ``release`` is idempotent."""

    __slots__ = ("_owner", "id", "session")

    def __init__(self, owner: Subscribers, session: str, slot_id: str) -> None:
        self._owner: Subscribers | None = owner
        self.session = session
        self.id = slot_id

    def release(self) -> None:
        """Give the slot back (once)."""
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._release(self)


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
        self,
        sessions: SessionCache,
        writes: RecordWriter,
        clients: ClientRegistry,
        limit: int,
        refresh_secs: float,
        gauge: Gauge,
        pending_slots: SessionSlots,
    ) -> None:
        self._sessions = sessions
        self._gauge = gauge
        self._writes = writes
        self._registry = clients  # its ``leased``: this process's graphql-ws client ids, known at once
        self.limit = limit
        self.refresh_secs = refresh_secs
        self.slot_refresh_secs = min(SLOT_REFRESH_SECS, refresh_secs)
        self.slots = pending_slots.sibling(
            SLOTS_PREFIX, limit, hold_secs=SLOT_HOLD_REFRESHES * self.slot_refresh_secs, confirm=False
        )
        self._held: dict[str, list[str]] = {}  # session -> ids of its slots open in this process
        self._slot_ids = itertools.count()
        self._process = uuid.uuid4().hex[:8]  # slot ids are unique across replicas
        self._releases: set[asyncio.Task[None]] = set()
        self._closed = False
        self._attached: dict[str, list[Attachment]] = {}  # lists: mostly one each (a set costs 216 bytes)
        self._clients: dict[str, LiveStream] = {}  # client id -> its record's facts (no queue is used)
        self._tasks: tuple[asyncio.Task[None], ...] = ()
        sessions.revoked.add_listener(ending_revoked(self._attached))

    # -- limits ----------------------------------------------------------------------------

    async def admit(self, session_hash: str) -> Slot:
        """A slot for one more subscription of the session (on any replica), or TooManySubscriptions."""
        held = self._held.get(session_hash)
        if held is not None and len(held) >= self.limit:
            raise TooManySubscriptions(self.limit)
        slot_id = f"{self._process}.{next(self._slot_ids)}"
        if not await self.slots.reserve(session_hash, slot_id):
            raise TooManySubscriptions(self.limit)
        self._held.setdefault(session_hash, []).append(slot_id)
        self._gauge.inc()
        return Slot(self, session_hash, slot_id)

    def _release(self, slot: Slot) -> None:
        self._gauge.dec()
        held = self._held.get(slot.session)
        if held is not None and slot.id in held:
            held.remove(slot.id)
            if not held:
                del self._held[slot.session]
        if self._closed:  # a straggler after close(): its entry expires unstamped
            return
        task = asyncio.create_task(self.slots.release(slot.session, slot.id), name="subscription-slot-release")
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    def open_of(self, session_hash: str) -> int:
        """Open subscriptions of a session in this process."""
        return len(self._held.get(session_hash, ()))

    @property
    def open_total(self) -> int:
        """Open subscriptions in this process."""
        return sum(len(held) for held in self._held.values())

    async def _stamp_slots(self) -> None:
        """Every ``slot_refresh_secs``: this process's open slots are stamped alive in the bucket."""
        while True:
            await asyncio.sleep(self.slot_refresh_secs)
            sessions = list(self._held.items())
            for start in range(0, len(sessions), _REFRESH_BATCH):
                batch = sessions[start : start + _REFRESH_BATCH]
                await asyncio.gather(*(self.slots.refresh(session, held) for session, held in batch))

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
        self._registry.leased[client_id] = session.token_hash  # owned at once, here (before the write)
        self._writes.note_record(identity, connected=True)
        return client_id

    def return_client(self, client_id: str) -> None:
        """The connection closed: its record says so (results for it wait in the stream)."""
        identity = self._clients.pop(client_id, None)
        self._registry.leased.pop(client_id, None)
        if identity is not None:
            self._writes.note_record(identity, connected=False)

    def start(self) -> None:
        """Keep the records of the leased client ids, and the slots of open subscriptions, alive."""
        self._tasks = (
            asyncio.create_task(self._refresh(), name="subscription-clients"),
            asyncio.create_task(self._stamp_slots(), name="subscription-slots"),
        )

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_secs)
            for identity in list(self._clients.values()):
                self._writes.note_record(identity, connected=True)

    async def close(self) -> None:
        """Stop refreshing; the records of open connections say "disconnected"; releases still on
        their way reach the bucket (a lost one expires with its entry)."""
        await stop_tasks(*self._tasks)
        self._closed = True
        for client_id in list(self._clients):
            self.return_client(client_id)
        if self._releases:
            await asyncio.wait(set(self._releases), timeout=5)
        await self.slots.close()
