"""Who owns which SSE client, and which requests wait for a result (CONTRACT §7).

* Clients: KV bucket ``NATS_CLIENT_BUCKET``, key ``client_id``, value ``{"session": <token hash>,
  "created_at", "connected", "seen", "delivered"}``, max age = the event retention. Written only
  by the replica holding the client's stream (on connect, on disconnect, after a result was
  flushed, and as a keep-alive), read by any replica (ownership check, "is it connected?").
* Pending requests: KV bucket ``NATS_REQUEST_BUCKET``, key ``request_id``, value
  ``{"client_id", "session", "execution_id", "playbook_path", "created_at"}`` (+ ``"result"``: the
  position of its published result until that result is delivered), TTL ``NATS_REQUEST_TTL_SECS``.
  A small per-client index (key ``by-client.<client_id>``: the client's latest request ids) lists
  them for ``pendingRequests`` without scanning keys; entries are checked against the bucket
  when read, so a stale index entry is harmless. A request is stored provisionally (no
  ``execution_id`` yet) before its playbook starts and completed when NoETL answers, so a fast
  worker's callback always finds it. Once its result was delivered the record becomes a *trace*
  ``{"session", "delivered_to": <client id>, "execution_id", "delivered_at"}`` for the rest of the
  TTL (one write, like the delete it replaces): no longer a pending request to anyone (``get``),
  but a subscription of the same session can still replay the request's retained events
  (``gateway/live/watch.py``). This process forgets the trace at once (memory). Per-session
  slots (``by-session.<token hash>``) live in the same bucket: ``gateway/live/slots.py``.

Both buckets remember what *this* process wrote or read (``KvBucket(remember=True)``), answered
while NATS is away, so a single process keeps working through an outage (CONTRACT §1). The requests
this process stored itself are also kept apart (``stored_here``): a callback for one of them is
answered without a round trip (``Delivery.find_request``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from gateway.auth.tokens import is_callback_request_id
from gateway.errors import RequestStateUnavailable
from gateway.live.events import is_client_id
from gateway.nats.kv import KvWriteFailed, Versioned
from gateway.nats.kv_ahead import AheadKvBucket
from gateway.nats.link import NatsLink
from gateway.nats.local_copy import LocalCopy
from gateway.tasks import Backoff

log = logging.getLogger("gateway.live")

INDEX_PREFIX = "by-client."
MAX_INDEX = 100  # request ids remembered per client (the newest; older ones expire anyway)
DELIVERED_TO = "delivered_to"  # in a delivered request's trace: its client id
SHARED_WRITE_SECS = 8.0  # longer than the link takes to leave a hung node (2 pings of 2 s)
_MAX_LOCAL = 100_000  # records remembered per store for an outage

Delivered = tuple[str, str, str, str | None]  # request id, session hash, client id, execution id (if known)


class ClientRegistry:
    """SSE client ownership and presence, shared across replicas through NATS KV."""

    def __init__(self, link: NatsLink, bucket: str, ttl_secs: float) -> None:
        self.bucket = AheadKvBucket(link, bucket, ttl_secs, mirror=False, remember=True, max_local=_MAX_LOCAL)
        self.ttl = float(ttl_secs)
        # Client ids this process leased to its graphql-ws connections (subscribers.py) -> session
        # hash, while they are open: known here before the write-behind has written their records.
        self.leased: dict[str, str] = {}

    async def get(self, client_id: str) -> dict[str, Any] | None:
        """The client's record: the bucket when NATS is up, else what this process knows.

        A client id leased here is answered at once (connected, of its session): an
        ``executePlaybook`` right after ``connection_ack`` must not race the write-behind. A record
        this process has seen keeps answering the owner check through an outage (a client id's
        session never changes while its record lives), and also when the bucket lost it (a
        nats-server killed before storing it: the owner writes it again at its next refresh).
        """
        session = self.leased.get(client_id)
        if session is not None:
            return {"session": session, "connected": True, "seen": int(time.time())}
        if not is_client_id(client_id):
            return None
        record = (await self.bucket.read(client_id)).value
        return record if record is not None else self.bucket.get_local(client_id)

    async def put(self, client_id: str, record: dict[str, Any]) -> bool:
        """Write the record (locally at once; to NATS now or when it returns). True: NATS acked it."""
        return await self.bucket.put(client_id, record)

    async def put_ahead(self, client_id: str, record: dict[str, Any]) -> bool:
        """``put`` without its own ack, for a batch whose last ``put`` is acked (gateway/nats/kv_ahead.py)."""
        return await self.bucket.put_ahead(client_id, record)


class RequestStore:
    """Pending requests by id, plus a per-client index for ``pendingRequests``."""

    def __init__(self, link: NatsLink, bucket: str, ttl_secs: float) -> None:
        self._link = link
        self.bucket = AheadKvBucket(link, bucket, ttl_secs, mirror=False, remember=True, max_local=_MAX_LOCAL)
        # Index updates are read-modify-write: serialise them per client within this process.
        self._index_locks = [asyncio.Lock() for _ in range(64)]
        # The requests this process stored (put_shared) as it last wrote them, until deleted or expired.
        self._stored_here = LocalCopy(f"{bucket} (stored here)", float(ttl_secs), _MAX_LOCAL)

    async def get(self, request_id: str, *, sure: bool = False, delivered: bool = False) -> dict[str, Any] | None:
        """A pending request, or None (unknown, expired, delivered, or not a request id);
        ``delivered``: a delivered request's trace too (it has ``DELIVERED_TO``, not ``client_id``)."""
        if not is_callback_request_id(request_id):  # ours, or it names nothing
            return None
        read = await self._read(request_id)
        if sure and read.value is None and read.revision is None and self._link.enabled:
            raise RequestStateUnavailable()  # NATS cannot tell now: another replica may have stored it
        record = _request(read)
        if record is None and delivered and read.value is not None and read.value.get(DELIVERED_TO):
            return read.value
        return record

    async def _read(self, request_id: str) -> Versioned:
        """The bucket's entry; a delivered request's trace read from NATS is not kept here (memory)."""
        read = await self.bucket.read(request_id)
        if read.revision and read.value is not None and read.value.get(DELIVERED_TO):
            self.bucket.forget_local(request_id)
        return read

    def stored_here(self, request_id: str) -> dict[str, Any] | None:
        """The request as this process stored and last changed it; None if another process stored
        it (or it was deleted here, expired, or pushed out of a full copy)."""
        return self._stored_here.get(request_id)

    async def put(self, request_id: str, record: dict[str, Any]) -> None:
        """Store or update a pending request."""
        await self.bucket.put(request_id, record)

    async def put_shared(self, request_id: str, record: dict[str, Any]) -> None:
        """Store a new pending request where every replica sees it before its playbook starts.

        A write that fails while NATS looks connected (a node hung: the link notices within
        seconds), or while a cluster fails over to another node, is tried again for a few seconds
        rather than left queued here: a worker's callback may reach another replica, which would
        answer a definitive 404 and lose the result. With one NATS server gone, this process keeps
        the request (CONTRACT §1) at once, as before.
        """
        self._stored_here.remember(request_id, record)
        deadline = time.monotonic() + SHARED_WRITE_SECS
        backoff = Backoff()
        while not await self.bucket.put(request_id, record):
            failing_over = self._link.connected or self._link.clustered
            if not failing_over or time.monotonic() >= deadline:
                log.warning("pending request %s kept in this process only (NATS not writable)", request_id[:8])
                return
            await backoff.pause()

    async def complete(self, request_id: str, fields: dict[str, Any]) -> bool:
        """Add ``fields`` to a provisional request; False (nothing written) if it is gone meanwhile.

        Gone means delivered (a fast worker's result can arrive before NoETL's answer to the
        execute call) or expired: writing then would resurrect a request nobody will complete.
        So while NATS is up the write is a compare-and-set, never a plain put; a compare-and-set
        the bucket fails (a timeout across a reconnect) is tried again after a new read.
        """
        completed = await self._complete(request_id, fields)
        if completed is None:
            self._stored_here.pop(request_id)  # gone from the bucket: no callback finds it here either
        elif self._stored_here.get(request_id) is not None:
            self._stored_here.remember(request_id, completed)
        return completed is not None

    async def _complete(self, request_id: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """``complete``'s write; the record as written, or None when nothing was."""
        for _ in range(5):
            current = await self._read(request_id)
            if current.revision is None:
                # NATS is away (or the read failed, or the request was stored while NATS was away
                # and is not replayed yet): this process's copy decides; the write follows it to NATS.
                record = _request(current)
                if record is None:
                    return None
                completed = {**record, **fields}
                await self.put(request_id, completed)
                return completed
            pending = _request(current)
            if pending is None:
                return None  # delivered meanwhile (deleted, or its trace)
            completed = {**pending, **fields}
            try:
                if await self.bucket.swap(request_id, completed, current.revision):
                    return completed
            except KvWriteFailed as exc:
                log.warning("pending request %s not completed (%s)", request_id[:8], exc)
            # else changed meanwhile (e.g. its result was queued): read again
        return None

    async def delete(self, request_id: str) -> bool:
        """The result was delivered: forget the request everywhere. True: NATS acked it."""
        self._stored_here.pop(request_id)
        return await self.bucket.delete(request_id)

    async def trace(self, delivered: Delivered) -> bool:
        """The result was delivered: the request becomes its trace (module doc). True: NATS acked it."""
        request_id, trace = self._trace_of(delivered)
        written = await self.bucket.put(request_id, trace)
        if written:  # else queued for NATS: kept here meanwhile, as every write made during an outage
            self.bucket.forget_local(request_id)
        return written

    async def trace_ahead(self, delivered: Delivered) -> bool:
        """``trace`` without its own ack, for a batch whose last ``trace`` is acked."""
        request_id, trace = self._trace_of(delivered)
        handed = await self.bucket.put_ahead(request_id, trace)
        if handed:
            self.bucket.forget_local(request_id)
        return handed

    def _trace_of(self, delivered: Delivered) -> tuple[str, dict[str, Any]]:
        request_id, session, client_id, execution_id = delivered
        stored = self._stored_here.get(request_id)  # the execution id is known here when stored here
        self._stored_here.pop(request_id)
        if execution_id is None and stored is not None:
            execution_id = stored.get("execution_id")
        trace = {
            "session": session,
            DELIVERED_TO: client_id,
            "execution_id": execution_id,
            "delivered_at": int(time.time()),
        }
        return request_id, trace

    async def add_to_index(self, client_id: str, request_id: str) -> None:
        """Remember the request under its client (newest last, bounded)."""
        key = INDEX_PREFIX + client_id
        async with self._index_locks[hash(client_id) % len(self._index_locks)]:
            index = await self._index(key)
            ids = [rid for rid in index if rid != request_id][-(MAX_INDEX - 1) :]
            ids.append(request_id)
            await self.bucket.put(key, {"requests": ids})

    async def _index(self, key: str) -> list[str]:
        record = (await self.bucket.read(key)).value
        ids = record.get("requests") if record is not None else None
        return [str(rid) for rid in ids] if isinstance(ids, list) else []

    async def of_client(self, client_id: str, session: str) -> list[tuple[str, dict[str, Any]]]:
        """The client's requests that still exist and belong to ``session``, oldest first."""
        if not is_client_id(client_id):
            return []
        ids = await self._index(INDEX_PREFIX + client_id)
        records = await asyncio.gather(*(self.get(rid) for rid in ids))
        return [
            (rid, record)
            for rid, record in zip(ids, records, strict=True)
            if record is not None and record.get("client_id") == client_id and record.get("session") == session
        ]


def _request(read: Versioned) -> dict[str, Any] | None:
    """A pending request's record: it names its client and session, or it is none."""
    record = read.value
    if record is None or not record.get("client_id") or not record.get("session"):
        return None
    return record
