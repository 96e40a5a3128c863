"""An OTLP/HTTP trace receiver for tests and benches: decodes the real protobuf (``opentelemetry-proto``).

It runs in a thread of its own (the gateway's exporter posts from its own thread, and a test's
event loop must never have to serve it). ``spans`` are what arrived, decoded; ``tree`` renders
one trace the way docs/observability.md shows it. As a process (``python -m
tests.support.otlp_receiver PORT``) it only counts, for the tracing bench.
"""

from __future__ import annotations

import gzip
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support.threaded_http import ThreadedHttpServer

_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {item.key: _value(item.value) for item in value.kvlist_value.values}
    return getattr(value, which) if which else None


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector saw it (ids in lower-case hex, like ``traceparent``)."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status: int  # 0 unset, 1 ok, 2 error
    start_ns: int
    end_ns: int

    @property
    def service_instance(self) -> str:
        return str(self.resource.get("service.instance.id", ""))


def decode(body: bytes) -> list[ReceivedSpan]:
    """The spans of one ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=_KINDS.get(span.kind, str(span.kind)),
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                        resource=resource,
                        status=span.status.code,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                    )
                )
    return spans


@dataclass
class _Store:
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    count_only: bool = False
    counted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    store: _Store

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        spans = decode(body)
        with self.store.lock:
            self.store.requests += 1
            self.store.counted += len(spans)
            if not self.store.count_only:
                self.store.spans.extend(spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:
        """``GET /count``: spans received so far (the bench reads it)."""
        text = str(self.store.counted).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, format: str, *args: Any) -> None:
        return


class OtlpReceiver(ThreadedHttpServer):
    """``OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url``; ``receiver.spans`` are the decoded spans."""

    def __init__(self, port: int = 0, count_only: bool = False) -> None:
        self._store = _Store(count_only=count_only)
        super().__init__(type("Handler", (_Handler,), {"store": self._store}), port=port, name="otlp-receiver")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._store.lock:
            return list(self._store.spans)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        """Every span of one trace, in start order."""
        return sorted((s for s in self.spans if s.trace_id == trace_id), key=lambda s: s.start_ns)


def tree(spans: list[ReceivedSpan], label: Any = None) -> str:
    """One trace as indented text: ``name [kind] (instance) attributes``, children under parents."""
    by_parent: dict[str, list[ReceivedSpan]] = {}
    ids = {span.span_id for span in spans}
    for span in sorted(spans, key=lambda s: s.start_ns):
        by_parent.setdefault(span.parent_id if span.parent_id in ids else "", []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in by_parent.get(parent, []):
            millis = (span.end_ns - span.start_ns) / 1e6
            extra = f" {label(span)}" if label is not None else ""
            lines.append(f"{'  ' * depth}{span.name} [{span.kind}] {millis:.1f} ms{extra}")
            walk(span.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)


if __name__ == "__main__":
    receiver = OtlpReceiver(int(sys.argv[1]), count_only=True).start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        receiver.stop()
