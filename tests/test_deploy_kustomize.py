"""The plain manifests (kustomize base deploy/k8s, kind overlay deploy/kind): built with
`kubectl kustomize` offline, validated against the Kubernetes schemas, and kept in step with
the Helm chart where both promise the same thing."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import env_names, load_config
from tests.support.nats_server import require_binary
from tests.test_deploy_chart import (
    ALIASES,
    SECRET_VARIABLES,
    container,
    one,
    render,
    shutdown_budget,
    validate_objects,
)

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "deploy" / "k8s"
KIND = ROOT / "deploy" / "kind"


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = require_binary("kubectl", shutil.which("kubectl"))
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("path", [BASE, KIND], ids=["base", "kind"])
def test_kustomize_output_is_valid_kubernetes(path: Path) -> None:
    objects = kustomize(path)
    assert {"Deployment", "Service", "ConfigMap", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= {
        obj["kind"] for obj in objects
    }
    validate_objects(objects)


def test_gke_backend_config_example_is_valid() -> None:
    validate_objects([yaml.safe_load((BASE / "backendconfig-gke.yaml").read_text())])


def test_base_probes_security_and_grace() -> None:
    objects = kustomize(BASE)
    main = container(objects)
    assert main["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["terminationGracePeriodSeconds"] >= shutdown_budget(objects)
    # envFrom follows the generated (hash-suffixed) ConfigMap name.
    config_map = one(objects, "ConfigMap")["metadata"]["name"]
    refs = [source.get("configMapRef", {}).get("name") for source in main["envFrom"]]
    assert config_map in refs and re.fullmatch(r"noetl-gateway-config-[a-z0-9]{10}", config_map)


def test_base_and_chart_agree() -> None:
    """Two ways to deploy, one set of promises: probes, security, resources, SSE annotations."""
    plain, chart = kustomize(BASE), render({"ingress": {"enabled": True}})
    for key in ("readinessProbe", "livenessProbe", "startupProbe", "securityContext", "resources", "lifecycle"):
        assert container(plain)[key] == container(chart)[key], key
    for key in ("securityContext", "terminationGracePeriodSeconds", "volumes"):
        assert (
            one(plain, "Deployment")["spec"]["template"]["spec"][key]
            == (one(chart, "Deployment")["spec"]["template"]["spec"][key])
        ), key
    sse = {k: v for k, v in one(chart, "Ingress")["metadata"]["annotations"].items() if "nginx" in k}
    assert one(plain, "Ingress")["metadata"]["annotations"] == sse
    plain_hpa, chart_hpa = one(plain, "HorizontalPodAutoscaler")["spec"], one(chart, "HorizontalPodAutoscaler")["spec"]
    for key in ("minReplicas", "maxReplicas", "metrics", "behavior"):
        assert plain_hpa[key] == chart_hpa[key], key
    plain_env = one(plain, "ConfigMap")["data"]
    chart_env = one(chart, "ConfigMap")["data"]
    # Same defaults, except the public URL, which depends on the release name and namespace.
    assert {k: v for k, v in plain_env.items() if k != "GATEWAY_PUBLIC_URL"} == {
        k: v for k, v in chart_env.items() if k != "GATEWAY_PUBLIC_URL"
    }


def test_gateway_env_names_every_non_secret_variable() -> None:
    """gateway.env lists each variable once, set or commented out (kept at the gateway's default)."""
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (BASE / "gateway.env").read_text(), flags=re.MULTILINE)
    assert len(names) == len(set(names)), "a variable appears twice"
    expected = set(env_names()) - SECRET_VARIABLES - ALIASES
    assert sorted(expected - set(names)) == []
    assert sorted(set(names) - expected) == []


def test_kind_overlay_configuration_is_accepted_by_the_gateway() -> None:
    objects = kustomize(KIND)
    env = dict(one(objects, "ConfigMap")["data"])
    secret = one(objects, "Secret")
    env.update({key: base64.b64decode(value).decode() for key, value in secret["data"].items()})
    config = load_config(env)
    assert config.gateway_callback_secret
    assert config.gateway_log_format == "text"
    assert all(obj["metadata"].get("namespace") == "noetl" for obj in objects if obj["kind"] != "Namespace")
    assert container(objects)["image"] == "noetl-gateway:dev"


def test_nats_cluster_overlay_is_valid_and_uses_three_replicated_nodes() -> None:
    """deploy/nats-cluster: the base plus three JetStream nodes on PVCs, the gateway pointed at all three."""
    objects = kustomize(ROOT / "deploy" / "nats-cluster")
    validate_objects(objects)
    nats = next(obj for obj in objects if obj["kind"] == "StatefulSet")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    gateway_config = next(
        obj for obj in objects if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith("noetl-gateway")
    )
    config = load_config(gateway_config["data"])
    assert config.nats_replicas == 3
    assert config.nats_servers == [f"nats://nats-{i}.nats-headless:4222" for i in range(3)]
    conf = next(obj for obj in objects if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "nats-config")
    assert all(f"nats-{i}.nats-headless:6222" in conf["data"]["nats.conf"] for i in range(3))
