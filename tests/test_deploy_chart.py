"""The Helm chart, rendered offline by Helm's own engine and validated against Kubernetes schemas.

Rendering uses the PyPI wheel helm-python-sdk (Helm's Go SDK behind a C ABI: `helm template`
and `helm lint` without a helm binary or a cluster); validation uses kubernetes-validate
(the Kubernetes OpenAPI schemas, shipped in the wheel) in strict mode, so an unknown or
misspelt field fails too.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from gateway.config import ENV_ALIASES, GatewayConfig, env_names, load_config
from tests.support.missing import fail_in_ci_else_skip

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "noetl-gateway"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))

# Oldest Kubernetes minor we promise (GKE's oldest supported channel at the time of writing) and
# the newest the validator knows.
K8S_VERSIONS = ("1.29",)
SECRET_VARIABLES = {"GATEWAY_CALLBACK_SECRET", "NATS_USERNAME", "NATS_PASSWORD", "NOETL_INTERNAL_API_TOKEN"}
ALIASES = set(ENV_ALIASES)  # GATEWAY_PORT, GATEWAY_AUTH0_*: the chart sets the variables they alias
# Where the chart deliberately differs from the gateway's defaults (documented in the chart README).
CHART_OVERRIDES = {"gateway_log_format", "gateway_audit_log", "noetl_base_url", "nats_url", "gateway_public_url"}

# Custom resources have no schema in kubernetes-validate: these hold what the operators require.
_DURATION = {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?)$"}


def _custom_resource(spec: dict[str, Any]) -> dict[str, Any]:
    """A custom resource: apiVersion, kind, a named metadata, and the operator's closed ``spec``."""
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {"type": "object", "additionalProperties": False, **spec},
        },
    }


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties}


CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "monitoring.coreos.com/v1/ServiceMonitor": _custom_resource(
        {
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": _closed(
                        {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                        }
                    ),
                },
            },
        }
    ),
    "monitoring.coreos.com/v1/PrometheusRule": _custom_resource(
        {
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": _closed(
                                    {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": _DURATION,
                                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                                    }
                                ),
                            },
                        },
                    },
                }
            },
        }
    ),
    "cloud.google.com/v1/BackendConfig": _custom_resource(
        {
            "properties": {
                "timeoutSec": {"type": "integer", "minimum": 1, "maximum": 2147483647},
                "connectionDraining": _closed(
                    {"drainingTimeoutSec": {"type": "integer", "minimum": 0, "maximum": 3600}}
                ),
                "healthCheck": _closed(
                    {
                        "type": {"enum": ["HTTP", "HTTPS", "HTTP2"]},
                        "requestPath": {"type": "string", "pattern": "^/"},
                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                        "checkIntervalSec": {"type": "integer"},
                        "timeoutSec": {"type": "integer"},
                        "healthyThreshold": {"type": "integer"},
                        "unhealthyThreshold": {"type": "integer"},
                    }
                ),
            },
        }
    ),
}


def require_module(name: str) -> ModuleType:
    """A test dependency that is missing: a failure in CI (CI=true), a skip on a developer machine."""
    try:
        return __import__(name)
    except ImportError:
        message = f"python package {name} not installed (run `make test`, which installs the test extra)"
        fail_in_ci_else_skip(message)


def validate_objects(objects: list[dict[str, Any]]) -> None:
    """Every object against its schema: Kubernetes' for built-in kinds (strict), ours for CRDs."""
    kubernetes_validate = require_module("kubernetes_validate")
    import jsonschema

    versions = (*K8S_VERSIONS, kubernetes_validate.latest_version())
    for obj in objects:
        key = f"{obj['apiVersion']}/{obj['kind']}"
        if key in CRD_SCHEMAS:
            jsonschema.validate(obj, CRD_SCHEMAS[key])
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(
                    f"{key} {obj['metadata'].get('name')} invalid for Kubernetes {version}: {exc}"
                ) from None


