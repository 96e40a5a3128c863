"""The one-line calls the rest of the gateway makes; each costs a context-variable read when off.

Stdlib only: the SDK (gateway/tracing/sdk.py) is reached through the active ``Tracing``, which
exists only when tracing is on. With tracing off, the caller's ``traceparent`` is still passed
on unchanged to every NoETL call and into playbook variables.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from gateway.tracing.state import TRACEPARENT, TRACESTATE, active, caller_context, passthrough

T = TypeVar("T")
_NULL: AbstractContextManager[Any] = nullcontext()
# Probes and scrapes: a span every few seconds per pod would bury the traces people look for.
UNTRACED_ROUTES = frozenset({"/health", "/health/ready", "/metrics"})


# -- HTTP requests (handlers/base.py) -------------------------------------------------------------


def begin_request(
    tracing: Any, headers: Mapping[str, str], describe: Callable[[], tuple[str, str, dict[str, Any]]]
) -> Any:
    """Start the request's trace context: its server span (on), or the caller's context kept (off).

    ``describe()`` gives (method, route template, attributes); it is called only when tracing is on.
    """
    active.set(tracing)
    if tracing is None:
        parent = _header(headers, TRACEPARENT)
        if parent is not None:  # a fresh request task starts without one: nothing to reset
            passthrough.set(caller_context(parent, _header(headers, TRACESTATE)))
        return None
    method, route, attributes = describe()
    if route in UNTRACED_ROUTES:
        return None
    return tracing.server_span(method, route, headers, attributes)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """One header's value; Tornado's ``get_list`` answers a miss without raising (``get`` raises
    and catches a KeyError: most requests carry no ``traceparent``)."""
    get_list = getattr(headers, "get_list", None)
    if get_list is None:
        return headers.get(name)
    values = get_list(name)
    return ",".join(values) if values else None


def end_request(span: Any, status: int, user_id: str | None) -> None:
    """End the request's server span (idempotent; nothing when there is none)."""
    if span is not None:
        span.end(status, user_id)


def log_ids() -> tuple[str, str] | None:
    """Trace and span id of the current span, for log lines (None when off or outside a span)."""
    tracing = active.get()
    return None if tracing is None else tracing.current_ids()


# -- NoETL (gateway/noetl/client.py) -------------------------------------------------------------


async def _trace_upstream_call(req: Any, send: Callable[[Any], Awaitable[Any]]) -> Any:
    """aiohttp client middleware (tracing on): a NoETL call made while a request is traced is a client span.

    A caller's ``traceparent`` is kept for passing on only when tracing is off (``begin_request``),
    and then the sessions have no middleware: nothing to copy here."""
    tracing = active.get()
    if tracing is not None:
        return await tracing.client_call(req, send)
    return await send(req)


def upstream_middlewares(traced: bool) -> tuple[Callable[[Any, Callable[[Any], Awaitable[Any]]], Awaitable[Any]], ...]:
    """The client middlewares of the NoETL sessions: the tracing one when tracing is on, none when off.

    Off, aiohttp without a middleware is ≈ 10 µs cheaper per call (its middleware chain, measured on
    the proxied GET by bench/tracing_bench.py); the caller's ``traceparent`` then reaches NoETL
    through :func:`passthrough_headers` (``NoetlClient``) or, on the proxy, as a header it forwards.
    """
    return (_trace_upstream_call,) if traced else ()


def passthrough_headers() -> dict[str, str]:
    """The caller's validated ``traceparent`` (and ``tracestate``) for a NoETL call; empty when the
    caller sent none or tracing is on (the middleware then sends the client span's)."""
    caller = passthrough.get()
    if caller is None:
        return {}
    return {TRACEPARENT: caller[0], TRACESTATE: caller[1]} if caller[1] else {TRACEPARENT: caller[0]}


def playbook_variables(variables: dict[str, Any] | None) -> dict[str, Any] | None:
    """Playbook variables plus ``traceparent`` (and ``tracestate``), so a playbook's callbacks continue the trace."""
    tracing = active.get()
    if tracing is not None:
        carrier: dict[str, str] = {}
        tracing.inject(carrier)
        extra = {key: carrier[key] for key in (TRACEPARENT, TRACESTATE) if key in carrier}
    else:
        extra = passthrough_headers()  # the caller's, as NoETL calls carry it
    return {**(variables or {}), **extra} if extra else variables


# -- spans inside the gateway ---------------------------------------------------------------------


def graphql_operation(operation_type: str, operation_name: str | None, query: str) -> AbstractContextManager[Any]:
    """``with`` block of one GraphQL operation (schema/engine.py)."""
    tracing = active.get()
    return _NULL if tracing is None else tracing.graphql(operation_type, operation_name, query)


def nats_publish(destination: str, headers: dict[str, str]) -> AbstractContextManager[Any]:
    """``with`` block of a JetStream publish: the trace context goes into ``headers``."""
    tracing = active.get()
    return _NULL if tracing is None else tracing.publish(destination, headers)


def nats_consumer(handle: Callable[[Any, Any], Awaitable[T]]) -> Callable[[Any, Any], Awaitable[T]]:
    """Decorator of a NATS message callback ``(self, msg)``: continues the publisher's trace.

    The destination is the subject without its last token (``gateway.events.{client_id}``).
    """

    @functools.wraps(handle)
    async def traced(owner: Any, msg: Any) -> T:
        tracing = active.get()
        headers = getattr(msg, "headers", None)
        if tracing is None or not headers or TRACEPARENT not in headers:
            return await handle(owner, msg)
        destination = str(getattr(msg, "subject", "") or "").rpartition(".")[0]
        with tracing.consume(destination, headers):
            return await handle(owner, msg)

    return traced


def kv_operation(operation: str) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    """Decorator of a ``KvBucket`` method: a span per KV operation made inside a traced request."""

    def decorate(call: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(call)
        async def traced(bucket: Any, *args: Any, **kwargs: Any) -> T:
            tracing = active.get()
            if tracing is None:
                return await call(bucket, *args, **kwargs)
            name = str(getattr(bucket, "name", "?"))
            with tracing.child(f"kv {operation} {name}", {"nats.kv.bucket": name, "nats.kv.operation": operation}):
                return await call(bucket, *args, **kwargs)

        return traced

    return decorate


C = TypeVar("C", bound=type)


def kv_operations(*operations: str) -> Callable[[C], C]:
    """Class decorator of ``KvBucket``: ``kv_operation`` on each named method (the class stays as written)."""

    def decorate(cls: C) -> C:
        for operation in operations:
            setattr(cls, operation, kv_operation(operation)(getattr(cls, operation)))
        return cls

    return decorate


def session_lookup(call: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Decorator of the session-cache lookup: a span with its outcome (hit or miss, never the token)."""

    @functools.wraps(call)
    async def traced(cache: Any, *args: Any, **kwargs: Any) -> T:
        tracing = active.get()
        if tracing is None:
            return await call(cache, *args, **kwargs)
        with tracing.child("session lookup") as span:
            found = await call(cache, *args, **kwargs)
            if span is not None:
                span.set_attribute("gateway.session.outcome", "miss" if found is None else "hit")
            return found

    return traced
