"""Settings of the HTTP surface: GraphQL's limits, CORS, and what an anonymous or slow client may cost."""

from __future__ import annotations

from pydantic import Field

from gateway.settings.common import CsvList, SettingsGroup


class GraphqlSettings(SettingsGroup):
    """What one GraphQL document may cost (schema/limits.py) and the parsed-document cache."""

    gateway_graphql_introspection: bool = True
    gateway_graphql_max_query_bytes: int = Field(64 * 1024, gt=0)
    gateway_graphql_max_depth: int = Field(15, gt=0)
    gateway_graphql_max_aliases: int = Field(30, ge=0)
    gateway_graphql_max_tokens: int = Field(10_000, gt=0)
    gateway_graphql_document_cache_size: int = Field(512, ge=0)
    # Persisted queries (docs/graphql.md "Persisted queries"): the shared APQ store, the safelist.
    nats_persisted_query_bucket: str = "persisted_queries"
    gateway_persisted_query_ttl_secs: int = Field(86400, gt=0)
    gateway_graphql_safelist: str | None = None
    # GraphQL subscriptions (graphql-ws on /graphql, graphql-sse on /graphql/stream; docs/graphql.md)
    gateway_max_subscriptions_per_session: int = Field(64, gt=0)
    gateway_max_subscriptions_per_connection: int = Field(32, gt=0)
    gateway_ws_max_message_bytes: int = Field(1024 * 1024, gt=0)
    gateway_ws_ping_interval_secs: float = Field(20.0, ge=0)
    gateway_ws_init_timeout_secs: float = Field(3.0, gt=0)


class CorsSettings(SettingsGroup):
    """Which browser origins may call the gateway (and send cookies)."""

    cors_allowed_origins: CsvList = Field(
        default_factory=lambda: ["http://localhost:8080", "http://localhost:8090", "http://localhost:3000"]
    )
    cors_allow_credentials: bool = True


class LimitSettings(SettingsGroup):
    """Abuse limits: bodies, logins, pending requests, cache-missing session checks, slow clients."""

    gateway_login_rate_per_minute: int = Field(30, ge=0)
    gateway_max_pending_per_session: int = Field(100, gt=0)
    gateway_max_body_bytes: int = Field(1024 * 1024, gt=0)
    # Anonymous cost (issue 13 §4): session checks that miss the cache, per client IP; invalid
    # token hashes remembered; revocation tombstones mirrored per process.
    gateway_validate_miss_per_minute: int = Field(60, ge=0)
    gateway_validate_miss_burst: int = Field(60, gt=0)
    gateway_negative_cache_secs: float = Field(30.0, ge=0)
    gateway_revocation_mirror_max: int = Field(100_000, gt=0)
    # Slow clients: header/idle and body deadlines (the proxy's longer one applies once signed in).
    gateway_idle_connection_timeout_secs: float = Field(75.0, gt=0)
    gateway_body_timeout_secs: float = Field(60.0, gt=0)
    gateway_proxy_body_timeout_secs: float = Field(3600.0, gt=0)