def render(values: dict[str, Any] | None = None, namespace: str = "noetl") -> list[dict[str, Any]]:
    """`helm template gw deploy/helm/noetl-gateway -n noetl -f values` as parsed objects."""
    helm = require_module("helm_python")
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values=values or {}, name="gw", namespace=namespace, is_install=True)
    objects: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if not path.endswith(".yaml"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def render_error(values: dict[str, Any]) -> str:
    helm = require_module("helm_python")
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    return str(caught.value)


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def kinds(objects: list[dict[str, Any]]) -> set[str]:
    return {obj["kind"] for obj in objects}


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (main,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(main, dict)
    return main


def pod_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The environment the gateway sees: ConfigMap, then Secret (later wins), as envFrom says."""
    env: dict[str, str] = {}
    for source in container(objects)["envFrom"]:
        if "configMapRef" in source:
            env.update(one(objects, "ConfigMap")["data"])
        if "secretRef" in source:
            secrets = [obj for obj in objects if obj["kind"] == "Secret"]
            if secrets:
                env.update(secrets[0].get("stringData", {}))
    return env


def values_file() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return data


def all_features() -> dict[str, Any]:
    return {
        "ingress": {"enabled": True, "tls": [{"secretName": "gw-tls", "hosts": ["gateway.example.com"]}]},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
        "gke": {"backendConfig": {"enabled": True}},
        "autoscaling": {"targetMemoryUtilizationPercentage": 80},
    }


# -- lint and schema validation ---------------------------------------------------------------------


def test_chart_lints_without_warnings() -> None:
    helm = require_module("helm_python")
    for values in [{}, all_features(), *(yaml.safe_load(path.read_text()) for path in CI_VALUES)]:
        report = helm.lint(str(CHART), values, strict=True)
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], report["messages"]


def value_sets() -> list[Any]:
    sets = [pytest.param({}, id="defaults"), pytest.param(all_features(), id="all-features")]
    return sets + [pytest.param(yaml.safe_load(path.read_text()), id=path.stem) for path in CI_VALUES]


@pytest.mark.parametrize("values", value_sets())
def test_every_rendered_object_is_valid_kubernetes(values: dict[str, Any]) -> None:
    objects = render(values)
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount"} <= kinds(objects)
    validate_objects(objects)


def test_all_features_render_every_kind() -> None:
    assert kinds(render(all_features())) == {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
        "BackendConfig",
    }


def test_the_validator_rejects_a_misspelt_field() -> None:
    """Strict validation really runs: a typo in a probe name is an error, not silently ignored."""
    objects = render()
    main = container(objects)
    main["readinesProbe"] = main.pop("readinessProbe")
    with pytest.raises(AssertionError, match="readinesProbe"):
        validate_objects([one(objects, "Deployment")])


def test_values_schema_rejects_an_unknown_value() -> None:
    assert "replicas" in render_error({"replicas": 3})


# -- what the Deployment promises -------------------------------------------------------------------


def test_probes_point_at_the_health_endpoints() -> None:
    main = container(render())
    assert main["ports"] == [{"name": "http", "containerPort": 8090, "protocol": "TCP"}]
    assert main["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert main["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    # /health/ready pings NoETL with a 2 s budget: the probe must wait longer than that.
    assert main["readinessProbe"]["timeoutSeconds"] > 2


def test_pods_run_non_root_with_a_read_only_root_filesystem() -> None:
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container(objects)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["runAsNonRoot"] is True
    mounts = {mount["mountPath"]: mount["name"] for mount in container(objects)["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    resources = container(objects)["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]


def shutdown_budget(objects: list[dict[str, Any]]) -> float:
    """preStop + SSE close (5 s) + GATEWAY_SHUTDOWN_GRACE_SECS + connection close (2 s) + NATS drain (5 s)."""
    env = pod_env(objects)
    grace = float(env.get("GATEWAY_SHUTDOWN_GRACE_SECS", load_config({}).gateway_shutdown_grace_secs))
    pre_stop = int(container(objects)["lifecycle"]["preStop"]["exec"]["command"][1])
    return pre_stop + 5 + math.ceil(grace) + 2 + 5


def test_termination_grace_covers_the_gateways_drain() -> None:
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= shutdown_budget(objects)
    assert container(objects)["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"


@pytest.mark.parametrize(
    "values",
    [
        {"terminationGracePeriodSeconds": 10},
        {"config": {"GATEWAY_SHUTDOWN_GRACE_SECS": "60"}},
        {"preStopSleepSeconds": 30},
    ],
)
def test_a_grace_period_shorter_than_the_drain_is_refused(values: dict[str, Any]) -> None:
    assert "terminationGracePeriodSeconds" in render_error(values)


def test_a_longer_drain_renders_with_a_matching_grace_period() -> None:
    objects = render({"config": {"GATEWAY_SHUTDOWN_GRACE_SECS": "60"}, "terminationGracePeriodSeconds": 77})
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 77


def test_hpa_owns_the_replica_count_when_enabled() -> None:
    with_hpa = render()
    assert "replicas" not in one(with_hpa, "Deployment")["spec"]
    hpa = one(with_hpa, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gw-noetl-gateway"}
    without = render({"autoscaling": {"enabled": False}, "replicaCount": 3})
    assert one(without, "Deployment")["spec"]["replicas"] == 3
    assert "HorizontalPodAutoscaler" not in kinds(without)


def test_selectors_match_the_pods() -> None:
    objects = render(all_features())
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selectors = [
        one(objects, "Deployment")["spec"]["selector"]["matchLabels"],
        one(objects, "Service")["spec"]["selector"],
        one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
    service_labels = one(objects, "Service")["metadata"]["labels"]
    assert one(objects, "ServiceMonitor")["spec"]["selector"]["matchLabels"].items() <= service_labels.items()


# -- SSE through the ingress ------------------------------------------------------------------------


def test_ingress_keeps_sse_unbuffered_and_open() -> None:
    objects = render({"ingress": {"enabled": True, "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}}})
    ingress = one(objects, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    heartbeat = load_config({}).gateway_heartbeat_interval_secs
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        # Far longer than the heartbeat: an idle stream is never cut between two pings.
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 10 * heartbeat
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"  # the user's own are kept
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": one(objects, "Service")["metadata"]["name"], "port": {"name": "http"}}


def test_gke_backend_config_raises_the_load_balancer_timeout() -> None:
    objects = render({"gke": {"backendConfig": {"enabled": True}}})
    backend = one(objects, "BackendConfig")
    assert backend["spec"]["timeoutSec"] >= 3600
    assert backend["spec"]["healthCheck"]["requestPath"] == "/health/ready"
    annotation = one(objects, "Service")["metadata"]["annotations"]["cloud.google.com/backend-config"]
    assert yaml.safe_load(annotation) == {"default": backend["metadata"]["name"]}


def test_service_monitor_scrapes_metrics() -> None:
    monitor = one(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"


# -- configuration: ConfigMap and Secret ------------------------------------------------------------


def test_values_name_every_gateway_variable_exactly_once() -> None:
    """config (ConfigMap) + secrets (Secret) cover the config model; nothing unknown, nothing secret in config."""
    config_keys = set(values_file()["config"])
    assert not config_keys & SECRET_VARIABLES
    expected = set(env_names()) - SECRET_VARIABLES - ALIASES
    assert sorted(expected - config_keys) == [], "missing from values.yaml config"
    assert sorted(config_keys - expected) == [], "not a gateway variable"


def test_rendered_configuration_is_accepted_by_the_gateway() -> None:
    objects = render({"secrets": {"natsUsername": "gw", "natsPassword": "pw"}})
    env = pod_env(objects)
    config = load_config(env)
    assert config.gateway_public_url == "http://gw-noetl-gateway.noetl.svc:8090"
    assert config.nats_username == "gw" and config.nats_password == "pw"
    assert config.gateway_callback_secret and len(config.gateway_callback_secret) >= 32
    defaults = load_config({})
    differs = {name for name in GatewayConfig.model_fields if getattr(config, name) != getattr(defaults, name)}
    assert differs - {"nats_username", "nats_password", "gateway_callback_secret"} == CHART_OVERRIDES


def test_unset_values_are_left_out_and_numbers_stay_integral() -> None:
    objects = render(
        {"config": {"GATEWAY_PROXY_MAX_BODY_BYTES": 1073741824, "AUTH_PLAYBOOK_TIMEOUT_SECS": 2.5, "NATS_URL": None}}
    )
    data = one(objects, "ConfigMap")["data"]
    assert data["GATEWAY_PROXY_MAX_BODY_BYTES"] == "1073741824"
    assert data["AUTH_PLAYBOOK_TIMEOUT_SECS"] == "2.5"
    assert "NATS_URL" not in data and "AUTH0_DOMAIN" not in data
    load_config(data)


def test_a_secret_in_the_config_map_is_refused() -> None:
    assert "secrets" in render_error({"config": {"GATEWAY_CALLBACK_SECRET": "oops"}})


def test_existing_secret_replaces_the_charts_own() -> None:
    objects = render({"secrets": {"existingSecret": "gateway-secrets"}})
    assert "Secret" not in kinds(objects)
    refs = [source["secretRef"]["name"] for source in container(objects)["envFrom"] if "secretRef" in source]
    assert refs == ["gateway-secrets"]


def test_given_callback_secret_and_extra_secret_variables() -> None:
    objects = render({"secrets": {"callbackSecret": "k" * 40, "extra": {"NATS_URL": "nats://u:p@nats:4222"}}})
    secret = one(objects, "Secret")["stringData"]
    assert secret["GATEWAY_CALLBACK_SECRET"] == "k" * 40
    assert load_config(pod_env(objects)).nats_url == "nats://u:p@nats:4222"  # Secret wins over ConfigMap


def test_a_config_change_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        annotations = one(render(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"config": {"GATEWAY_LOG_LEVEL": "DEBUG"}})


# -- clustered NATS (docs/deployment.md "Clustered NATS") --------------------------------------------


def test_cluster_values_give_every_bucket_three_replicas_on_every_node() -> None:
    objects = render(yaml.safe_load((CHART / "ci" / "cluster-values.yaml").read_text()))
    config = load_config(pod_env(objects))
    assert config.nats_replicas == 3
    assert len(config.nats_servers) == 3
    assert one(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 3


def test_nats_cluster_values_ask_for_three_jetstream_nodes_on_volumes() -> None:
    """Values for the official NATS chart (a release of its own; not renderable offline: checked by shape)."""
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "nats-cluster" / "values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    jetstream = values["config"]["jetstream"]
    assert jetstream["enabled"] is True and jetstream["fileStore"]["enabled"] is True
    assert jetstream["fileStore"]["pvc"]["enabled"] is True
