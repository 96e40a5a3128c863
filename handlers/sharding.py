"""``GET /sharding/preview``: which shard owns an execution id — the operators' drift check.

The reference gateway's twin of NoETL server's ``/api/runtime/shard-info``: pure arithmetic,
no session, no I/O, the same answer fields, so one script can ask both and compare
``shard_index``. It never shows a shard's URL; without ``shard_count`` it uses this gateway's
own count (docs/sharding.md says why that is public).
"""

from __future__ import annotations

from typing import Any

from gateway.noetl.shards import MAX_SHARDS, SHARD_HASH_SEED, parse_execution_id, shard_for
from handlers.base import BaseHandler
from handlers.errors import ApiError


class ShardPreviewHandler(BaseHandler):
    """``?execution_id=…[&shard_count=N]`` → ``{execution_id, shard_count, shard_index, source, …}``."""

    route_name = "sharding"

    def get(self) -> None:
        """Compute the owning shard; a bad argument is a 400 naming it."""
        raw_id = self.get_query_argument("execution_id", None)
        if raw_id is None:
            raise ApiError(400, "execution_id is required")
        execution_id = parse_execution_id(raw_id)
        if execution_id is None:
            raise ApiError(400, "execution_id must be a decimal 64-bit integer")
        shard_count = self._shard_count()
        self.write_json(
            {
                "execution_id": execution_id,
                "shard_count": shard_count,
                "shard_index": shard_for(execution_id, shard_count),
                "source": "noetl-gateway",
                "hash_function": "twox_hash::XxHash64",
                "seed": SHARD_HASH_SEED,
            }
        )

    def _shard_count(self) -> int:
        raw = self.get_query_argument("shard_count", None)
        if raw is None:
            return max(1, self.services.noetl.router.shard_count)  # this gateway's map; 1 when off
        if not raw.isdigit() or len(raw) > 5:
            raise ApiError(400, "shard_count must be a whole number")
        count = int(raw)
        if not 1 <= count <= MAX_SHARDS:
            raise ApiError(400, f"shard_count must be between 1 and {MAX_SHARDS}")
        return count


default_handlers: list[tuple[str, Any]] = [(r"/sharding/preview", ShardPreviewHandler)]
