"""Which NoETL server shard a call goes to: the one routing rule every NoETL call uses.

NoETL servers that run sharded each own the executions whose id hashes to their index:
``XxHash64(execution_id as 8 little-endian bytes of an i64, seed 0) % shard_count`` — the
same function as the reference gateway's and NoETL server's ``shard_for`` (docs/sharding.md).
A call that names an execution (in its path, or for event posts in its JSON body) goes to the
owning shard; everything else (``execute``, catalog, credentials, …) goes to the default URL.
Without shards there is one URL and nothing here changes a call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import xxhash

SHARD_HASH_SEED = 0  # must equal NoETL server's; changing it re-assigns every execution
MAX_SHARDS = 1024  # the reference's practical maximum (the snowflake machine-id ceiling)
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
# Rust's ``i64::from_str``: an optional sign and ASCII digits, nothing else (no spaces, no "_").
_I64_TEXT = re.compile(r"[+-]?[0-9]+")
# Canonical API paths whose next segment is an execution id.
_ID_IN_PATH = frozenset({"executions", "vars"})
# Canonical API paths whose JSON body names the execution at its top level.
_ID_IN_BODY = frozenset({"events", "events/batch"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def shard_for(execution_id: int, shard_count: int) -> int:
    """The shard that owns ``execution_id`` among ``shard_count`` (0 when there is at most one)."""
    if shard_count <= 1:
        return 0
    digest = xxhash.xxh64_intdigest(execution_id.to_bytes(8, "little", signed=True), seed=SHARD_HASH_SEED)
    return digest % shard_count


def parse_execution_id(text: str) -> int | None:
    """An execution id as NoETL writes it (a decimal i64), or None."""
    if len(text) > 21 or not _I64_TEXT.fullmatch(text):
        return None
    value = int(text)
    return value if _I64_MIN <= value <= _I64_MAX else None


def execution_id_in_path(canonical_path: str) -> int | None:
    """The id of ``executions/{id}…`` and ``vars/{id}…`` (canonical path, no query), else None."""
    parts = canonical_path.split("/", 2)
    if len(parts) < 2 or parts[0] not in _ID_IN_PATH:
        return None
    return parse_execution_id(parts[1])


def carries_id_in_body(canonical_path: str) -> bool:
    """True for the event posts, whose JSON body (not the path) names the execution."""
    return canonical_path in _ID_IN_BODY


def execution_id_in_body(body: Any) -> int | None:
    """The top-level ``execution_id`` of a decoded JSON body (a string or an integer), else None."""
    if not isinstance(body, dict):
        return None
    value = body.get("execution_id")
    if isinstance(value, str):
        return parse_execution_id(value)
    if isinstance(value, int) and not isinstance(value, bool) and _I64_MIN <= value <= _I64_MAX:
        return value
    return None


def execution_id_in_raw_body(raw: bytes) -> int | None:
    """:func:`execution_id_in_body` of raw bytes; a body that is not JSON names no execution."""
    try:
        return execution_id_in_body(orjson.loads(raw)) if raw else None
    except orjson.JSONDecodeError:
        return None


@dataclass(frozen=True, slots=True)
class Route:
    """Where one call goes: the base URL and, for a sharded execution call, its shard."""

    base_url: str
    shard_index: int | None = None

    def server(self, unsharded: str = "NoETL server") -> str:
        """How errors name the server: as they always have, or its shard (never its URL)."""
        return unsharded if self.shard_index is None else f"NoETL shard {self.shard_index}"


class ShardRouter:
    """The default NoETL URL and, when configured, the shard map (indexes 0..n-1, checked by the config)."""

    def __init__(self, default_url: str, shards: Iterable[tuple[int, str]] = ()) -> None:
        self.default = Route(default_url.rstrip("/"))
        by_index = dict(shards)
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError("shard indexes must be 0..n-1, each once")
        self.shards = tuple(Route(by_index[index].rstrip("/"), index) for index in range(len(by_index)))

    @property
    def sharded(self) -> bool:
        """True when a shard map is configured."""
        return bool(self.shards)

    @property
    def shard_count(self) -> int:
        """Shards configured (0 without sharding)."""
        return len(self.shards)

    def for_execution(self, execution_id: int | None) -> Route:
        """The owning shard of an execution; the default when unsharded or without an id."""
        if execution_id is None or not self.shards:
            return self.default
        return self.shards[shard_for(execution_id, len(self.shards))]

    def for_path(self, canonical_path: str) -> Route:
        """Where a call goes when its path alone decides (its body is not looked at)."""
        if not self.shards:
            return self.default
        return self.for_execution(execution_id_in_path(canonical_path))

    def needs_body(self, method: str, canonical_path: str) -> bool:
        """True when the body must be read to route the call (sharded event posts)."""
        return bool(self.shards) and method.upper() in _BODY_METHODS and carries_id_in_body(canonical_path)

    def for_call(self, canonical_path: str, body: Any = None) -> Route:
        """Where a call goes: by the id in its path, else (event posts) by its body's.

        ``body`` is the decoded JSON, or the raw bytes as the client sent them.
        """
        if not self.shards:
            return self.default
        execution_id = execution_id_in_path(canonical_path)
        if execution_id is None and carries_id_in_body(canonical_path):
            if isinstance(body, bytes | bytearray):
                execution_id = execution_id_in_raw_body(bytes(body))
            else:
                execution_id = execution_id_in_body(body)
        return self.for_execution(execution_id)
