"""Tracing on (OTLP to a receiver in the test, the real protobuf decoded): one playbook run is one trace,
from the browser's request through NoETL and a callback on another replica to the SSE event."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from io import StringIO
from typing import Any

import aiohttp
import pytest

from gateway.logging import JsonFormatter, TokenScrubber
from tests.conftest import GatewayFactory, Standin
from tests.standin.playbooks import PROGRESS_RESULT
from tests.support.gateway import GatewayInstance, call
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan, tree
from tests.support.signin import bearer
from tests.support.sse_client import SseStream, init_of, open_stream
from tests.support.waiting import wait_for

EXECUTE = """
mutation Run($name: String!, $variables: JSON, $clientId: String) {
  executePlaybook(name: $name, variables: $variables, clientId: $clientId) { executionId requestId }
}
"""


@pytest.fixture
def otlp(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    """A receiver, and the standard OTEL_* variables pointing the gateways started by the test at it."""
    receiver = OtlpReceiver().start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # ms: spans arrive while the test waits
    for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    yield receiver
    receiver.stop()


def root_traceparent() -> tuple[str, str, str]:
    """A caller's trace (a browser with its own tracing): trace id, parent span id, header."""
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent, f"00-{trace_id}-{parent}-01"


def instance(gw: GatewayInstance) -> str:
    assert gw.services is not None and gw.services.tracing is not None
    return str(gw.services.tracing.provider.resource.attributes["service.instance.id"])


def one(spans: list[ReceivedSpan], name: str, where: str | None = None) -> ReceivedSpan:
    found = [s for s in spans if s.name == name and (where is None or s.service_instance == where)]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def span_of(traceparent: str) -> str:
    return traceparent.split("-")[2]


def every_attribute_value(spans: list[ReceivedSpan]) -> str:
    return json.dumps([[s.name, s.attributes, s.resource] for s in spans], default=str)


