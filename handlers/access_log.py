"""The access log (level by status, URI scrubbed of tokens) and the per-request metrics."""

from __future__ import annotations

import logging

from tornado.web import RequestHandler

from gateway.logging import fast_path_for, scrub

access_log = logging.getLogger("gateway.access")
_LINE = "%d %s %s %.1fms"
_METRIC_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def log_request(handler: RequestHandler) -> None:
    """Access log (level by status, URI scrubbed of tokens) and request metrics."""
    request = handler.request
    status = handler.get_status()
    duration = request.request_time()
    route = getattr(handler, "route_name", "other")
    services = handler.application.settings.get("services")
    method = request.method or ""
    if services is not None:
        # The label set stays bounded: a client inventing methods must not create metric series.
        services.metrics.observe_request(route, method if method in _METRIC_METHODS else "other", status, duration)
    if route == "health" and status < 400:
        return
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if not access_log.isEnabledFor(level):
        return
    uri = request.uri or ""
    if "?" in uri:  # tokens travel in query strings; the log filter scrubs the whole line again
        uri = scrub(uri)
    request_id = getattr(handler, "request_id", "-")
    duration_ms = duration * 1000.0
    background = fast_path_for(access_log)
    if background is not None:  # the same line, built and formatted on the log writer's thread
        background.queue_line(level, access_log.name, _LINE, (status, request.method, uri, duration_ms), request_id)
        return
    access_log.log(level, _LINE, status, request.method, uri, duration_ms, extra={"request_id": request_id})
