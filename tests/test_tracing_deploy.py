"""The Helm chart's ``tracing`` values: off unless an endpoint is given, then the standard OTEL_* variables."""

from __future__ import annotations

from typing import Any

from gateway.tracing.setup import tracing_wanted
from tests.test_deploy_chart import container, render, render_error


def container_env(values: dict[str, Any]) -> dict[str, Any]:
    return {
        entry["name"]: entry.get("value", entry.get("valueFrom")) for entry in container(render(values)).get("env", [])
    }


def test_tracing_is_off_by_default() -> None:
    env = container_env({})
    assert not any(name.startswith("OTEL_") for name in env)
    assert not tracing_wanted({name: str(value) for name, value in env.items()})


def test_an_endpoint_turns_the_standard_variables_on() -> None:
    env = container_env(
        {
            "tracing": {
                "otlpEndpoint": "http://otel-collector.observability:4318",
                "samplerArg": 0.25,
                "resourceAttributes": "deployment.environment=prod",
                "extra": {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            },
            "extraEnv": [{"name": "OTEL_EXPORTER_OTLP_HEADERS", "value": "x-api-key=from-a-secret"}],
        }
    )
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
    assert env["OTEL_SERVICE_NAME"] == "noetl-gateway"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio" and env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == (
        "deployment.environment=prod,k8s.pod.name=$(OTEL_POD_NAME),k8s.namespace.name=noetl"
    )
    assert env["OTEL_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "x-api-key=from-a-secret"  # extraEnv is kept beside them
    assert tracing_wanted({name: str(value) for name, value in env.items()})


def test_tracing_values_are_checked() -> None:
    assert "sampler" in render_error({"tracing": {"otlpEndpoint": "http://c:4318", "sampler": "sometimes"}})
    assert "OTEL_" in render_error({"tracing": {"extra": {"NATS_URL": "nats://elsewhere:4222"}}})
