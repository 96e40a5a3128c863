"""Proxy throughput: the gateway's authenticated /noetl proxy vs bare proxies, same upstream, same run.

Targets, each answering ``GET /noetl/items`` from the same upstream (``GET /api/items``):

* ``gateway``          — ``python -m gateway``: session check (cache hit), path and header
  hygiene, streamed relay. Run twice: default logging (one access-log line per request, to a
  file) and ``GATEWAY_LOG_LEVEL=WARNING`` (no access line for a 200).
* ``bare-aiohttp``     — bench/proxy_bare.py with the gateway's own aiohttp session, no auth:
  the baseline the gateway is held to (issue 19: ≥ 0.9× by rps with the access log on; issue 5: 0.8×).
* ``bare-simple`` / ``bare-curl`` / ``bare-httpx`` — the same bare proxy with other clients
  (the measurement behind the client choice in docs/decisions.md; curl/httpx need
  ``--alt-python`` pointing at a venv that has pycurl/httpx, else they are skipped).
* ``nginx``            — nginx ``proxy_pass`` with upstream keep-alive (one worker).

The upstream is nginx (one worker, ``return 200`` of a small JSON body; it also answers the
gateway's one session validation), so the upstream is never the bottleneck. Loopback only;
the proxy under test is pinned to CPU 0, wrk and the upstream to CPU 1. Every target gets a
warm-up, then ``--rounds`` runs of ``--duration`` seconds in rotating order; the median round
is reported. Load: ``wrk -t1 -c50 --latency``.

Usage: .venv/bin/python bench/proxy_bench.py [--duration 5] [--rounds 5] [--clients [--alt-python /path/python]]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.nats_server import NatsServer, free_port, nats_server_binary  # noqa: E402

TOKEN = "sess_bench_" + "x" * 32
USER = {"user_id": 7, "email": "bench@example.com", "display_name": "bench", "roles": ["admin"]}
VALIDATE_ANSWER = json.dumps(
    {"status": "ok", "valid": True, "user": USER, "expires_at": "2099-01-01T00:00:00Z", "error": None}
)
ITEMS_ANSWER = json.dumps({"status": "ok", "items": [1, 2, 3], "source": "bench upstream"})


@dataclass
class Target:
    name: str
    url: str
    headers: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    rps: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # CPU time of the proxy per request


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children (nginx's worker), from /proc."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    for one in pids:
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def nginx_conf(workdir: Path, name: str, body: str) -> Path:
    conf = workdir / f"{name}.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
user root root;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {workdir}/{name}-body;
    proxy_temp_path {workdir}/{name}-proxy;
    fastcgi_temp_path {workdir}/{name}-fcgi;
    uwsgi_temp_path {workdir}/{name}-uwsgi;
    scgi_temp_path {workdir}/{name}-scgi;
{body}
}}
"""
    )
    return conf


def start(
    cmd: list[str], cpu: int, log: Path, env: dict[str, str] | None = None, cwd: str | None = None
) -> subprocess.Popen[bytes]:
    taskset = shutil.which("taskset")
    full = [taskset, "-c", str(cpu), *cmd] if taskset else cmd
    with open(log, "wb") as out:
        return subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)


def wait_http(url: str, headers: dict[str, str] | None = None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=1) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # polling until it answers
            last = exc
        time.sleep(0.1)  # polling a server that is starting
    raise SystemExit(f"{url} did not answer 200: {last}")


