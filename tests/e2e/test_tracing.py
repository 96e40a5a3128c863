"""Against the real NoETL: the traceparent NoETL receives (header, playbook workload) is the gateway's span."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import aiohttp
import pytest

from tests.conftest import GatewayFactory
from tests.e2e import catalog
from tests.e2e.conftest import Deployed, Login
from tests.e2e.stack import http_json
from tests.support.gateway import call
from tests.support.noetl_front import NoetlFront
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.waiting import wait_for

EXECUTE = (
    'mutation Start($name: String!) { executePlaybook(name: $name, variables: {message: "traced"}) { executionId } }'
)


@pytest.fixture
def otlp(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    yield receiver
    receiver.stop()


@pytest.mark.gen_test(timeout=120)
async def test_noetl_receives_the_gateways_span(
    otlp: OtlpReceiver, deployed: Deployed, alice: Login, make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    front = NoetlFront(deployed.noetl_url)  # records what NoETL is sent, passes everything on
    try:
        gw = await make_gateway(NOETL_BASE_URL=front.url)
        trace_id = secrets.token_hex(16)
        caller = {**alice.headers, "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        status, _, _ = await call(client, "GET", f"{gw.url}/noetl/health", headers=caller)
        assert status == 200
        status, body, _ = await call(
            client, "POST", f"{gw.url}/graphql", {"query": EXECUTE, "variables": {"name": catalog.ECHO}}, headers=caller
        )
        assert status == 200 and "errors" not in body, body
        execution_id = body["data"]["executePlaybook"]["executionId"]

        names = {"/api/health": "GET /api/health", "/api/execute": "POST /api/execute"}
        sent = [(path, h["Traceparent"]) for _, path, h in front.seen if path in names and "Traceparent" in h]
        assert {path for path, _ in sent} == set(names), front.seen  # check-access's execute and the playbook's
        assert {value.split("-")[1] for _, value in sent} == {trace_id}
        expected = {value.split("-")[2]: names[path] for path, value in sent}

        def client_spans() -> dict[str, str]:
            return {s.span_id: s.name for s in otlp.trace(trace_id) if s.kind == "client"}

        # Each traceparent NoETL received names the gateway's client span of that very call.
        await wait_for(lambda: all(client_spans().get(span) == name for span, name in expected.items()), timeout=20)
        # The playbook's workload carries the traceparent of the GraphQL operation that started it.
        await wait_for(lambda: any(s.name == "mutation Start" for s in otlp.trace(trace_id)), timeout=20)
        operation = next(s for s in otlp.trace(trace_id) if s.name == "mutation Start")

        def workload_has_it() -> bool:
            status, answer = http_json("GET", f"{deployed.noetl_url}/api/executions/{execution_id}")
            return status == 200 and f"00-{trace_id}-{operation.span_id}-01" in json.dumps(answer)

        await wait_for(workload_has_it, timeout=30, interval=0.5)
    finally:
        await front.close()
