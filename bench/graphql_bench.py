"""executePlaybook through the gateway vs the same schema on Starlette + Strawberry.

``.venv/bin/python bench/graphql_bench.py [--duration 8] [--rounds 3] [--connections 16]``

Starts (loopback only, every process its own): the NoETL stand-in, the gateway
(``python -m gateway``), Strawberry in its default configuration, and Strawberry with its
parser/validation caches. ``wrk`` (the load generator, a separate process) then sends the
issue's example mutation to each, in rounds, twice per target: at ``--connections`` for
throughput, and with one connection for latency. The stand-in is also measured directly
(the same ``POST /api/execute`` the servers send), so "added latency" is the server's p50
minus the stand-in's own. Bounded: ``rounds x 4 targets x 2 runs x duration``. ``--pin``
puts the servers on CPU 0 and the stand-in and wrk on CPU 1.
Needs ``wrk`` (Debian: ``apt-get install wrk``) and ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
from graphql_common import MUTATION, executed, http_json, login

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# The stand-in, measured directly: the same request the servers send it for the mutation.
DIRECT_BODY = {
    "path": "tests/noop",
    "payload": {"query": "Flights from SFO to JFK tomorrow"},
    "workload": {"query": "Flights from SFO to JFK tomorrow"},
    "resource_kind": "playbook",
}


# With --pin the server under test gets CPU 0 and the stand-in and wrk share CPU 1. Off by
# default: on this machine pinning doubled every server's one-connection latency (cross-CPU
# wake-ups on each hop) and raised CPU per request by ~15 % without changing the ratios.
SERVER_CPU, LOAD_CPU = 0, 1
PIN = False


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0])), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling a port until the process listens
    raise RuntimeError(f"{url} did not start")


@dataclass
class Target:
    name: str
    url: str
    body: Any
    pid: int
    token: str | None = None
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"throughput": [], "latency": []})


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs = harness.Processes("graphql")

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cpu: int = SERVER_CPU
    ) -> subprocess.Popen[bytes]:
        return self.procs.start(name, argv, env, {cpu} if PIN else None)

    def stop(self) -> None:
        self.procs.stop()

    def start(self) -> list[Target]:
        standin_port, gateway_port, plain_port, cached_port = (harness.free_port() for _ in range(4))
        standin = f"http://127.0.0.1:{standin_port}"
        proc = self.spawn("standin", [PYTHON, "-m", "tests.standin", "--port", str(standin_port)], cpu=LOAD_CPU)
        wait_http(standin, proc)
        self.standin_pid = proc.pid
        pids = {}
        gateway = f"http://127.0.0.1:{gateway_port}"
        env = harness.gateway_env(gateway_port, NOETL_BASE_URL=standin)
        proc = self.spawn("gateway", [PYTHON, "-m", "gateway"], env)
        wait_http(gateway, proc)
        pids["gateway"] = proc.pid
        app = str(ROOT / "bench" / "graphql_strawberry_app.py")
        plain = f"http://127.0.0.1:{plain_port}"
        proc = self.spawn("strawberry", [PYTHON, app, "--port", str(plain_port), "--noetl", standin])
        wait_http(plain, proc)
        pids["plain"] = proc.pid
        cached = f"http://127.0.0.1:{cached_port}"
        proc = self.spawn(
            "strawberry-cached", [PYTHON, app, "--port", str(cached_port), "--noetl", standin, "--caches"]
        )
        wait_http(cached, proc)
        pids["cached"] = proc.pid
        token = login(gateway)
        query = {"query": MUTATION}
        targets = [
            Target("noetl-standin (direct)", f"{standin}/api/execute", DIRECT_BODY, self.standin_pid),
            Target("gateway (Tornado + graphql-core)", f"{gateway}/graphql", query, pids["gateway"], token),
            Target("strawberry (default)", f"{plain}/graphql", query, pids["plain"]),
            Target("strawberry (parser+validation caches)", f"{cached}/graphql", query, pids["cached"]),
        ]
        for target in targets:  # correctness first, and warm every cache
            for _ in range(50):
                status, answer = http_json("POST", target.url, target.body, target.token)
                ok = status == 200 and (
                    "execution_id" in answer
                    if target.name.startswith("noetl")
                    else executed(answer) and not answer.get("errors")
                )
                if not ok:
                    raise RuntimeError(f"{target.name}: unexpected answer {status} {answer}")
        return targets

    def cpu_seconds(self, pid: int) -> tuple[float, float]:
        """CPU time used so far by a server and by the stand-in behind it."""
        return harness.cpu_seconds(pid, with_children=False), harness.cpu_seconds(self.standin_pid, with_children=False)

    def wrk(self, target: Target, connections: int) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        setup = harness.post_lua(json.dumps(target.body), headers)
        cpu_before = self.cpu_seconds(target.pid)
        result = harness.wrk_json(target.url, setup, connections, self.args.duration, LOAD_CPU if PIN else None)
        cpu_after = self.cpu_seconds(target.pid)
        result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
        # CPU per request of the server under test (and of the stand-in behind it): steadier
        # than rps when other jobs share the machine.
        result["cpu_us"] = (cpu_after[0] - cpu_before[0]) / result["requests"] * 1e6
        result["standin_cpu_us"] = (cpu_after[1] - cpu_before[1]) / result["requests"] * 1e6
        if result["socket_errors"] or result["non2xx"]:
            raise RuntimeError(f"{target.name}: errors under load: {result}")
        return result

    def run(self) -> dict[str, Any]:
        targets = self.start()
        for round_no in range(self.args.rounds):
            for target in targets:
                for mode, connections in (("throughput", self.args.connections), ("latency", 1)):
                    result = self.wrk(target, connections)
                    target.runs[mode].append(result)
                    print(
                        f"round {round_no + 1} {target.name:40s} {mode:10s} c={connections:<3d} "
                        f"{result['rps']:8.0f} rps  p50 {result['p50_us'] / 1000:6.2f} ms  "
                        f"p99 {result['p99_us'] / 1000:6.2f} ms  cpu {result['cpu_us']:5.0f} us/req",
                        flush=True,
                    )
        return summarise(targets, self.args)


def summarise(targets: list[Target], args: argparse.Namespace) -> dict[str, Any]:
    def median(target: Target, mode: str, key: str) -> float:
        return float(statistics.median(run[key] for run in target.runs[mode]))

    rows: list[dict[str, Any]] = []
    direct = targets[0]
    for target in targets:
        rows.append(
            {
                "target": target.name,
                "rps": median(target, "throughput", "rps"),
                "best_rps": max(run["rps"] for run in target.runs["throughput"]),
                "cpu_us_per_request": median(target, "throughput", "cpu_us"),
                "standin_cpu_us_per_request": median(target, "throughput", "standin_cpu_us"),
                "loaded_p50_ms": median(target, "throughput", "p50_us") / 1000,
                "loaded_p99_ms": median(target, "throughput", "p99_us") / 1000,
                "p50_ms": median(target, "latency", "p50_us") / 1000,
                "p99_ms": median(target, "latency", "p99_us") / 1000,
                "added_p50_ms": (median(target, "latency", "p50_us") - median(direct, "latency", "p50_us")) / 1000,
            }
        )
    gateway, plain, cached = rows[1], rows[2], rows[3]
    return {
        "settings": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "pinned": PIN,
        },
        "rows": rows,
        "ratio_vs_strawberry_default": gateway["rps"] / plain["rps"],
        "ratio_vs_strawberry_cached": gateway["rps"] / cached["rps"],
        "best_ratio_vs_strawberry_default": gateway["best_rps"] / plain["best_rps"],
        "best_ratio_vs_strawberry_cached": gateway["best_rps"] / cached["best_rps"],
        "cpu_ratio_vs_strawberry_default": plain["cpu_us_per_request"] / gateway["cpu_us_per_request"],
        "cpu_ratio_vs_strawberry_cached": cached["cpu_us_per_request"] / gateway["cpu_us_per_request"],
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"| target | rps median / best (c={summary['settings']['connections']}) | server CPU per request "
        "| p50 / p99 under load | p50 / p99 at c=1 | added p50 at c=1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        added = "—" if row["target"].startswith("noetl") else f"{row['added_p50_ms']:.2f} ms"
        lines.append(
            f"| {row['target']} | {row['rps']:.0f} / {row['best_rps']:.0f} | {row['cpu_us_per_request']:.0f} µs "
            f"| {row['loaded_p50_ms']:.2f} / {row['loaded_p99_ms']:.2f} ms "
            f"| {row['p50_ms']:.2f} / {row['p99_ms']:.2f} ms | {added} |"
        )
    lines.append("")
    lines.append(
        f"Gateway / Strawberry default: **{summary['ratio_vs_strawberry_default']:.2f}×** rps "
        f"(best rounds {summary['best_ratio_vs_strawberry_default']:.2f}×); "
        f"gateway / Strawberry with caches: **{summary['ratio_vs_strawberry_cached']:.2f}×** rps "
        f"(best rounds {summary['best_ratio_vs_strawberry_cached']:.2f}×). "
        f"Server CPU per request, Strawberry / gateway: {summary['cpu_ratio_vs_strawberry_default']:.2f}× (default), "
        f"{summary['cpu_ratio_vs_strawberry_cached']:.2f}× (caches)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16, help="connections of the throughput runs")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--pin", action="store_true", help="servers on CPU 0; stand-in and wrk on CPU 1")
    args = parser.parse_args()
    global PIN
    PIN = args.pin
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk (the load generator runs as its own process)")
    bench = Bench(args)
    try:
        summary = bench.run()
    finally:
        bench.stop()
    print()
    print(markdown(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
