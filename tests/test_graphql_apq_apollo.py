"""Automatic persisted queries driven by the real npm ``@apollo/client`` and its persisted-queries link
(``tests/node_apollo/``, installed with ``npm ci`` from the committed lock file) against two gateway
replicas sharing NATS: the hash alone first, PersistedQueryNotFound, the retry with the document,
then the hash alone is enough — on the replica that registered it and on the other one."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import Replicas, Standin
from tests.support.graphql_client import metric_value
from tests.support.missing import fail_in_ci_else_skip
from tests.support.signin import login
from tests.test_graphql_apq import METRIC, noop_runs

NODE_DIR = Path(__file__).resolve().parent / "node_apollo"
STAMP = NODE_DIR / "node_modules" / ".installed-lock-sha256"


@pytest.fixture(scope="session")
def apollo_client_script() -> Path:
    """``npm ci`` once per lock file (a stamp in node_modules); node or npm missing fails in CI."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        fail_in_ci_else_skip("node and npm are needed for the Apollo Client test (apt-get install nodejs npm)")
    lock = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text() != lock:
        done = subprocess.run(
            [npm, "ci", "--silent", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            fail_in_ci_else_skip(f"npm ci in tests/node_apollo failed: {(done.stderr or done.stdout)[-1000:]}")
        STAMP.write_text(lock)
    return NODE_DIR / "apq_client.mjs"


async def run_node(script: Path, env: dict[str, str]) -> dict[str, Any]:
    """The script as its own process (the test's loop keeps serving the gateways meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(script),
        cwd=script.parent,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert out.strip(), f"node printed nothing (exit {proc.returncode}): {err.decode()[-2000:]}"
    result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0 and "failure" not in result, result.get("failure") or err.decode()[-2000:]
    return result


def shape(requests: list[dict[str, Any]]) -> list[tuple[str, bool, bool, int, list[str]]]:
    """What each request was: method, text sent, hash sent, status, error codes."""
    return [(r["method"], r["hasQuery"], r["hash"] is not None, r["status"], r["codes"]) for r in requests]


@pytest.mark.gen_test(timeout=120)
async def test_apollo_client_persisted_queries_miss_retry_hit_across_replicas(
    replicas: Replicas, standin: Standin, client: aiohttp.ClientSession, apollo_client_script: Path
) -> None:
    a, b = replicas
    token = await login(client, a)
    runs_before = noop_runs(standin)

    result = await run_node(apollo_client_script, {"GATEWAY_A": a.url, "GATEWAY_B": b.url, "TOKEN": token})
    steps = {step["name"]: step for step in result["steps"]}
    not_found = ["PERSISTED_QUERY_NOT_FOUND"]

    first = steps["query: first time on A"]
    # The hash alone first (GET, as useGETForHashedQueries asks), then the document with it (POST).
    assert shape(first["requests"]) == [("GET", False, True, 200, not_found), ("POST", True, True, 200, [])]
    assert {r["gateway"] for r in first["requests"]} == {a.url}
    assert first["data"]["health"] == "ok" and first["data"]["me"]["email"] == "alice@example.com"
    digest = first["requests"][0]["hash"]
    assert first["requests"][1]["hash"] == digest

    again = steps["query: again on A"]
    assert shape(again["requests"]) == [("GET", False, True, 200, [])]
    assert again["data"] == first["data"]

    other = steps["query: on B, which never saw the text"]
    assert shape(other["requests"]) == [("GET", False, True, 200, [])]
    assert {r["gateway"] for r in other["requests"]} == {b.url}
    assert other["data"] == first["data"]

    # A mutation: always POST; the same miss → retry → hit, and it ran once per step.
    run_a, run_b = steps["mutation: first time on A"], steps["mutation: on B"]
    assert shape(run_a["requests"]) == [("POST", False, True, 200, not_found), ("POST", True, True, 200, [])]
    assert shape(run_b["requests"]) == [("POST", False, True, 200, [])]
    assert run_a["data"]["executePlaybook"]["executionId"] and run_b["data"]["executePlaybook"]["executionId"]
    assert noop_runs(standin) == runs_before + 2

    # What the gateways counted: A missed twice and registered twice, B found both in the shared bucket.
    assert await metric_value(client, a, METRIC, outcome="miss") == 2
    assert await metric_value(client, a, METRIC, outcome="registered") == 2
    assert await metric_value(client, a, METRIC, outcome="hit") == 1
    assert await metric_value(client, b, METRIC, outcome="shared_hit") == 2
    assert await metric_value(client, b, METRIC, outcome="miss") == 0
    assert b.services is not None
    stored = await b.services.persisted_queries.fetch(digest)
    assert stored is not None and hashlib.sha256(stored["query"].encode()).hexdigest() == digest
