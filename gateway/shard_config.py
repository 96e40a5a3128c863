"""The shard map's settings (docs/sharding.md): what ``NOETL_SHARDS`` and ``[[noetl.shards]]`` may hold.

Checked once at start, so a bad map stops the process with one line instead of sending
executions to a server that does not own them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from gateway.noetl.shards import MAX_SHARDS


class ShardEndpoint(BaseModel):
    """One NoETL server shard, spelt as the reference spells it: ``{shard_index, base_url}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shard_index: int = Field(ge=0, lt=MAX_SHARDS)
    base_url: str

    @field_validator("base_url")
    @classmethod
    def _plain_http_url(cls, value: str) -> str:
        """http(s)://host[:port][/path]; no credentials, query or fragment (they would reach logs)."""
        text = value.strip()
        try:
            parts = urlsplit(text)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            valid = False
        if not valid:
            raise PydanticCustomError("shard_url", "base_url must be an http(s) URL with a host")
        if parts.username or parts.password or parts.query or parts.fragment:
            # Its own error type: load_config never echoes a value that may hold a password.
            raise PydanticCustomError("secret_in_url", "base_url must not carry credentials, a query or a fragment")
        return text.rstrip("/")


def parse_shard_list(value: Any) -> Any:
    """``NOETL_SHARDS`` text, ``0=http://noetl-0:8082,1=http://noetl-1:8082`` (commas or spaces), as a list."""
    if not isinstance(value, str):
        return value
    shards = []
    for entry in value.replace(",", " ").split():
        index, sep, url = entry.partition("=")
        if not sep or not index.isdigit():
            raise PydanticCustomError("shard_entry", "each entry must be INDEX=URL, got {entry}", {"entry": entry})
        shards.append({"shard_index": int(index), "base_url": url})
    return shards


def check_shard_indexes(shards: list[ShardEndpoint]) -> list[ShardEndpoint]:
    """Indexes 0..n-1, each once (a hole or a duplicate would mis-route); returned in index order."""
    if len(shards) > MAX_SHARDS:
        raise PydanticCustomError("shard_count", "at most {n} shards", {"n": MAX_SHARDS})
    seen: set[int] = set()
    for shard in shards:
        if shard.shard_index in seen:
            raise PydanticCustomError("shard_duplicate", "duplicate shard_index {i}", {"i": shard.shard_index})
        if shard.shard_index >= len(shards):
            raise PydanticCustomError(
                "shard_range",
                "shard_index {i} out of range: with {n} shard(s) the indexes are 0..{last}",
                {"i": shard.shard_index, "n": len(shards), "last": len(shards) - 1},
            )
        seen.add(shard.shard_index)
    return sorted(shards, key=lambda shard: shard.shard_index)


def lift_noetl_table(values: dict[str, Any]) -> str | None:
    """The reference's ``[[noetl.shards]]`` (YAML ``noetl: {shards: [...]}``) becomes ``noetl_shards``.

    Changes ``values`` in place; returns what is wrong with the table, if anything.
    """
    if "noetl" not in values:
        return None
    section = values.pop("noetl")
    if not isinstance(section, dict) or set(section) != {"shards"}:
        return "the noetl table may hold only shards (set the rest as NOETL_BASE_URL, NOETL_TIMEOUT_SECS, …)"
    if "noetl_shards" in values:
        return "shards are given twice (noetl.shards and noetl_shards)"
    values["noetl_shards"] = section["shards"]
    return None
