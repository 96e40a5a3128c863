"""The OpenTelemetry SDK side of tracing, imported only when tracing is on (gateway/tracing/setup.py).

Everything is configured by the SDK's own ``OTEL_*`` variables (exporter endpoint and headers,
sampler, resource, batch processor); the gateway adds ``service.name`` (``noetl-gateway`` unless
``OTEL_SERVICE_NAME`` says otherwise), ``service.version`` and a ``service.instance.id`` per
process. The provider is this object's own, not the global one: tests run several gateways in
one process.

Spans below the request span are made only under a *recording* parent: a background task
makes no orphan root spans, and an unsampled request costs no span objects beyond its own
(its context is still propagated, so a downstream sampler sees the decision).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import get_global_textmap
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from gateway.tracing.names import url_template
from gateway.version import __version__

log = logging.getLogger("gateway.tracing")

DEFAULT_SERVICE_NAME = "noetl-gateway"
_NULL: AbstractContextManager[Span | None] = nullcontext(None)


def _resource() -> Resource:
    """The SDK's resource (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``) plus the gateway's defaults."""
    detected = Resource.create()
    ours: dict[str, Any] = {"service.version": __version__, "service.instance.id": uuid.uuid4().hex}
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        ours[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    user_set = {key: value for key, value in detected.attributes.items() if key not in ours}
    return Resource({**detected.attributes, **ours, **user_set}, detected.schema_url)


def _exporter(protocol: str) -> SpanExporter:
    """OTLP over HTTP/protobuf (the default); gRPC when asked for and the ``grpc`` extra is installed."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def mark_error(span: Span, error: BaseException | str) -> None:
    """An error on a span: its type only (an exception's text may quote a header or a URL)."""
    kind = error if isinstance(error, str) else type(error).__qualname__
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, kind))


class RequestSpan:
    """The server span of one HTTP request; ended once, with what the answer turned out to be."""

    __slots__ = ("ended", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.ended = False

    def end(self, status: int, user_id: str | None) -> None:
        """Status, the user (an id, never a token), error for 5xx; then the span ends."""
        if self.ended:
            return
        self.ended = True
        span = self.span
        if span.is_recording():
            span.set_attribute("http.response.status_code", status)
            if user_id is not None:
                span.set_attribute("user.id", user_id)
            if status >= 500:
                mark_error(span, str(status))
        span.end()


class _Scope:
    """A started span made current for a ``with`` block (errors marked, always ended)."""

    __slots__ = ("_token", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self._token: object = None

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(self, typ: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            mark_error(self.span, exc)
        self.span.end()
        otel_context.detach(self._token)  # type: ignore[arg-type]


class Tracing:
    """One process's tracer provider, its propagator, and the spans the hooks ask for."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("noetl-gateway", __version__)
        self.propagator = get_global_textmap()  # OTEL_PROPAGATORS; W3C tracecontext + baggage by default

    @classmethod
    def from_environ(cls, protocol: str) -> Tracing:
        """A provider with the OTLP exporter behind a batch processor, all from ``OTEL_*``."""
        provider = TracerProvider(resource=_resource())  # sampler: OTEL_TRACES_SAMPLER(_ARG)
        provider.add_span_processor(BatchSpanProcessor(_exporter(protocol)))
        return cls(provider)

    def shutdown(self) -> None:
        """Export what is queued and stop the exporter thread (blocking: run it off the loop)."""
        self.provider.shutdown()

    # -- context -----------------------------------------------------------------------------

    def inject(self, carrier: MutableMapping[str, str], ctx: Context | None = None) -> None:
        """``traceparent`` (and ``tracestate``, baggage) of ``ctx`` or the current context."""
        self.propagator.inject(carrier, context=ctx)

    def current_ids(self) -> tuple[str, str] | None:
        """Hex trace and span id of the current span, for log lines."""
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")

    def _parent(self) -> Span | None:
        """The current span if it records (the rule for every span below the request's)."""
        span = trace.get_current_span()
        return span if span.is_recording() else None

    # -- spans -------------------------------------------------------------------------------

    def server_span(
        self, method: str, route: str, headers: Mapping[str, str], attributes: dict[str, Any]
    ) -> RequestSpan:
        """The request's span, a child of the caller's ``traceparent`` if it sent one; made current."""
        parent = self.propagator.extract(headers)
        attributes["http.request.method"] = method
        attributes["http.route"] = route
        span = self.tracer.start_span(
            f"{method} {route}" if route else method, parent, SpanKind.SERVER, attributes=attributes
        )
        otel_context.attach(trace.set_span_in_context(span, parent))  # the request's own task: no detach
        return RequestSpan(span)

    def child(self, name: str, attributes: dict[str, Any] | None = None) -> AbstractContextManager[Span | None]:
        """A span under the current recording span, current inside the block; nothing without one."""
        if self._parent() is None:
            return _NULL
        return _Scope(self.tracer.start_span(name, attributes=attributes))

    def graphql(
        self, operation_type: str, operation_name: str | None, query: str
    ) -> AbstractContextManager[Span | None]:
        """One GraphQL operation: type, name and the document's hash (never the variables)."""
        if self._parent() is None:
            return _NULL
        attributes: dict[str, Any] = {
            "graphql.operation.type": operation_type,
            "graphql.document.hash": hashlib.sha256(query.encode("utf-8", "replace")).hexdigest(),
        }
        if operation_name:
            attributes["graphql.operation.name"] = operation_name
        name = f"{operation_type} {operation_name}" if operation_name else operation_type
        return _Scope(self.tracer.start_span(name, attributes=attributes))

    @contextmanager
    def publish(self, destination: str, headers: MutableMapping[str, str]) -> Iterator[None]:
        """A producer span whose context travels in the message headers (else the current one does)."""
        if self._parent() is None:
            self.inject(headers)  # an unsampled trace still continues on the other side
            yield
            return
        span = self.tracer.start_span(
            f"publish {destination}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "send",
                "messaging.destination.name": destination,
            },
        )
        with _Scope(span):
            self.inject(headers)
            yield

    def consume(self, destination: str, headers: Mapping[str, str], **attributes: Any) -> AbstractContextManager[Any]:
        """A consumer span continuing the producer's trace from the message headers."""
        parent = self.propagator.extract(headers)
        if not trace.get_current_span(parent).get_span_context().is_valid:
            return _NULL
        attributes["messaging.system"] = "nats"
        attributes["messaging.operation.type"] = "process"
        attributes["messaging.destination.name"] = destination
        span = self.tracer.start_span(f"process {destination}", parent, SpanKind.CONSUMER, attributes=attributes)
        return _Scope(span)

    async def client_call(self, req: Any, send: Callable[[Any], Awaitable[Any]]) -> Any:
        """One upstream HTTP call (aiohttp client middleware): a client span, its ``traceparent`` sent."""
        if self._parent() is None:
            self.inject(req.headers)  # unsampled (or no trace at all: then nothing is added)
            return await send(req)
        url = req.url
        span = self.tracer.start_span(
            f"{req.method} {url_template(url.path)}",
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": req.method,
                "server.address": url.host or "",
                "server.port": url.port or 0,
                "url.template": url_template(url.path),
            },
        )
        self.inject(req.headers, trace.set_span_in_context(span))
        try:
            response = await send(req)
        except BaseException as exc:
            mark_error(span, exc)
            span.end()
            raise
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            mark_error(span, str(response.status))
        span.end()
        return response
