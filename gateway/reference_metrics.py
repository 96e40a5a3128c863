"""The reference gateway's metric names (``noetl/gateway`` v3.12), so its dashboards and alerts work unchanged.

Our own ``gateway_*`` series stay; these count the same decisions under the names operators of
the reference already graph. Every labelled series is created at 0 with its whole, closed label
set, so "nothing happened" reads as zeros rather than as a missing series (which looks the same
as a broken exporter).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

LOGIN_OUTCOMES = ("succeeded", "callback_failed", "not_authenticated")
SESSION_CHECK_OUTCOMES = ("ok", "missing_token", "invalid_or_expired", "validation_error", "bypass")
AUTHZ_OUTCOMES = ("allowed", "denied", "backend_error")
SESSION_CACHE_STAGES = ("after_login", "after_api_validate")
EVENT_FEED_RECONNECT_REASONS = ("ended", "error")


class ReferenceMetrics:
    """``noetl_gateway_*`` series: build info, auth bypass, and the auth decisions by outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.build_info = Gauge(
            "noetl_gateway_build_info", "Always 1; the version label names the running build", ["version"], registry=r
        )
        self.auth_bypass = Gauge(
            "noetl_gateway_auth_bypass_enabled",
            "1 when GATEWAY_AUTH_BYPASS is on and every session token is accepted",
            ["mode"],
            registry=r,
        )
        self.login = _pinned(r, "noetl_gateway_login_total", "Login attempts by outcome", "outcome", LOGIN_OUTCOMES)
        self.session_check = _pinned(
            r,
            "noetl_gateway_session_check_total",
            "Per-request session checks by outcome",
            "outcome",
            SESSION_CHECK_OUTCOMES,
        )
        # Resolved once: every signed-in request counts one (``labels()`` costs ≈ 2.5 µs).
        self.session_checked = {outcome: self.session_check.labels(outcome) for outcome in SESSION_CHECK_OUTCOMES}
        self.authz = _pinned(
            r, "noetl_gateway_authz_total", "Authorization checks by outcome", "outcome", AUTHZ_OUTCOMES
        )
        self.session_cache_failed = _pinned(
            r,
            "noetl_gateway_session_cache_failed_total",
            "Sessions validated but not cached, by stage",
            "stage",
            SESSION_CACHE_STAGES,
        )
        self.event_feed_reconnect = _pinned(
            r,
            "noetl_gateway_event_feed_reconnect_total",
            "Execution lifecycle feed reconnects, by reason",
            "reason",
            EVENT_FEED_RECONNECT_REASONS,
        )
        self.auth_cancel_failed = Counter(
            "noetl_gateway_auth_cancel_failed_total",
            "Auth playbook executions the gateway gave up on and could not cancel in NoETL",
            registry=r,
        )
        self.callback_undelivered = Counter(
            "noetl_gateway_callback_undelivered_total",
            "Callbacks whose receiver was already gone: the caller got nothing",
            registry=r,
        )

    def describe_build(self, version: str, auth_bypass: bool) -> None:
        """Set the two gauges that describe the process rather than count anything."""
        self.build_info.labels(version).set(1)
        self.auth_bypass.labels("bypass" if auth_bypass else "enforced").set(1 if auth_bypass else 0)


def _pinned(registry: CollectorRegistry, name: str, doc: str, label: str, values: tuple[str, ...]) -> Counter:
    counter = Counter(name, doc, [label], registry=registry)
    for value in values:
        counter.labels(value)
    return counter