def run_wrk(target: Target, duration: float, connections: int) -> None:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    for header in target.headers:
        cmd += ["-H", header]
    cpu_before = cpu_seconds(target.proc.pid) if target.proc else 0.0
    done = subprocess.run([*cmd, target.url], capture_output=True, text=True, timeout=duration + 30)
    cpu_used = cpu_seconds(target.proc.pid) - cpu_before if target.proc else 0.0
    out = done.stdout
    if "Requests/sec" not in out:
        raise SystemExit(f"wrk failed for {target.name}: {done.stderr or out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    target.rps.append(rps)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    target.cpu_us.append(cpu_used / max(requests, 1) * 1e6)
    target.p50_ms.append(_latency(out, "50%"))
    target.p99_ms.append(_latency(out, "99%"))
    if "Non-2xx" in out or "Socket errors" in out:
        lines = [line.strip() for line in out.splitlines() if "Non-2xx" in line or "Socket" in line]
        target.errors.append(" ".join(lines))


def _latency(out: str, pct: str) -> float:
    match = re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def main() -> None:
    parser = argparse.ArgumentParser(description="gateway /noetl proxy vs bare proxies vs nginx")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--clients", action="store_true", help="also bare proxies with other HTTP clients")
    parser.add_argument("--alt-python", help="python with pycurl/httpx for the bare-curl/bare-httpx targets")
    parser.add_argument("--skip", default="", help="comma-separated target names to leave out")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument(
        "--compare-root",
        help="another checkout (e.g. main): its gateway, default logging, is one more target, same run",
    )
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} not found (apt-get install -y wrk nginx-light)")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    load_start = os.getloadavg()[0]
    python = sys.executable
    workdir = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    skip = {name for name in args.skip.split(",") if name}
    procs: list[subprocess.Popen[bytes]] = []
    nats: NatsServer | None = None
    try:
        upstream_port = free_port()
        upstream_conf = nginx_conf(
            workdir,
            "upstream",
            f"""
    server {{
        listen 127.0.0.1:{upstream_port} backlog=4096;
        default_type application/json;
        location = /api/auth/session/validate {{ return 200 '{VALIDATE_ANSWER}'; }}
        location /api/ {{ return 200 '{ITEMS_ANSWER}'; }}
    }}""",
        )
        procs.append(start([nginx, "-c", str(upstream_conf)], 1, workdir / "upstream.out"))
        upstream = f"http://127.0.0.1:{upstream_port}"
        wait_http(f"{upstream}/api/items")

        targets: list[Target] = []
        auth = {"Authorization": f"Bearer {TOKEN}"}
        binary = nats_server_binary()
        if binary:
            nats = NatsServer(binary)
            nats.start()
        gateways = [("gateway", "INFO", None), ("gateway-nolog", "WARNING", None)]
        if args.compare_root:
            gateways.append(("gateway-compare", "INFO", args.compare_root))
        for name, level, cwd in gateways:
            if name in skip:
                continue
            port = free_port()
            env = {
                **os.environ,
                "ROUTER_PORT": str(port),
                "GATEWAY_BIND": "127.0.0.1",
                "NOETL_BASE_URL": upstream,
                "NATS_URL": nats.url if nats else "",
                "GATEWAY_LOG_LEVEL": level,
                "GATEWAY_CALLBACK_SECRET": "bench-secret-0123456789abcdefghijklmnop",
            }
            if cwd:
                env["PYTHONPATH"] = cwd
            procs.append(start([python, "-m", "gateway"], 0, workdir / f"{name}.log", env, cwd))
            url = f"http://127.0.0.1:{port}/noetl/items"
            wait_http(url, auth)  # validates once through the upstream; every later request is a cache hit
            targets.append(Target(name, url, [f"Authorization: Bearer {TOKEN}"], procs[-1]))
        bare = [("bare-aiohttp", python, "aiohttp")]
        if args.clients:
            bare.append(("bare-simple", python, "simple"))
            if args.alt_python:
                bare += [("bare-curl", args.alt_python, "curl"), ("bare-httpx", args.alt_python, "httpx")]
        for name, interpreter, client in bare:
            if name in skip:
                continue
            port = free_port()
            cmd = [interpreter, str(ROOT / "bench" / "proxy_bare.py"), "--port", str(port)]
            cmd += ["--upstream", upstream, "--client", client]
            procs.append(start(cmd, 0, workdir / f"{name}.log", {**os.environ, "PYTHONPATH": str(ROOT)}))
            url = f"http://127.0.0.1:{port}/noetl/items"
            wait_http(url)
            targets.append(Target(name, url, [], procs[-1]))
        if "nginx" not in skip:
            port = free_port()
            conf = nginx_conf(
                workdir,
                "proxy",
                f"""
    upstream noetl {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /noetl/ {{
            proxy_pass http://noetl/api/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}""",
            )
            procs.append(start([nginx, "-c", str(conf)], 0, workdir / "proxy.out"))
            url = f"http://127.0.0.1:{port}/noetl/items"
            wait_http(url)
            targets.append(Target("nginx", url, [], procs[-1]))

        for target in targets:  # warm-up: pools filled, code paths hot
            run_wrk(target, 2, args.connections)
            target.rps.clear()
            target.p50_ms.clear()
            target.p99_ms.clear()
            target.cpu_us.clear()
        for round_no in range(args.rounds):
            shift = round_no % len(targets)
            for target in targets[shift:] + targets[:shift]:
                run_wrk(target, args.duration, args.connections)
                rps, p99, cpu = target.rps[-1], target.p99_ms[-1], target.cpu_us[-1]
                line = (
                    f"round {round_no + 1} {target.name:14s} {rps:9.0f} rps  p99 {p99:8.2f} ms  {cpu:6.0f} CPU µs/req"
                )
                print(line, flush=True)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if nats is not None:
            nats.close()

    base = next((t for t in targets if t.name == "bare-aiohttp"), None)
    load = os.getloadavg()
    print(
        f"\nwrk -t1 -c{args.connections}, {args.rounds} x {args.duration:g}s per target; "
        f"load average {load_start:.2f} -> {load[0]:.2f} (1 min, start -> end)"
    )
    print("best = the round with the most rps (other load on the machine only ever lowers a round)")
    print("CPU µs/req = the proxy process's own CPU time per request served (other load barely moves it)")
    print(
        "| target | rps best | × bare-aiohttp | p50 ms | p99 ms | rps median | p99 ms median "
        "| CPU µs/req | capacity × bare-aiohttp |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    base_best = max(base.rps) if base else float("nan")
    base_cpu = statistics.median(base.cpu_us) if base else float("nan")
    for target in targets:
        best = max(range(len(target.rps)), key=lambda i: target.rps[i])
        cpu = statistics.median(target.cpu_us)
        print(
            f"| {target.name} | {target.rps[best]:,.0f} | {target.rps[best] / base_best:.2f} | "
            f"{target.p50_ms[best]:.2f} | {target.p99_ms[best]:.2f} | {statistics.median(target.rps):,.0f} | "
            f"{statistics.median(target.p99_ms):.2f} | {cpu:.0f} | {base_cpu / cpu:.2f} |"
        )
        results.append(
            {
                "target": target.name,
                "rps": target.rps,
                "p50_ms": target.p50_ms,
                "p99_ms": target.p99_ms,
                "cpu_us_per_request": target.cpu_us,
            }
        )
        if target.errors:
            print(f"  ! {target.name}: {'; '.join(target.errors)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
