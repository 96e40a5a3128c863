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
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# The example mutation, aimed at the stand-in's no-op playbook so that the
# stand-in does the same (minimal) work for every target, the direct baseline included.
MUTATION = """mutation {
  executePlaybook(
    name: "tests/noop"
    variables: { query: "Flights from SFO to JFK tomorrow" }
  ) { id executionId requestId status }
}"""
DIRECT_BODY = {
    "path": "tests/noop",
    "payload": {"query": "Flights from SFO to JFK tomorrow"},
    "workload": {"query": "Flights from SFO to JFK tomorrow"},
    "resource_kind": "playbook",
}
LUA = """
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
%(extra)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "socket_errors": %%d, "non2xx": %%d, ' ..
    '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "mean_us": %%.1f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


# With --pin the server under test gets CPU 0 and the stand-in and wrk share CPU 1. Off by
# default: on this machine pinning doubled every server's one-connection latency (cross-CPU
# wake-ups on each hop) and raised CPU per request by ~15 % without changing the ratios.
SERVER_CPU, LOAD_CPU = 0, 1
PIN = False


def pinned(cpu: int) -> Any:
    """A preexec_fn pinning the child to one CPU when --pin is given (and there are 2 CPUs)."""

    def pin() -> None:
        if PIN and (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(0, {cpu})

    return pin


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="graphql-bench-"))

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cpu: int = SERVER_CPU
    ) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # closed when the bench ends
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(cpu),
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def start(self) -> list[Target]:
        standin_port, gateway_port, plain_port, cached_port = (free_port() for _ in range(4))
        standin = f"http://127.0.0.1:{standin_port}"
        proc = self.spawn("standin", [PYTHON, "-m", "tests.standin", "--port", str(standin_port)], cpu=LOAD_CPU)
        wait_http(standin, proc)
        self.standin_pid = proc.pid
        pids = {}
        gateway = f"http://127.0.0.1:{gateway_port}"
        env = {
            "ROUTER_PORT": str(gateway_port),
            "GATEWAY_BIND": "127.0.0.1",
            "GATEWAY_PUBLIC_URL": gateway,
            "NOETL_BASE_URL": standin,
            "NATS_URL": "",
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_CALLBACK_SECRET": "bench-callback-secret-0123456789abcdef",
        }
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
        status, answer = http_json("POST", f"{gateway}/api/auth/login", {"auth0_token": "good-bench"})
        if status != 200:
            raise RuntimeError(f"login failed: {status} {answer}")
        token = answer["session_token"]
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
                    else bool(answer.get("data", {}).get("executePlaybook", {}).get("executionId"))
                    and not answer.get("errors")
                )
                if not ok:
                    raise RuntimeError(f"{target.name}: unexpected answer {status} {answer}")
        return targets

    def wrk(self, target: Target, connections: int) -> dict[str, Any]:
        extra = f'wrk.headers["Authorization"] = "Bearer {target.token}"' if target.token else ""
        script = self.tmp / "post.lua"
        script.write_text(LUA % {"body": json.dumps(target.body), "extra": extra})
        argv = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{self.args.duration}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            target.url,
        ]
        cpu_before = cpu_seconds(target.pid), cpu_seconds(self.standin_pid)
        out = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=self.args.duration + 30,
            check=True,
            preexec_fn=pinned(LOAD_CPU),
        ).stdout
        cpu_after = cpu_seconds(target.pid), cpu_seconds(self.standin_pid)
        line = next(line for line in out.splitlines() if line.startswith("{"))
        result: dict[str, Any] = json.loads(line)
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
