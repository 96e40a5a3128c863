"""OpenTelemetry tracing: off by default and free when off, the standard SDK when on.

The rules live here and nowhere else; the rest of the gateway makes one-line calls:

* ``setup``: on or off from the standard ``OTEL_*`` variables; the SDK is imported only when on.
* ``state``: the active tracer and the caller's ``traceparent``, per task (context variables).
* ``hooks``: what handlers/base.py, the NoETL client, the GraphQL engine, the session cache,
  KV buckets and the event bus call (each a context-variable read when off).
* ``sdk``: the spans themselves (only imported when on). ``names``: span names from templates.

docs/observability.md says what a trace looks like; docs/decisions.md why these are our own
thin spans and not the Tornado/aiohttp auto-instrumentations.
"""

from gateway.tracing.hooks import (
    begin_request,
    end_request,
    graphql_operation,
    kv_operations,
    log_ids,
    nats_consumer,
    nats_publish,
    passthrough_headers,
    playbook_variables,
    session_lookup,
    upstream_middlewares,
)
from gateway.tracing.setup import shutdown_tracing, tracing_from_environ
from gateway.tracing.state import activate

__all__ = [
    "activate",
    "begin_request",
    "end_request",
    "graphql_operation",
    "kv_operations",
    "log_ids",
    "nats_consumer",
    "nats_publish",
    "passthrough_headers",
    "playbook_variables",
    "session_lookup",
    "shutdown_tracing",
    "tracing_from_environ",
    "upstream_middlewares",
]
