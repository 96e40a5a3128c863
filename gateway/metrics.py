"""Prometheus metrics of one gateway process (own registry, so tests can build many apps)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

from gateway.log_writer import dropped_total
from gateway.reference_metrics import ReferenceMetrics

MAX_CACHED_SERIES = 1000  # labelled children kept for reuse (bounded: the method label comes from clients)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _LogDropped:
    """``gateway_log_dropped_total``: read from the process-wide log writer at scrape time."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "gateway_log_dropped",
            "Log lines dropped because the background log writer fell 50,000 lines behind",
            value=dropped_total(),
        )


class Metrics:
    """Every metric the gateway exports, created once per process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def counter(name: str, documentation: str, *labels: str) -> Counter:
            return Counter(name, documentation, list(labels), registry=r)

        self.requests = counter(
            "gateway_http_requests_total", "HTTP requests by route and status", "route", "method", "status"
        )
        self.latency = Histogram(
            "gateway_http_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.session_cache = counter(
            "gateway_session_cache_total",
            "Session lookups by outcome (hit, miss, expired, revoked, malformed, over_budget)",
            "outcome",
        )
        self.nats_connected = Gauge("gateway_nats_connected", "1 when NATS (with JetStream) is usable", registry=r)
        self.callbacks = counter(
            "gateway_callbacks_total", "Auth callbacks by outcome (delivered, forwarded, timeout, unknown)", "outcome"
        )
        self.upstream_errors = counter("gateway_upstream_errors_total", "NoETL failures by kind", "kind")
        self.graphql_documents = counter(
            "gateway_graphql_document_cache_total", "GraphQL document cache lookups", "outcome"
        )
        self.graphql_persisted = counter(
            "gateway_graphql_persisted_queries_total", "GraphQL persisted-query lookups by hash or id", "outcome"
        )
        self.proxy_bytes = counter(
            "gateway_proxy_bytes_total",
            "Body bytes relayed by the /noetl proxy (upload: client to NoETL, download: back)",
            "direction",
        )
        # Labelled children resolved once: the proxy counts on every request.
        self.proxy_bytes_up = self.proxy_bytes.labels("upload")
        self.proxy_bytes_down = self.proxy_bytes.labels("download")
        self.sse_clients = Gauge("gateway_sse_clients", "Open SSE streams", registry=r)
        self.graphql_subscriptions = Gauge(
            "gateway_graphql_subscriptions", "Open GraphQL subscriptions (graphql-ws and graphql-sse)", registry=r
        )
        self.policy_denials = counter(
            "gateway_policy_denials_total",
            "Calls refused by the authorization policy, by rule (route policy rule or 'playbook access')",
            "rule",
        )
        self.audit_dropped = counter(
            "gateway_audit_dropped_total", "Audit lines dropped because the writer fell 10,000 lines behind"
        )
        self.sse_events = counter("gateway_sse_events_total", "SSE events sent by method", "method")
        self.reference = ReferenceMetrics(r)
        # Push ingress: the reference gateway's names and labels (subscription = the listener).
        self.ingress_received = counter(
            "noetl_ingress_received_total", "Push/webhook deliveries received, by listener", "subscription"
        )
        self.ingress_rejected = counter(
            "noetl_ingress_rejected_total",
            "Push/webhook deliveries refused (no execution started), by listener and reason",
            "subscription",
            "reason",
        )
        self.ingress_dispatched = counter(
            "noetl_ingress_dispatched_total", "Verified deliveries that started one execution", "subscription"
        )
        # playbook/state frames (issue 15): made per source; NoETL status polls by outcome.
        self.playbook_state_frames = counter(
            "gateway_playbook_state_frames_total",
            "playbook/state frames published to SSE clients, by source (callback, nats, polling)",
            "source",
        )
        self.playbook_state_polls = counter(
            "gateway_playbook_state_polls_total",
            "NoETL execution status polls of the playbook/state fallback, by outcome (answered, error)",
            "outcome",
        )
        # Access/application log lines dropped by the background writer (gateway/log_writer.py).
        r.register(_LogDropped())
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # (counter, histogram)
        self._session_series: dict[str, Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and its latency; labelled children are cached (``labels()`` ≈ 2.5 µs each)."""
        key = (route, method, status)
        series = self._request_series.get(key)
        if series is None:
            series = (self.requests.labels(route, method, str(status)), self.latency.labels(route))
            if len(self._request_series) < MAX_CACHED_SERIES:
                self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def count_session(self, outcome: str) -> None:
        """One session lookup by outcome (a fixed set of names); the child is cached like the request series."""
        child = self._session_series.get(outcome)
        if child is None:
            child = self._session_series[outcome] = self.session_cache.labels(outcome)
        child.inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