@pytest.mark.gen_test(timeout=60)
async def test_one_playbook_run_is_one_trace_across_replicas(
    otlp: OtlpReceiver, make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    b = await make_gateway()
    a = await make_gateway(GATEWAY_PUBLIC_URL=b.url)  # A's playbooks call back to replica B
    trace_id, browser_span, traceparent = root_traceparent()
    header = {"traceparent": traceparent}

    status, body, _ = await call(client, "POST", f"{a.url}/api/auth/login", {"auth0_token": "good"}, headers=header)
    assert status == 200, body
    token = body["session_token"]
    stream: SseStream = await open_stream(client, a.url, token, via="bearer", headers=header)
    client_id = init_of(stream)["clientId"]
    variables = {"name": PROGRESS_RESULT, "variables": {"q": 1}, "clientId": client_id}
    status, body, _ = await call(
        client, "POST", f"{a.url}/graphql", {"query": EXECUTE, "variables": variables}, headers=bearer(token, **header)
    )
    assert status == 200 and "errors" not in body, body
    execution_id = body["data"]["executePlaybook"]["executionId"]
    await stream.wait_for(lambda e: e.event == "playbook/result", timeout=10)
    await stream.close()

    def arrived() -> bool:
        names = {(s.name, s.service_instance) for s in otlp.trace(trace_id)}
        wanted = {("process gateway.events", instance(a)), ("GET /events", instance(a))}
        # B's callback spans end (and are exported) after their children: wait for them too.
        wanted |= {("POST /api/internal/callback/async", instance(b)), ("POST /api/internal/progress", instance(b))}
        return wanted <= names

    await wait_for(arrived, timeout=10)
    spans = otlp.trace(trace_id)
    rendered = tree(spans, lambda s: "A" if s.service_instance == instance(a) else "B")
    print(rendered)  # what docs/observability.md shows

    # The browser's span is the parent of every request it made to A.
    login = one(spans, "POST /api/auth/login", instance(a))
    graphql = one(spans, "POST /graphql", instance(a))
    events = one(spans, "GET /events", instance(a))
    assert login.parent_id == graphql.parent_id == events.parent_id == browser_span
    assert login.kind == graphql.kind == "server"
    # Login: the playbook's callback landed on B, a child of A's login span (traceparent in its variables).
    callbacks = [s for s in spans if s.name == "POST /api/internal/callback"]
    assert {s.service_instance for s in callbacks} == {instance(b)}
    assert login.span_id in {s.parent_id for s in callbacks}
    # The GraphQL operation under its request; NoETL's execute under the operation, with our span's traceparent.
    operation = one(spans, "mutation Run")
    assert operation.parent_id == graphql.span_id
    assert operation.attributes["graphql.operation.type"] == "mutation"
    assert len(operation.attributes["graphql.document.hash"]) == 64
    assert "graphql.variables" not in operation.attributes
    starts = [s for s in spans if s.name == "POST /api/execute" and s.parent_id == operation.span_id]
    assert len(starts) == 2  # the check-access playbook, then the playbook itself
    sent = [c.headers.get("Traceparent") for c in standin.state.calls_to("/api/execute")]
    assert f"00-{trace_id}-{starts[-1].span_id}-01" in sent
    # The playbook continues the trace: its variables carry it, its callback (on B) is a child of the operation.
    workload = standin.state.executions[execution_id].variables
    assert span_of(workload["traceparent"]) == operation.span_id
    result_callback = one(spans, "POST /api/internal/callback/async", instance(b))
    progress = one(spans, "POST /api/internal/progress", instance(b))
    assert result_callback.parent_id == progress.parent_id == operation.span_id
    # B publishes to JetStream with the context in the headers; A (holding the stream) continues it.
    publish = next(s for s in spans if s.name == "publish gateway.events" and s.parent_id == result_callback.span_id)
    assert publish.kind == "producer"
    delivered = [s for s in spans if s.name == "process gateway.events" and s.parent_id == publish.span_id]
    assert instance(a) in {s.service_instance for s in delivered}
    assert all(s.kind == "consumer" for s in delivered)
    # Who and which request, never a token.
    assert graphql.attributes["user.id"] == "42" and graphql.attributes["http.response.status_code"] == 200
    assert graphql.attributes["gateway.request_id"]
    assert graphql.resource["service.name"] == "noetl-gateway"
    text = every_attribute_value(spans)
    assert token not in text and "sess_" not in text and "eyJ" not in text and "Bearer" not in text


@pytest.mark.gen_test(timeout=30)
async def test_span_names_are_route_templates_and_noetl_sees_the_client_span(
    otlp: OtlpReceiver, make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway()
    trace_id, _, traceparent = root_traceparent()
    status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "good"})
    assert status == 200
    headers = bearer(body["session_token"], traceparent=traceparent)
    status, _, _ = await call(client, "GET", f"{gw.url}/noetl/executions/123987?secret_q=xyz", headers=headers)
    assert status < 500

    await wait_for(lambda: any(s.name == "GET /noetl/{path}" for s in otlp.trace(trace_id)), timeout=10)
    spans = otlp.trace(trace_id)
    server = one(spans, "GET /noetl/{path}")
    client_span = one(spans, "GET /api/executions/{id}")
    assert client_span.parent_id == server.span_id and client_span.kind == "client"
    forwarded = standin.state.calls_to("/api/executions/123987")[-1].headers["Traceparent"]
    assert forwarded == f"00-{trace_id}-{client_span.span_id}-01"  # the client's own traceparent was replaced
    text = every_attribute_value(spans)
    assert "123987" not in text and "xyz" not in text
    session = one(spans, "session lookup")
    assert session.parent_id == server.span_id and session.attributes["gateway.session.outcome"] == "hit"


@pytest.mark.gen_test(timeout=30)
async def test_json_log_lines_carry_the_trace(
    otlp: OtlpReceiver, make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway()
    trace_id, _, traceparent = root_traceparent()
    out = StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(TokenScrubber())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gateway")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        status, _, _ = await call(
            client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "good"}, headers={"traceparent": traceparent}
        )
        assert status == 200
        untraced, _, _ = await call(client, "GET", f"{gw.url}/health")
        assert untraced == 200
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines: list[dict[str, Any]] = [json.loads(line) for line in out.getvalue().splitlines()]
    started = [line for line in lines if "started (execution" in line["msg"]]
    assert started and started[0]["trace_id"] == trace_id
    await wait_for(lambda: any(s.name == "POST /api/auth/login" for s in otlp.trace(trace_id)), timeout=10)
    assert started[0]["span_id"] in {s.span_id for s in otlp.trace(trace_id)}
    assert all("trace_id" not in line for line in lines if "/health" in line["msg"])  # probes are not traced


@pytest.mark.gen_test(timeout=30)
async def test_unsampled_requests_export_nothing_but_still_propagate(
    otlp: OtlpReceiver,
    make_gateway: GatewayFactory,
    standin: Standin,
    client: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    gw = await make_gateway()
    status, _, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "good"})
    assert status == 200
    assert gw.services is not None and gw.services.tracing is not None
    assert gw.services.tracing.provider.force_flush(5000)
    assert otlp.spans == []
    sent = standin.state.calls_to("/api/execute")[-1]
    trace_id = sent.headers["Traceparent"].split("-")[1]
    assert int(sent.headers["Traceparent"].split("-")[3], 16) & 1 == 0  # the decision travels: not sampled
    assert sent.body["workload"]["traceparent"].split("-")[1] == trace_id
