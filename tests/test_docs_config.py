"""The operator docs stay true to the code: every variable of the config model is documented
(with its real default) in docs/configuration.md and in the Helm chart's values and README;
every metric in docs/metrics.md; the health states in the runbook; links resolve."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gateway.config import ENV_ALIASES, GatewayConfig, env_names, load_config
from gateway.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHART = ROOT / "deploy" / "helm" / "noetl-gateway"
CONFIGURATION = DOCS / "configuration.md"
SECRET_VARIABLES = {"GATEWAY_CALLBACK_SECRET", "NATS_USERNAME", "NATS_PASSWORD", "NOETL_INTERNAL_API_TOKEN"}
SECRET_VALUES = {
    "GATEWAY_CALLBACK_SECRET": "callbackSecret",
    "NATS_USERNAME": "natsUsername",
    "NATS_PASSWORD": "natsPassword",
    "NOETL_INTERNAL_API_TOKEN": "noetlInternalApiToken",
}
META_VARIABLES = {"GATEWAY_CONFIG"}  # read by load_config itself, not a model field
OPERATOR_DOCS = ["deployment.md", "auth0.md", "sse-ingress.md", "metrics.md", "runbook.md", "configuration.md"]


def table_rows(path: Path) -> dict[str, list[str]]:
    """Markdown table rows whose first cell is one `VARIABLE`: {name: cells}."""
    rows: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} has two rows in {path.name}"
            rows[match.group(1)] = cells
    return rows


def default_text(value: Any) -> str | None:
    """How a model default is written in the docs; None for 'unset'."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def test_every_config_variable_has_one_row_in_configuration_md() -> None:
    rows = table_rows(CONFIGURATION)
    missing = sorted(set(env_names()) - set(rows))
    assert missing == [], f"undocumented in docs/configuration.md: {missing}"
    unknown = sorted(set(rows) - set(env_names()) - META_VARIABLES)
    assert unknown == [], f"documented but not in gateway/config.py: {unknown}"
    assert all(len(cells) == 3 and cells[2] for cells in rows.values()), "every row: variable | default | meaning"


def test_documented_defaults_are_the_models() -> None:
    rows = table_rows(CONFIGURATION)
    wrong = []
    for name, field in GatewayConfig.model_fields.items():
        cell = rows[name.upper()][1]
        expected = default_text(field.get_default(call_default_factory=True))
        if expected is None:
            ok = cell.startswith("unset")
        else:
            ok = f"`{expected}`" in cell
        if not ok:
            wrong.append(f"{name.upper()}: doc says {cell!r}, code default {expected or 'unset'}")
    for alias, field_name in ENV_ALIASES.items():
        assert field_name.upper() in rows[alias][2], f"{alias} should name {field_name.upper()}"
    assert wrong == []


def test_every_config_variable_is_in_the_helm_values_and_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    config_keys = set(values["config"])
    missing_values, missing_readme = [], []
    for name in env_names():
        if name in ENV_ALIASES:
            in_values = ENV_ALIASES[name].upper() in config_keys
        elif name in SECRET_VARIABLES:
            in_values = SECRET_VALUES[name] in values["secrets"]
        else:
            in_values = name in config_keys
        if not in_values:
            missing_values.append(name)
        if f"`{name}`" not in readme and f"`config.{name}`" not in readme:
            missing_readme.append(name)
    assert missing_values == [], f"not in deploy/helm/noetl-gateway/values.yaml: {missing_values}"
    assert missing_readme == [], f"not in deploy/helm/noetl-gateway/README.md: {missing_readme}"


# Values whose content is a free-form Kubernetes structure (documented as a whole, not key by key).
OPAQUE_VALUES = {
    "config",
    "secrets.extra",
    "resources",
    "podSecurityContext",
    "securityContext",
    "strategy",
    "probes.liveness",
    "probes.readiness",
    "probes.startup",
    "ingress.sseAnnotations",
    "ingress.hosts",
    "autoscaling.behavior",
}


def value_paths(node: Any, prefix: str = "") -> list[str]:
    paths = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in OPAQUE_VALUES:
            paths += value_paths(value, path + ".")
        else:
            paths.append(path)
    return paths


