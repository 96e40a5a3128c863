"""What tracing costs on a proxied GET: the gateway without tracing code vs tracing off vs on, same run.

Targets, each a ``python -m gateway`` process answering ``GET /noetl/items`` (session cache hit,
streamed relay) from the same nginx upstream:

* ``untraced``        — this script's ``--serve-untraced`` mode: the gateway with every hook of
  ``gateway/tracing`` replaced by a no-op before the gateway is imported, and ``opentelemetry``
  made unimportable: a build without the SDK (the baseline).
* ``off``             — the gateway as shipped, no ``OTEL_*`` variables (issue 18: ≤ 2 % below the baseline).
* ``off+traceparent`` — the same process, every request carrying a caller's ``traceparent``,
  which is then passed on to the upstream unchanged.
* ``on 0.01``         — ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (a counting OTLP receiver,
  tests/support/otlp_receiver.py, in its own process), ``parentbased_traceidratio`` at 0.01
  (issue 18: ≤ 5 % below the baseline).
* ``on 1.0``          — every request traced and exported (reported).

Gateways on CPU 0; nginx, the receiver and the load generator (wrk, else harness.py's) on CPU 1.
After a warm-up, ``--runs`` rounds of ``--duration`` seconds in rotating order; per target the
median round. Ratios are against ``untraced`` of the same run; CPU µs per request (from /proc) is
reported beside rps because other jobs on a shared machine move rps more than CPU per request.

Usage: .venv/bin/python bench/tracing_bench.py [--runs 5] [--duration 5] [--smoke] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import urllib.request
from contextlib import nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    PYTHON,
    LoadPlan,
    Processes,
    free_port,
    gateway_env,
    nats_server,
    run_load,
    wait_http,
    write_json,
)

TOKEN = "sess_bench_" + "t" * 32
USER = {"user_id": 7, "email": "bench@example.com", "display_name": "bench", "roles": ["admin"]}
VALIDATE = json.dumps({"status": "ok", "valid": True, "user": USER, "expires_at": "2099-01-01T00:00:00Z"})
ITEMS = json.dumps({"status": "ok", "items": [1, 2, 3]})
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def serve_untraced() -> None:
    """The gateway with the tracing hooks as no-ops and no OpenTelemetry importable (the baseline)."""
    import gateway.tracing as tracing

    async def no_shutdown(_tracing: Any, timeout: float = 5.0) -> None:
        return None

    def same(value: Any) -> Any:
        return value

    stubs: dict[str, Any] = {
        "activate": lambda _tracing: None,
        "begin_request": lambda *_args: None,
        "end_request": lambda *_args: None,
        "graphql_operation": lambda *_args: nullcontext(),
        "nats_publish": lambda *_args: nullcontext(),
        "nats_consumer": same,
        "kv_operations": lambda *_ops: same,
        "session_lookup": same,
        "playbook_variables": same,
        "upstream_middlewares": lambda *_args: (),
        "passthrough_headers": dict,
        "log_ids": lambda: None,
        "tracing_from_environ": lambda environ=None: None,
        "shutdown_tracing": no_shutdown,
    }
    for name, stub in stubs.items():
        setattr(tracing, name, stub)
    sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # any import of it now fails
    from gateway.__main__ import main

    raise SystemExit(main([]))


def hook_cost(calls: int = 200_000) -> dict[str, float]:
    """In-process µs a proxied GET spends in the tracing hooks when off (what the hooks add, nothing else):
    the request's begin/end and the session-lookup decorator. Off, the NoETL sessions have no client
    middleware (the caller's ``traceparent`` is a header the proxy forwards); aiohttp's middleware
    chain, which an in-process loop like this one does not see, cost ≈ 10 µs a call when it had one."""
    import asyncio
    import time

    from tornado.httputil import HTTPHeaders

    from gateway.tracing import begin_request, end_request, session_lookup

    class Cache:
        async def plain(self, token: str) -> str:
            return token

        @session_lookup
        async def traced(self, token: str) -> str:
            return token

    def describe() -> tuple[str, str, dict[str, Any]]:
        return "GET", "/noetl/{path}", {}

    async def measure(headers: HTTPHeaders) -> float:
        cache = Cache()
        started = time.perf_counter()
        for _ in range(calls):
            span = begin_request(None, headers, describe)
            await cache.traced("t")
            end_request(span, 200, None)
        hooked = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(calls):
            await cache.plain("t")
        return (hooked - (time.perf_counter() - started)) / calls * 1e6

    plain = HTTPHeaders({"Authorization": "Bearer x"})
    traced = HTTPHeaders({"Authorization": "Bearer x", "traceparent": TRACEPARENT})
    return {"no traceparent": asyncio.run(measure(plain)), "with traceparent": asyncio.run(measure(traced))}


def nginx_upstream(procs: Processes, port: int) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = procs.workdir / "upstream.conf"
    work = procs.workdir
    conf.write_text(
        f"""worker_processes 1; daemon off; user root root; pid {work}/nginx.pid; error_log {work}/nginx.err warn;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000; client_body_temp_path {work}/b; proxy_temp_path {work}/p;
  fastcgi_temp_path {work}/f; uwsgi_temp_path {work}/u; scgi_temp_path {work}/s;
  server {{
    listen 127.0.0.1:{port} backlog=4096; default_type application/json;
    location = /api/auth/session/validate {{ return 200 '{VALIDATE}'; }}
    location /api/ {{ return 200 '{ITEMS}'; }}
  }}
}}
"""
    )
    procs.start("nginx", [nginx, "-c", str(conf)], cpus={1})
    wait_http(f"http://127.0.0.1:{port}/api/items")


def main() -> None:
    if sys.argv[1:] == ["--serve-untraced"]:
        serve_untraced()
    parser = argparse.ArgumentParser(description="tracing cost on a proxied GET, against a build without it")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.duration, args.connections = 1, 1.0, 8
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        raise SystemExit("nginx not found (apt-get install -y nginx-light)")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # The gateways stop first (the inner context): a gateway with tracing on flushes its spans as it
    # stops, and with the receiver gone its exporter retries for seconds.
    with nats_server() as nats_url, Processes("tracing-upstream") as upstream, Processes("tracing") as procs:
        upstream_port = free_port()
        nginx_upstream(upstream, upstream_port)
        receiver_port = free_port()
        upstream.start("otlp", [PYTHON, "-m", "tests.support.otlp_receiver", str(receiver_port)], cpus={1})
        wait_http(f"http://127.0.0.1:{receiver_port}/count")
        common = {"NOETL_BASE_URL": f"http://127.0.0.1:{upstream_port}", "NATS_URL": nats_url}
        quiet = {name: "" for name in os.environ if name.startswith("OTEL_")}  # inherited ones must not leak in
        on = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver_port}"}
        on["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        servers = {
            "untraced": ([PYTHON, str(Path(__file__).resolve()), "--serve-untraced"], quiet),
            "off": ([PYTHON, "-m", "gateway"], quiet),
            "on 0.01": ([PYTHON, "-m", "gateway"], {**quiet, **on, "OTEL_TRACES_SAMPLER_ARG": "0.01"}),
            "on 1.0": ([PYTHON, "-m", "gateway"], {**quiet, **on, "OTEL_TRACES_SAMPLER_ARG": "1.0"}),
        }
        targets: list[tuple[str, str, Any, dict[str, str]]] = []  # name, url, process, headers
        for name, (argv, env) in servers.items():
            port = free_port()
            proc = procs.start(name.replace(" ", "-"), argv, {**gateway_env(port, **common), **env}, cpus={0})
            url = f"http://127.0.0.1:{port}/noetl/items"
            wait_http(url, proc, headers=auth, timeout=60)  # one validation; every measured request is a cache hit
            targets.append((name, url, proc, auth))
            if name == "off":
                targets.append(("off+traceparent", url, proc, {**auth, "traceparent": TRACEPARENT}))
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in targets}
        for name, url, proc, headers in targets if not args.smoke else ():  # warm-up
            run_load(name, LoadPlan(url, min(2.0, args.duration), args.connections, headers, cpu=1), proc.pid)
        for round_no in range(args.runs):
            shift = round_no % len(targets)
            for name, url, proc, headers in targets[shift:] + targets[:shift]:
                load = run_load(name, LoadPlan(url, args.duration, args.connections, headers, cpu=1), proc.pid)
                rounds[name].append(
                    {"rps": load.rps, "cpu_us": load.cpu_us, "p99_ms": load.p99_ms, "errors": load.errors}
                )
                print(f"round {round_no + 1} {name:16s} {load.rps:8.0f} rps {load.cpu_us:6.0f} CPU µs/req", flush=True)
        with urllib.request.urlopen(f"http://127.0.0.1:{receiver_port}/count", timeout=5) as resp:
            exported = int(resp.read())
    base_rps = statistics.median(r["rps"] for r in rounds["untraced"])
    base_cpu = statistics.median(r["cpu_us"] for r in rounds["untraced"])
    results: dict[str, Any] = {"exported_spans": exported, "targets": {}}
    print(f"\n{args.runs} rounds x {args.duration:g}s, {args.connections} connections; spans exported: {exported}")
    print("| target | rps (median) | × untraced | CPU µs/req | × untraced CPU | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, samples in rounds.items():
        rps = statistics.median(r["rps"] for r in samples)
        cpu = statistics.median(r["cpu_us"] for r in samples)
        p99 = statistics.median(r["p99_ms"] for r in samples)
        errors = sum(int(r["errors"]) for r in samples)
        print(
            f"| {name} | {rps:,.0f} | {rps / base_rps:.3f} | {cpu:.0f} | {cpu / base_cpu:.3f} | {p99:.2f} | {errors} |"
        )
        results["targets"][name] = {"rounds": samples, "rps_ratio": rps / base_rps, "cpu_ratio": cpu / base_cpu}
    results["hook_us_off"] = hooks = hook_cost(20_000 if args.smoke else 200_000)
    print(
        "tracing off, in-process µs per proxied GET spent in the hooks: "
        + ", ".join(f"{k} {v:.2f}" for k, v in hooks.items())
    )
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
