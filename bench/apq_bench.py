"""``executePlaybook`` by persisted-query hash (an APQ hit) vs the same mutation sent as text, one gateway, one run.

``.venv/bin/python bench/apq_bench.py [--runs 3] [--duration 8] [--connections 16] [--json FILE] [--smoke]``

Starts the NoETL stand-in and one gateway (``python -m gateway``, no NATS: a hit is answered from
the process's document cache either way), signs in, registers the mutation's hash once, then
drives both request bodies with ``wrk`` in alternating rounds against the same process: the full
document (``{"query": …}``, what a client without APQ sends) and the hash alone
(``{"extensions": {"persistedQuery": …}}``). Reports rps, the gateway's CPU per request (from
/proc) and p50/p99 for each, and the hit/full ratios per round (median and spread), plus the
request body sizes — the bandwidth APQ saves. Also, in-process and without HTTP: the engine's
cost for ``{ health version }`` by hash vs as cached text (best of 30 interleaved batches), which
shows the lookup's own cost where load on a shared machine hides it in rps. Needs ``wrk``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import harness
from graphql_common import MUTATION, executed, http_json, login

DIGEST = hashlib.sha256(MUTATION.encode()).hexdigest()
EXTENSIONS = {"persistedQuery": {"version": 1, "sha256Hash": DIGEST}}
BODIES = {"full document": {"query": MUTATION}, "APQ hit (hash only)": {"extensions": EXTENSIONS}}


def wrk(url: str, body: Any, token: str, connections: int, duration: float, gateway_pid: int) -> dict[str, float]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    before = harness.cpu_seconds(gateway_pid)
    raw = harness.wrk_json(url, harness.post_lua(json.dumps(body), headers), connections, duration)
    used = harness.cpu_seconds(gateway_pid) - before
    if raw["socket_errors"] or raw["non2xx"]:
        raise RuntimeError(f"errors under load: {raw}")
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "cpu_us": used / raw["requests"] * 1e6,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
    }


def engine_cost(batches: int = 30, per_batch: int = 2000) -> dict[str, float]:
    """µs per request through GraphQLEngine.run, text vs hash, both cached (the best batch of each)."""
    from gateway.config import load_config
    from gateway.metrics import Metrics
    from schema.context import RequestContext
    from schema.engine import GraphQLEngine

    engine = GraphQLEngine(load_config({}), Metrics())
    query = "{ health version }"
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(query.encode()).hexdigest()}}
    # `{ health version }` touches no service; the bucket is never reached on a hit.
    services = types.SimpleNamespace(persisted_queries=None, nats=types.SimpleNamespace(connected=False))
    context = RequestContext(services, None, "", "bench")  # type: ignore[arg-type]
    cases = {"text": (query, None), "hash": (None, extensions)}

    async def run() -> dict[str, float]:
        await engine.run(query, None, None, context, extensions=extensions)  # registers the hash
        best = dict.fromkeys(cases, float("inf"))
        for _ in range(batches):
            for name, (text, ext) in cases.items():
                started = time.perf_counter()
                for _ in range(per_batch):
                    await engine.run(text, None, None, context, extensions=ext)
                best[name] = min(best[name], (time.perf_counter() - started) / per_batch * 1e6)
        return best

    return asyncio.run(run())


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with harness.Processes("apq") as procs:
        standin_port, gateway_port = harness.free_port(), harness.free_port()
        standin = f"http://127.0.0.1:{standin_port}"
        proc = procs.start("standin", [harness.PYTHON, "-m", "tests.standin", "--port", str(standin_port)])
        harness.wait_http(f"{standin}/api/health", proc)
        gateway = f"http://127.0.0.1:{gateway_port}"
        env = harness.gateway_env(gateway_port, NOETL_BASE_URL=standin)
        gw = procs.start("gateway", [harness.PYTHON, "-m", "gateway"], env)
        harness.wait_http(f"{gateway}/health", gw)
        token = login(gateway)
        url = f"{gateway}/graphql"
        # The protocol first: unknown hash, then registered by the text, then a hit.
        _, miss = http_json("POST", url, {"extensions": EXTENSIONS}, token)
        if (miss or {}).get("errors", [{}])[0].get("extensions", {}).get("code") != "PERSISTED_QUERY_NOT_FOUND":
            raise RuntimeError(f"expected PersistedQueryNotFound, got {miss}")
        for body in ({"query": MUTATION, "extensions": EXTENSIONS}, *BODIES.values()):
            for _ in range(1 if args.smoke else 50):  # correctness, and warm every cache
                status, answer = http_json("POST", url, body, token)
                if status != 200 or not executed(answer):
                    raise RuntimeError(f"unexpected answer {status} {answer}")
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in BODIES}
        for round_no in range(args.runs):
            for name, body in BODIES.items():
                result = wrk(url, body, token, args.connections, args.duration, gw.pid)
                runs[name].append(result)
                print(
                    f"round {round_no + 1} {name:22s} {result['rps']:7.0f} rps  cpu {result['cpu_us']:5.0f} µs/req  "
                    f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    full, hit = runs["full document"], runs["APQ hit (hash only)"]
    return {
        "settings": {"runs": args.runs, "duration_s": args.duration, "connections": args.connections},
        "body_bytes": {name: len(json.dumps(body)) for name, body in BODIES.items()},
        "targets": {
            name: {key: harness.median_spread([r[key] for r in results]) for key in results[0]}
            for name, results in runs.items()
        },
        "rps_ratio_hit_vs_full": harness.median_spread([h["rps"] / f["rps"] for h, f in zip(hit, full, strict=True)]),
        "cpu_ratio_full_vs_hit": harness.median_spread(
            [f["cpu_us"] / h["cpu_us"] for h, f in zip(hit, full, strict=True)]
        ),
        "median_rps": {name: statistics.median(r["rps"] for r in results) for name, results in runs.items()},
        "in_process_us": engine_cost(3 if args.smoke else 30),
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.common_args(parser, runs=3, duration=8.0)
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (as graphql_bench.py)")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.duration = 1, 1.0
    if not harness.have_wrk():
        sys.exit("wrk not found: apt-get install wrk")
    harness.write_json(args.json, measure(args))


if __name__ == "__main__":
    main()
