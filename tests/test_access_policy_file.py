"""The route policy as data: the default table's decisions, an operator's policy file, and a bad
file stopping start-up with the line that is wrong (issue 13 part 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.access.policy_file import load_route_policy
from gateway.access.refusals import AccessDenied
from gateway.access.routes import default_policy
from gateway.config import ConfigError, load_config
from tests.support.gateway import call
from tests.support.signin import login
from tests.test_config_cli import run_gateway

# The default table's decisions: method, path, the caller's roles ("-": none at all), allowed or not.
DEFAULT_DECISIONS = """
GET     executions                  analyst  allowed
HEAD    executions/12               analyst  allowed
GET     catalog/a/b/c/ui_schema     analyst  allowed
POST    execute                     analyst  allowed
POST    executions/12/cancel        analyst  allowed
GET     executions/12/finalize      analyst  denied
POST    executions/cleanup          analyst  denied
GET     executions/cleanup          analyst  denied   # named admin-only before the broader read rule
POST    executions/12/analyze/ai    analyst  denied
POST    postgres/execute            analyst  denied
GET     credentials                 analyst  denied
GET     anything/new                analyst  denied
PUT     execute                     analyst  denied
POST    postgres/execute            admin    allowed
DELETE  anything/new                admin    allowed
GET     executions                  -        allowed
GET     credentials                 -        denied
"""


def decisions(table: str) -> list[tuple[str, str, tuple[str, ...], bool]]:
    rows = [line.split("#")[0].split() for line in table.strip().splitlines()]
    return [
        (method, path, () if roles == "-" else (roles,), verdict == "allowed") for method, path, roles, verdict in rows
    ]


@pytest.mark.parametrize(("method", "path", "roles", "allowed"), decisions(DEFAULT_DECISIONS))
def test_default_policy_decisions(method: str, path: str, roles: tuple[str, ...], allowed: bool) -> None:
    policy = default_policy(["admin"])
    if allowed:
        policy.decide(method, path, roles)
    else:
        with pytest.raises(AccessDenied):
            policy.decide(method, path, roles)


def test_admin_roles_are_configurable() -> None:
    policy = default_policy(["platform-admin", "ops"])
    policy.decide("POST", "postgres/execute", ("ops",))
    with pytest.raises(AccessDenied):
        policy.decide("POST", "postgres/execute", ("admin",))


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_policy_file_extends_or_replaces_the_defaults(tmp_path: Path) -> None:
    yaml_file = write(
        tmp_path,
        "p.yaml",
        "rules:\n  - name: ops read vars\n    methods: [GET]\n    path: /vars/**\n    roles: [ops]\n",
    )
    policy = load_route_policy(load_config({"GATEWAY_ROUTE_POLICY": yaml_file}))
    policy.decide("GET", "vars/1/x", ("ops",))
    policy.decide("GET", "executions", ("ops",))  # the defaults still follow
    toml_file = write(
        tmp_path,
        "p.toml",
        'mode = "replace"\nunlisted = "deny"\n[[rules]]\nmethods = ["GET"]\npath = "health"\nroles = ["*"]\n',
    )
    replaced = load_route_policy(load_config({"GATEWAY_ROUTE_POLICY": toml_file}))
    replaced.decide("GET", "health", ())
    with pytest.raises(AccessDenied):
        replaced.decide("GET", "executions", ())
    with pytest.raises(AccessDenied):
        replaced.decide("GET", "executions", ("admin",))  # unlisted: deny — admins too


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        (
            "bad.yaml",
            "rules:\n  - methods: [GET]\n    path: a/**\n    roles: [x]\n"
            "  - methods: [FETCH]\n    path: b\n    roles: []\n",
            "line 5",
        ),
        ("bad2.yaml", "rules:\n  - methods: [GET]\n    path: a/b*c\n    roles: ['*']\n", "line 2"),
        ("bad3.yaml", "rules:\n  - methods: [GET]\n    roles: ['*']\n", "line 2"),
        ("bad4.yaml", "rules: [\n", "line"),
        (
            "bad.toml",
            '[[rules]]\nmethods = ["GET"]\npath = "a"\nroles = ["*"]\n'
            '[[rules]]\nmethods = ["GET"]\npath = "b"\nroles = ["bad role"]\n',
            "line 5",
        ),
        ("bad5.yaml", "modes: extend\n", "line 1"),
    ],
)
def test_a_bad_policy_file_names_the_line(tmp_path: Path, name: str, text: str, where: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=where):
        load_route_policy(load_config({"GATEWAY_ROUTE_POLICY": path}))


def test_a_bad_policy_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "rules:\n  - methods: [GET]\n    path: ../etc\n    roles: ['*']\n")
    result = run_gateway({"GATEWAY_ROUTE_POLICY": path, "NATS_URL": "", "ROUTER_PORT": "0"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "GATEWAY_ROUTE_POLICY" in lines[0] and "line 2" in lines[0], result.stderr
    missing = run_gateway({"GATEWAY_ROUTE_POLICY": str(tmp_path / "nope.yaml"), "NATS_URL": ""})
    assert missing.returncode == 2 and "cannot read" in missing.stderr


@pytest.mark.gen_test
async def test_an_operator_rule_opens_a_route_to_a_role(
    tmp_path: Path, make_gateway: Any, client: aiohttp.ClientSession
) -> None:
    path = write(tmp_path, "p.yaml", "rules:\n  - methods: [GET]\n    path: vars/*\n    roles: [analyst]\n")
    gw = await make_gateway(GATEWAY_ROUTE_POLICY=path)
    token = await login(client, gw, "member-x")
    headers = {"Authorization": f"Bearer {token}"}
    status, _, _ = await call(client, "GET", f"{gw.url}/noetl/vars/1", headers=headers)
    assert status == 200
    status, _, _ = await call(client, "DELETE", f"{gw.url}/noetl/vars/1", headers=headers)
    assert status == 403
