"""Tracing off (the default): no SDK, yet the caller's traceparent reaches NoETL unchanged."""

from __future__ import annotations

import os
import subprocess
import sys

import aiohttp
import pytest

from gateway.tracing.names import route_template, url_template
from gateway.tracing.setup import tracing_wanted
from gateway.tracing.state import caller_context, valid_traceparent
from tests.conftest import GatewayFactory, Standin
from tests.standin.playbooks import NOOP
from tests.support.gateway import call
from tests.support.signin import bearer

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
EXECUTE = "mutation($name: String!) { executePlaybook(name: $name, variables: {q: 1}) { executionId } }"


@pytest.fixture
def no_otel(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)


@pytest.mark.gen_test(timeout=30)
async def test_caller_traceparent_reaches_every_noetl_call_unchanged(
    no_otel: None, make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway()
    assert gw.services is not None and gw.services.tracing is None
    caller = {"traceparent": CALLER, "tracestate": STATE}
    status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "good"}, headers=caller)
    assert status == 200, body
    login = standin.state.calls_to("/api/execute")[-1]
    assert login.headers["Traceparent"] == CALLER and login.headers["Tracestate"] == STATE
    assert login.body["workload"]["traceparent"] == CALLER  # the login playbook's callback continues it
    token = body["session_token"]

    standin.state.calls.clear()
    run = {"query": EXECUTE, "variables": {"name": NOOP}}
    status, body, _ = await call(client, "POST", f"{gw.url}/graphql", run, headers=bearer(token, **caller))
    assert status == 200 and "errors" not in body, body
    status, _, _ = await call(client, "GET", f"{gw.url}/noetl/executions/1", headers=bearer(token, **caller))
    assert status < 500
    # check-access playbook, the playbook, the proxied call: each carries the caller's traceparent.
    assert len(standin.state.calls) >= 3
    assert {c.headers.get("Traceparent") for c in standin.state.calls} == {CALLER}
    started = [c for c in standin.state.calls_to("/api/execute") if c.body["path"] == NOOP]
    assert started[0].body["workload"] == {"q": 1, "traceparent": CALLER, "tracestate": STATE}


@pytest.mark.gen_test(timeout=30)
async def test_without_a_caller_trace_nothing_is_added(
    no_otel: None, make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway()
    for headers in ({}, {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, {"traceparent": "garbage"}):
        standin.state.calls.clear()
        status, _, _ = await call(client, "POST", f"{gw.url}/api/auth/login", {"auth0_token": "good"}, headers=headers)
        assert status == 200
        login = standin.state.calls_to("/api/execute")[-1]
        assert "Traceparent" not in login.headers, headers
        assert "traceparent" not in login.body["workload"], headers


def test_importing_the_gateway_loads_no_opentelemetry(no_otel: None) -> None:
    code = (
        "import sys, gateway.__main__, gateway.app\n"
        "from gateway.services import Services\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_tracing_is_on_only_with_an_endpoint_and_not_disabled() -> None:
    assert not tracing_wanted({})
    assert tracing_wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert not tracing_wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"})
    assert not tracing_wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"})


def test_only_wellformed_traceparents_are_passed_on() -> None:
    assert valid_traceparent(CALLER) == CALLER
    assert valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later") is not None
    for bad in ("", "garbage", CALLER.upper(), CALLER + "-x", "ff" + CALLER[2:], CALLER.replace("00f0", "zzzz")):
        assert valid_traceparent(bad) is None, bad
    assert caller_context(CALLER, "x" * 600) == (CALLER, None)  # an oversized tracestate is dropped
    assert caller_context(None, STATE) is None


def test_span_names_come_from_templates() -> None:
    assert route_template(r"/noetl/(.*)") == "/noetl/{path}"
    assert route_template(r"/graphql/?") == "/graphql"
    assert route_template(r"/api/internal/callback/async") == "/api/internal/callback/async"
    assert route_template(r"/items/(?P<item_id>\d+)$") == "/items/{item_id}"
    assert url_template("/api/executions/588473846282125312/status") == "/api/executions/{id}/status"
    assert url_template("/api/catalog/list") == "/api/catalog/list"
