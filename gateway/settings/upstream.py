"""Settings of the one upstream, NoETL: its URL (or shards), timeouts, and what the proxy may carry."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from gateway.settings.common import SettingsGroup
from gateway.shard_config import ShardEndpoint, check_shard_indexes, parse_shard_list


class UpstreamSettings(SettingsGroup):
    """NoETL's address and timeouts, the proxy's limits, and the shard map (docs/sharding.md)."""

    noetl_base_url: str = "http://localhost:8082"
    noetl_timeout_secs: float = Field(120.0, gt=0)
    noetl_connect_timeout_secs: float = Field(5.0, gt=0)
    gateway_proxy_timeout_secs: float = Field(300.0, gt=0)
    gateway_proxy_max_body_bytes: int = Field(1024 * 1024 * 1024, ge=0)
    noetl_shards: list[ShardEndpoint] | None = None  # None or empty: one NoETL, no routing
    gateway_shard_body_max_bytes: int = Field(10 * 1024 * 1024, gt=0)

    @field_validator("noetl_base_url")
    @classmethod
    def _base_url_without_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("noetl_shards", mode="before")
    @classmethod
    def _shards_from_text(cls, value: Any) -> Any:
        return parse_shard_list(value)

    @field_validator("noetl_shards")
    @classmethod
    def _shards_cover_every_index(cls, shards: list[ShardEndpoint] | None) -> list[ShardEndpoint] | None:
        return None if shards is None else check_shard_indexes(shards)

    @property
    def noetl_default_url(self) -> str:
        """Where calls that name no execution go: ``NOETL_BASE_URL``, or shard 0's when only shards are set."""
        if self.noetl_shards and "noetl_base_url" not in self.model_fields_set:
            return self.noetl_shards[0].base_url
        return self.noetl_base_url

    @property
    def shard_urls(self) -> list[tuple[int, str]]:
        """``(shard_index, base_url)`` in index order (empty: sharding off)."""
        return [(shard.shard_index, shard.base_url) for shard in self.noetl_shards or ()]