def test_chart_readme_config_defaults_match_values_yaml() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    stale = []
    for key, value in values["config"].items():
        row = next((line for line in readme.splitlines() if line.startswith(f"| `config.{key}` |")), "")
        expected = "`~`" if value is None else f'`"{value}"`'
        if expected not in row:
            stale.append(f"{key}: README {row!r}, values.yaml {value!r}")
    assert stale == []


def test_chart_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    missing = [path for path in value_paths(values) if f"| `{path}` |" not in readme]
    assert missing == [], f"values without a row in the chart README: {missing}"


def test_every_metric_is_documented_with_its_labels() -> None:
    rows: dict[str, str] = {}
    for line in (DOCS / "metrics.md").read_text().splitlines():
        match = re.match(r"\| `((?:gateway|noetl)_[a-z_]+)` \|", line)
        if match:
            rows[match.group(1)] = line
    exported = set()
    for family in Metrics().registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        exported.add(name)
        assert name in rows, f"{name} ({family.type}) missing from docs/metrics.md"
        assert f"| {family.type} |" in rows[name], f"{name} is a {family.type}"
        labels = {label for sample in family.samples for label in sample.labels if label != "le"}
        for label in labels:
            assert f"`{label}`" in rows[name], f"{name}: label {label} undocumented"
    assert sorted(set(rows) - exported) == [], "documented metrics the code does not export"


def test_every_metric_label_is_documented_even_before_first_use() -> None:
    """Labelled metrics have no samples until used: read their label names from the collectors."""
    metrics = Metrics()
    text = (DOCS / "metrics.md").read_text()
    for collector in [*vars(metrics).values(), *vars(metrics.reference).values()]:
        labelnames = getattr(collector, "_labelnames", ())
        name = getattr(collector, "_name", None)
        if not name or not labelnames:
            continue
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}"))
        for label in labelnames:
            assert f"`{label}`" in row, f"{name}: label {label} undocumented"


def test_runbook_covers_every_readiness_state() -> None:
    source = (ROOT / "handlers" / "health.py").read_text()
    runbook = (DOCS / "runbook.md").read_text()
    for status in ("ready", "degraded", "unavailable"):
        assert f'"{status}"' in source, f"health.py no longer has status {status}"
        assert f"### {status}" in runbook
    for nats_state in ("connected", "disconnected", "disabled"):
        assert f'"{nats_state}"' in source
        assert f"`{nats_state}`" in runbook
    for noetl_state in ("reachable", "unreachable"):
        assert f'"{noetl_state}"' in source
        assert f"`{noetl_state}`" in runbook


def test_deployment_guide_names_the_nats_objects_the_gateway_creates() -> None:
    guide = (DOCS / "deployment.md").read_text()
    defaults = load_config({})
    for field in (
        "nats_session_bucket",
        "nats_revoked_bucket",
        "nats_request_bucket",
        "nats_client_bucket",
        "nats_events_stream",
        "nats_events_subject_prefix",
        "nats_callback_subject_prefix",
    ):
        assert f"`{getattr(defaults, field)}" in guide, field
        assert f"`{field.upper()}`" in guide, field


def test_auth0_guide_names_its_variables() -> None:
    guide = (DOCS / "auth0.md").read_text()
    for name in ("AUTH0_DOMAIN", "AUTH0_AUDIENCE", "AUTH0_JWKS_URL", "AUTH_PLAYBOOK_LOGIN", "GATEWAY_CALLBACK_AUTH"):
        assert name in guide, name


def test_sse_notes_match_the_heartbeat_default() -> None:
    notes = (DOCS / "sse-ingress.md").read_text()
    heartbeat = default_text(load_config({}).gateway_heartbeat_interval_secs)
    assert f"({heartbeat} s" in notes and "100 seconds" in notes
    assert "GATEWAY_HEARTBEAT_INTERVAL_SECS" in notes


def test_relative_links_resolve() -> None:
    documents = [DOCS / name for name in OPERATOR_DOCS] + [CHART / "README.md"]
    broken = []
    for document in documents:
        text = document.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (document.parent / path).resolve() if path else document
            if not resolved.exists():
                broken.append(f"{document.name}: {target}")
                continue
            if anchor and resolved.suffix == ".md":
                headings = {
                    re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                    for line in resolved.read_text().splitlines()
                    if line.startswith("#")
                }
                if anchor not in headings:
                    broken.append(f"{document.name}: {target} (no such heading)")
    assert broken == []
