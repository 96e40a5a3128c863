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
  worker's callback always finds it. Per-session slots (``by-session.<token hash>``) live in the
  same bucket: ``gateway/live/slots.py``.

Both keep a local copy of what *this* process wrote, consulted while NATS is away, so a
single process keeps working through an outage (CONTRACT §1).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import orjson
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from gateway.auth.tokens import is_callback_request_id
from gateway.errors import RequestStateUnavailable
from gateway.live.events import is_client_id
from gateway.nats.kv import KvBucket
from gateway.nats.link import NatsLink

log = logging.getLogger("gateway.live")

INDEX_PREFIX = "by-client."
MAX_INDEX = 100  # request ids remembered per client (the newest; older ones expire anyway)
_MAX_LOCAL = 100_000


class LocalTtl:
    """A bounded dict whose entries expire: the in-process copy used during an outage."""

    def __init__(self, ttl: float, bound: int = _MAX_LOCAL) -> None:
        self.ttl = ttl
        self.bound = bound
        self._items: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()

    def get(self, key: str) -> dict[str, Any] | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= time.monotonic():
            del self._items[key]
            return None
        return item[0]

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._items.pop(key, None)
        self._items[key] = (value, time.monotonic() + self.ttl)
        while len(self._items) > self.bound:
            self._items.popitem(last=False)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class ClientRegistry:
    """SSE client ownership and presence, shared across replicas through NATS KV."""

    def __init__(self, link: NatsLink, bucket: str, ttl_secs: float) -> None:
        self._link = link
        self.bucket = KvBucket(link, bucket, ttl_secs, mirror=False)
        self.ttl = float(ttl_secs)
        self._local = LocalTtl(ttl_secs)

    async def get(self, client_id: str) -> dict[str, Any] | None:
        """The client's record: the bucket when NATS is up, else what this process knows."""
        if not is_client_id(client_id):
            return None
        if self._link.connected:
            record = await self.bucket.get(client_id)
            if record is not None:
                # Remembered for an outage: the owner check of a client this replica has seen
                # keeps working (a client id's session never changes while its record lives).
                self._local.put(client_id, record)
                return record
        return self._local.get(client_id) or await self.bucket.get(client_id)

    async def put(self, client_id: str, record: dict[str, Any]) -> None:
        """Write the record (locally at once; to NATS now or when it returns)."""
        self._local.put(client_id, record)
        await self.bucket.put(client_id, record)


class RequestStore:
    """Pending requests by id, plus a per-client index for ``pendingRequests``."""

    def __init__(self, link: NatsLink, bucket: str, ttl_secs: float) -> None:
        self._link = link
        self.bucket = KvBucket(link, bucket, ttl_secs, mirror=False)
        self._local = LocalTtl(ttl_secs)
        # Index updates are read-modify-write: serialise them per client within this process.
        self._index_locks = [asyncio.Lock() for _ in range(64)]
        self._kv: KeyValue | None = None
        link.add_setup_hook(f"cas:{bucket}", self._setup_cas)  # after the bucket's own hook

    async def _setup_cas(self, link: NatsLink) -> None:
        assert link.js is not None
        self._kv = await link.js.key_value(self.bucket.name)

    @property
    def cas(self) -> KeyValue | None:
        """The bucket itself, for compare-and-set writes, while NATS is up."""
        return self._kv if self._link.connected else None

    async def _read(self, key: str, *, sure: bool = False) -> dict[str, Any] | None:
        """``sure``: None only for a request known not to exist; ``RequestStateUnavailable`` when the
        shared store cannot tell now (NATS away or failing over: another replica may have stored it)."""
        kv = self.cas
        if kv is None:
            value = self._local.get(key) or await self.bucket.get(key)
            if value is None and sure and self._link.enabled:
                raise RequestStateUnavailable()
            return value
        queued = self.bucket.get_local(key)  # written while NATS was away, not replayed yet
        if queued is not None:
            return queued
        try:
            entry = await kv.get(key)
            value = orjson.loads(entry.value) if entry.value else None
        except KeyNotFoundError:
            return None
        except Exception as exc:
            # A failed read is not a miss (NATS went away mid-read): a callback answered 404 here
            # would lose its result. What this process wrote is the best answer.
            log.warning("KV %s get failed (%s); using this process's copy", self.bucket.name, type(exc).__name__)
            local = self._local.get(key)
            if local is None and sure:
                raise RequestStateUnavailable() from exc
            return local
        return value if isinstance(value, dict) else None

    async def get(self, request_id: str, *, sure: bool = False) -> dict[str, Any] | None:
        """A pending request, or None (unknown, expired, delivered, or not a request id)."""
        if not is_callback_request_id(request_id):  # ours, or it names nothing
            return None
        record = await self._read(request_id, sure=sure)
        if not isinstance(record, dict) or not record.get("client_id") or not record.get("session"):
            return None
        return record

    async def put(self, request_id: str, record: dict[str, Any]) -> None:
        """Store or update a pending request."""
        self._local.put(request_id, record)
        await self.bucket.put(request_id, record)

    async def complete(self, request_id: str, fields: dict[str, Any]) -> bool:
        """Add ``fields`` to a provisional request; False (nothing written) if it is gone meanwhile.

        Gone means delivered (a fast worker's result can arrive before NoETL's answer to the
        execute call) or expired: writing then would resurrect a request nobody will complete.
        So while NATS is up the write is a compare-and-set, never a plain put.
        """
        for _ in range(5):
            kv = self.cas
            if kv is None or self.bucket.get_local(request_id) is not None:
                # NATS is away, or the request was stored while it was and is not replayed yet.
                current = await self.get(request_id)
                if current is None:
                    return False
                await self.put(request_id, {**current, **fields})
                return True
            try:
                entry = await kv.get(request_id)
                current = orjson.loads(entry.value) if entry.value else None
                if not isinstance(current, dict):
                    return False
                record = {**current, **fields}
                await kv.update(request_id, orjson.dumps(record), last=entry.revision)
                self._local.put(request_id, record)
                return True
            except KeyNotFoundError:
                return False  # delivered meanwhile
            except KeyWrongLastSequenceError:
                continue  # changed meanwhile (e.g. its result was queued): read again
            except Exception as exc:  # e.g. a timeout across a reconnect: try again, as NATS is now
                log.warning("pending request %s not completed (%s)", request_id[:8], type(exc).__name__)
        return False

    async def delete(self, request_id: str) -> None:
        """The result was delivered: forget the request everywhere."""
        self._local.pop(request_id)
        await self.bucket.delete(request_id)

    async def add_to_index(self, client_id: str, request_id: str) -> None:
        """Remember the request under its client (newest last, bounded)."""
        key = INDEX_PREFIX + client_id
        async with self._index_locks[hash(client_id) % len(self._index_locks)]:
            index = await self._index(key)
            ids = [rid for rid in index if rid != request_id][-(MAX_INDEX - 1) :]
            ids.append(request_id)
            record = {"requests": ids}
            self._local.put(key, record)
            await self.bucket.put(key, record)

    async def _index(self, key: str) -> list[str]:
        record = await self._read(key)
        ids = record.get("requests") if isinstance(record, dict) else None
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
