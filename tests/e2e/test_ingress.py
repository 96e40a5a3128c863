"""Push ingress in front of the real NoETL 4.26 (issue 16): a GitHub-style signed webhook starts the
configured real playbook, whose result is read back through ``/noetl/executions/{id}``; a delivery
that does not verify leaves NoETL's own execution list unchanged. NoETL 4.26 has no
``/api/internal/ingress/{listener}``, so the listener file is the source even with the token set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import GatewayFactory
from tests.e2e import catalog
from tests.e2e.conftest import Deployed, Login
from tests.e2e.stack import http_json
from tests.support.gateway import GatewayInstance, GatewayProcess, call
from tests.support.waiting import wait_for
from tests.support.webhooks import GITHUB_SECRET, github_delivery, signature

PUSH = {"ref": "refs/heads/main", "repository": {"full_name": "acme/app"}, "pusher": {"name": "octocat"}}


@pytest.fixture
def ingress_gw(
    io_loop: Any, make_gateway: GatewayFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> GatewayInstance:
    monkeypatch.setenv("E2E_GITHUB_SECRET", GITHUB_SECRET)
    path = tmp_path / "ingress.yaml"
    listener = {
        "catalog_path": "subscriptions/github",
        "verify": {"type": "hmac_sha256", "header": "X-Hub-Signature-256", "secret_env": "E2E_GITHUB_SECRET"},
        "dispatch": {"playbook": catalog.INGRESS_GITHUB},
        "directives": {"X-GitHub-Event": "github_event"},
    }
    path.write_text(yaml.safe_dump({"listeners": {"github": listener}}))
    env = {"GATEWAY_INGRESS_CONFIG": str(path), "NOETL_INTERNAL_API_TOKEN": "e2e-internal-token-0123456789"}
    instance: GatewayInstance = io_loop.run_sync(lambda: make_gateway(**env), timeout=30)
    return instance


def executions_of(deployed: Deployed, path: str) -> list[str]:
    """NoETL's own list (newest 200): the ids of ``path``'s executions."""
    status, items = http_json("GET", f"{deployed.noetl_url}/api/executions?page_size=200")
    assert status == 200, items
    return [str(item["execution_id"]) for item in items if item.get("path") == path]


@pytest.mark.gen_test(timeout=120)
async def test_a_signed_webhook_runs_the_real_playbook(
    ingress_gw: GatewayInstance,
    gw: GatewayProcess,
    alice: Login,
    deployed: Deployed,
    client: aiohttp.ClientSession,
) -> None:
    body, headers = github_delivery(PUSH)
    status, answer, _ = await call(client, "POST", f"{ingress_gw.url}/ingress/github", headers=headers, raw=body)
    assert status == 202, answer
    execution_id = answer["execution_id"]
    assert execution_id.isdigit() and execution_id in executions_of(deployed, catalog.INGRESS_GITHUB)
    seen: dict[str, Any] = {}

    async def finished() -> bool:
        status, body, _ = await call(
            client, "GET", f"{gw.url}/noetl/executions/{execution_id}/status?full=true", headers=alice.headers
        )
        assert status == 200, body
        seen.update(body)
        return bool((body["completed"] or body["failed"]) and not body["completion_inferred"])

    await wait_for(finished, timeout=60, interval=0.3)
    assert seen["completed"] is True and seen["failed"] is False, seen
    start = seen["variables"]["start"]
    assert start["summary"] == "push to refs/heads/main of acme/app", start
    assert start["delivery"] == headers["X-GitHub-Delivery"]
    status, execution, _ = await call(client, "GET", f"{gw.url}/noetl/executions/{execution_id}", headers=alice.headers)
    assert status == 200, execution
    assert execution["path"] == catalog.INGRESS_GITHUB and execution["status"] == "COMPLETED", execution
    assert GITHUB_SECRET not in str(execution) and headers["X-Hub-Signature-256"][7:] not in str(seen)
    # A redelivery (GitHub's "Redeliver" button) answers the same execution and starts nothing.
    status, again, _ = await call(client, "POST", f"{ingress_gw.url}/ingress/github", headers=headers, raw=body)
    assert status == 202 and again["execution_id"] == execution_id and again["duplicate"] is True
    assert executions_of(deployed, catalog.INGRESS_GITHUB).count(execution_id) == 1


@pytest.mark.gen_test(timeout=120)
async def test_deliveries_that_do_not_verify_leave_noetl_untouched(
    ingress_gw: GatewayInstance, deployed: Deployed, client: aiohttp.ClientSession
) -> None:
    before = executions_of(deployed, catalog.INGRESS_GITHUB)
    body, headers = github_delivery(PUSH)
    forged = [
        {**headers, "X-Hub-Signature-256": signature("not-the-secret-0123456789abcdef", body)},
        {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64},
        {name: value for name, value in headers.items() if name != "X-Hub-Signature-256"},
    ]
    for sent in forged:
        status, answer, _ = await call(client, "POST", f"{ingress_gw.url}/ingress/github", headers=sent, raw=body)
        assert status == 401 and answer["reason"] in ("bad_signature", "missing_signature"), answer
    tampered = body.replace(b"main", b"prod")  # signed body, changed in flight
    status, answer, _ = await call(client, "POST", f"{ingress_gw.url}/ingress/github", headers=headers, raw=tampered)
    assert (status, answer["reason"]) == (401, "bad_signature")
    status, _, _ = await call(client, "POST", f"{ingress_gw.url}/ingress/gitlab", headers=headers, raw=body)
    assert status == 404  # NoETL 4.26 has no listener route: asked, 404, nothing started
    assert executions_of(deployed, catalog.INGRESS_GITHUB) == before
