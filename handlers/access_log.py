"""The access log (level by status, URI scrubbed of tokens) and the per-request metrics."""

from __future__ import annotations

import logging

from tornado.web import RequestHandler

from gateway.logging import scrub

access_log = logging.getLogger("gateway.access")
_METRIC_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def log_request(handler: RequestHandler) -> None:
    """Access log (level by status, URI scrubbed of tokens) and request metrics."""
    status = handler.get_status()
    duration = handler.request.request_time()
    route = getattr(handler, "route_name", "other")
    services = handler.settings.get("services")
    if services is not None:
        method = handler.request.method or ""
        # The label set stays bounded: a client inventing methods must not create metric series.
        services.metrics.observe_request(route, method if method in _METRIC_METHODS else "other", status, duration)
    if route == "health" and status < 400:
        return
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if not access_log.isEnabledFor(level):
        return
    uri = handler.request.uri or ""
    if "?" in uri:  # tokens travel in query strings; the log filter scrubs the whole line again
        uri = scrub(uri)
    access_log.log(
        level,
        "%d %s %s %.1fms",
        status,
        handler.request.method,
        uri,
        duration * 1000.0,
        extra={"request_id": getattr(handler, "request_id", "-")},
    )
