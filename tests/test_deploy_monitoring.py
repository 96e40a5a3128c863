"""The alerts (PrometheusRule in the chart) and the Grafana dashboard name only series the gateway exports.

A renamed metric or label would leave an alert that never fires and a panel that stays empty;
these tests read every PromQL expression and check each metric and label against the registry.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.metrics import Metrics
from tests.test_deploy_chart import render

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "noetl-gateway.json"
SCRAPE_LABELS = {"namespace", "pod", "le", "job", "instance"}  # added by Prometheus, or histogram buckets
METRIC = re.compile(r"\b((?:noetl|gateway)_[a-z0-9_]+)(\{[^}]*\})?")
BY = re.compile(r"\bby \(([^)]*)\)")


def exported() -> dict[str, set[str]]:
    """Every sample name the gateway can export, with the labels it carries."""
    names: dict[str, set[str]] = {}
    registry = Metrics().registry
    for collector, sample_names in registry._collector_to_names.items():  # every metric, used or not yet
        for name in sample_names:
            names[name] = set(getattr(collector, "_labelnames", ()))
    return names


def check_expression(expr: str, known: dict[str, set[str]]) -> None:
    metrics = METRIC.findall(expr)
    assert metrics, f"no gateway metric in {expr!r}"
    labels_in_play: set[str] = set()
    for name, selector in metrics:
        assert name in known, f"{name} is not exported by the gateway ({expr!r})"
        labels_in_play |= known[name]
        for label in re.findall(r"([a-z_]+)\s*=~?", selector):
            assert label in known[name] | SCRAPE_LABELS, f"{name} has no label {label!r}"
    for group in BY.findall(expr):
        for label in (part.strip() for part in group.split(",")):
            assert label in labels_in_play | SCRAPE_LABELS, f"'by ({group})': no metric here has {label!r}"


def alert_rules() -> list[dict[str, Any]]:
    (rule,) = [o for o in render({"prometheusRule": {"enabled": True}}) if o["kind"] == "PrometheusRule"]
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_the_alerts_the_issue_asks_for_are_there_and_off_by_default() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    wanted = {"NoetlGatewayNatsDisconnected", "NoetlGatewayNoetlUnreachable", "NoetlGatewayCallbackTimeoutsRising"}
    assert wanted | {"NoetlGateway5xxRatio"} <= names
    assert not [o for o in render({}) if o["kind"] == "PrometheusRule"]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_reads_series_the_gateway_exports(rule: dict[str, Any]) -> None:
    check_expression(rule["expr"], exported())
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert rule["annotations"]["runbook"].startswith("docs/")
    assert (ROOT / rule["annotations"]["runbook"].split("#")[0]).exists()


def test_alert_thresholds_come_from_the_values() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    tuned = render({"prometheusRule": {"enabled": True, "errorRatio": 0.2, "natsDisconnectedFor": "1m"}})
    (rule,) = [o for o in tuned if o["kind"] == "PrometheusRule"]
    retuned = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "> 0.05" in rules["NoetlGateway5xxRatio"]["expr"] and "> 0.2" in retuned["NoetlGateway5xxRatio"]["expr"]
    assert retuned["NoetlGatewayNatsDisconnected"]["for"] == "1m"


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def test_the_dashboard_is_valid_and_every_panel_reads_exported_series() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["panels"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    known = exported()
    for expr in dashboard_expressions():
        check_expression(expr, known)


def test_the_dashboard_shows_the_reference_names_operators_already_graph() -> None:
    text = " ".join(dashboard_expressions())
    for name in (
        "noetl_gateway_build_info",
        "noetl_gateway_auth_bypass_enabled",
        "noetl_gateway_login_total",
        "noetl_gateway_session_check_total",
        "noetl_gateway_authz_total",
        "noetl_gateway_callback_undelivered_total",
        "noetl_gateway_session_cache_failed_total",
    ):
        assert name in text, name


def test_a_renamed_metric_would_be_caught() -> None:
    with pytest.raises(AssertionError, match="not exported"):
        check_expression('sum(rate(gateway_http_request_total{status="500"}[5m]))', exported())
    with pytest.raises(AssertionError, match="no label"):
        check_expression('sum(rate(gateway_http_requests_total{code="500"}[5m]))', exported())
