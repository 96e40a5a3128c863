"""Push-ingress listeners through the Helm chart: the file the gateway reads, mounted from a ConfigMap,
its secrets from Kubernetes Secrets — and what the chart renders is what the gateway accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gateway.config import load_config
from gateway.ingress.listeners import load_listeners
from tests.test_deploy_chart import container, one, pod_env, render, render_error, validate_objects

MAIN_CONFIG = "gw-noetl-gateway"

LISTENERS = {
    "github": {
        "catalog_path": "subscriptions/github",
        "verify": {"type": "hmac_sha256", "header": "X-Hub-Signature-256", "secret_env": "GITHUB_WEBHOOK_SECRET"},
        "dispatch": {"playbook": "ops/github_push"},
        "directives": {"X-GitHub-Event": "github_event"},
    },
    "billing": {
        "source": "pubsub",
        "verify": {
            "type": "pubsub_oidc",
            "audience": "https://gateway.example.com/ingress/billing",
            "service_account": "pubsub-push@proj.iam.gserviceaccount.com",
        },
        "dispatch": {"playbook": "billing/handle_event", "payload_from": "message.json"},
    },
}
VALUES: dict[str, Any] = {
    "pushIngress": {
        "listeners": LISTENERS,
        "secretEnv": {"GITHUB_WEBHOOK_SECRET": {"secretName": "github-webhook", "key": "secret"}},
    },
    "secrets": {"noetlInternalApiToken": "internal-token-0123456789"},
}


def test_listeners_are_mounted_and_their_secrets_come_from_secrets(tmp_path: Path) -> None:
    objects = render(VALUES)
    validate_objects(objects)
    maps = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "ConfigMap"}
    listener_file = maps["gw-noetl-gateway-ingress"]["data"]["listeners.yaml"]
    env = pod_env([obj for obj in objects if obj["kind"] != "ConfigMap" or obj["metadata"]["name"] == MAIN_CONFIG])
    assert env["GATEWAY_INGRESS_CONFIG"] == "/etc/noetl-gateway/ingress/listeners.yaml"
    assert env["NOETL_INTERNAL_API_TOKEN"] == "internal-token-0123456789"  # from the Secret, not the ConfigMap
    assert "NOETL_INTERNAL_API_TOKEN" not in maps[MAIN_CONFIG]["data"]
    main = container(objects)
    (secret_env,) = main["env"]
    assert secret_env == {
        "name": "GITHUB_WEBHOOK_SECRET",
        "valueFrom": {"secretKeyRef": {"name": "github-webhook", "key": "secret"}},
    }
    mounts = {mount["name"]: mount for mount in main["volumeMounts"]}
    assert mounts["ingress-listeners"] == {
        "name": "ingress-listeners",
        "mountPath": "/etc/noetl-gateway/ingress",
        "readOnly": True,
    }
    pod = one(objects, "Deployment")["spec"]["template"]
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert volumes["ingress-listeners"]["configMap"]["name"] == "gw-noetl-gateway-ingress"
    assert "checksum/ingress-listeners" in pod["metadata"]["annotations"]
    # The gateway accepts the rendered file, with the secret the Secret would provide.
    path = tmp_path / "listeners.yaml"
    path.write_text(listener_file)
    config = load_config({**env, "GATEWAY_INGRESS_CONFIG": str(path)})
    listeners = load_listeners(config, {"GITHUB_WEBHOOK_SECRET": "from-the-kubernetes-secret-0123"})
    assert set(listeners) == {"github", "billing"}
    assert listeners["github"].secret == b"from-the-kubernetes-secret-0123"
    assert yaml.safe_load(listener_file) == {"listeners": LISTENERS}


def test_without_listeners_nothing_is_mounted() -> None:
    objects = render()
    assert "GATEWAY_INGRESS_CONFIG" not in pod_env(objects)
    assert "env" not in container(objects)
    assert [obj["metadata"]["name"] for obj in objects if obj["kind"] == "ConfigMap"] == [MAIN_CONFIG]


def test_a_secret_written_into_a_listener_is_refused() -> None:
    listeners = {"alerts": {"verify": {"type": "bearer", "secret": "hunter2"}, "dispatch": {"playbook": "a"}}}
    assert "a secret never goes in values" in render_error({"pushIngress": {"listeners": listeners}})
    assert "secrets" in render_error({"config": {"NOETL_INTERNAL_API_TOKEN": "oops"}})
    missing_key = {"pushIngress": {"secretEnv": {"X": {"secretName": "s"}}}}
    assert "key" in render_error(missing_key)
