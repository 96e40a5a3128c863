"""Which pending requests wait on an execution: ``execution_id`` → request ids, on every replica.

A NoETL event names an execution, not a client. Key ``by-execution.<execution_id>`` in the requests
bucket (``NATS_REQUEST_BUCKET``, so it expires with the requests, ``NATS_REQUEST_TTL_SECS``) holds
``{"requests": [request_id, …]}``, written once (a KV create) by the replica that recorded the request
when NoETL answered the execute call, while NoETL's event mirror is read (``playbook_state.py``);
any replica reads it. Entries are checked against the pending requests
when read, so one left behind by a delivered request is harmless, and a frame goes only to a
request that still waits: never to a client that did not ask for that execution.

Practically one request waits on an execution (each ``executePlaybook`` starts its own), so the
read-modify-write is serialised in this process only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.live.lifecycle import execution_id_text
from gateway.live.store import RequestStore
from gateway.nats.kv import KvBucket
from gateway.nats.link import NatsLink

PREFIX = "by-execution."
MAX_PER_EXECUTION = 16

Pending = list[tuple[str, dict[str, Any]]]


class ExecutionIndex:
    """Request ids by execution id, in the requests bucket (see module doc)."""

    def __init__(self, requests: RequestStore, link: NatsLink) -> None:
        self._requests = requests
        # The requests' bucket, seen without remembering: an index entry is read from NATS, and this
        # process does not keep one per execution for the requests' whole lifetime.
        self._bucket = KvBucket(link, requests.bucket.name, requests.bucket.ttl, mirror=False)
        self._locks = [asyncio.Lock() for _ in range(16)]

    async def add(self, execution_id: str, request_id: str) -> None:
        """Remember that ``request_id`` waits on ``execution_id`` (an id that is not NoETL's is ignored)."""
        key = _key(execution_id)
        if key is None:
            return
        async with self._locks[hash(key) % len(self._locks)]:
            if await self._bucket.create(key, {"requests": [request_id]}):
                return  # the usual case, one request per execution: one write, no read
            ids = [rid for rid in await self._ids(key) if rid != request_id][-(MAX_PER_EXECUTION - 1) :]
            ids.append(request_id)
            await self._bucket.put(key, {"requests": ids})

    async def request_ids(self, execution_id: str) -> list[str]:
        """The request ids remembered for the execution (maybe delivered since)."""
        key = _key(execution_id)
        return [] if key is None else await self._ids(key)

    async def waiting(self, request_ids: list[str]) -> Pending:
        """Those requests that still wait: stored, and their result not produced yet."""
        records = await asyncio.gather(*(self._requests.get(rid) for rid in request_ids))
        return [
            (rid, record)
            for rid, record in zip(request_ids, records, strict=True)
            if record is not None and not record.get("result")
        ]

    async def close(self) -> None:
        """Stop replaying index writes made while NATS was away (they expire with the requests)."""
        await self._bucket.close()

    async def _ids(self, key: str) -> list[str]:
        record = await self._bucket.get(key)
        ids = record.get("requests") if isinstance(record, dict) else None
        return [str(rid) for rid in ids] if isinstance(ids, list) else []


def _key(execution_id: str) -> str | None:
    text = execution_id_text(execution_id)
    return None if text is None else PREFIX + text
