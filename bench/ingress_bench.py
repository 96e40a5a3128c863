"""Push ingress: what verifying a delivery costs (µs), and deliveries per second against ``GET /health``.

* **verify** (in process): ``verify_hmac`` on a 6 KiB GitHub push body (with and without a
  timestamp), ``verify_bearer``, and the Pub/Sub OIDC check (``check_claims``: RS256 signature and
  claims, key cached) — each timed per call; baselines in the same run: ``hashlib.sha256`` of the
  same body (the floor of any HMAC) and a ``dict.get``.
* **http** (processes): a real ``python -m gateway`` (default logging, real nats-server for the
  idempotency window, pinned to CPU 0) in front of this file's ``--serve-noetl`` stub (``POST
  /api/execute`` answers an id at once), load from wrk -t1 -c``--connections`` on CPU 1. In turns,
  ``--runs`` rounds of ``--duration`` s each: ``GET /health``; ``POST /ingress/github`` with a
  new ``X-GitHub-Delivery`` per request (verify, KV claim, execute, KV record); the same delivery
  over and over (verify, KV read: the redelivery answer). Reported: rps, p50/p99 and the
  gateway's CPU µs per request (from /proc), and ingress rps / health rps per round.

Usage: .venv/bin/python bench/ingress_bench.py [--runs 3] [--duration 5] [--connections 16]
       [--calls 20000] [--smoke] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import harness
import jwt
import orjson
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from harness import Processes

from gateway.ingress.listeners import Listener
from gateway.ingress.oidc import check_claims
from gateway.ingress.spec import FileListenerSpec
from gateway.ingress.verify import verify_bearer, verify_hmac

SECRET = "bench-webhook-secret-0123456789abcdef"
AUDIENCE = "https://gateway.bench/ingress/billing"
ACCOUNT = "pubsub-push@bench.iam.gserviceaccount.com"
PUSH = {
    "ref": "refs/heads/main",
    "repository": {"full_name": "acme/app", "description": "x" * 200},
    "commits": [{"id": f"{n:040x}", "message": "commit message " * 20, "author": {"name": "dev"}} for n in range(16)],
}
BODY = orjson.dumps(PUSH)
SIGNATURE = "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()


def listener(verify: dict[str, Any]) -> Listener:
    spec = FileListenerSpec.model_validate({"verify": verify, "dispatch": {"playbook": "bench/noop"}})
    return Listener("bench", spec, 1 << 20, 0, "file", SECRET.encode())


def per_call_us(fn: Callable[[], object], calls: int) -> dict[str, float]:
    """p50/p99/mean of one call in µs (each call timed on its own)."""
    samples: list[int] = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    ordered = sorted(samples)
    return {
        "p50": ordered[len(ordered) // 2] / 1000,
        "p99": ordered[int(len(ordered) * 0.99)] / 1000,
        "mean": statistics.fmean(samples) / 1000,
    }


def verify_costs(calls: int) -> dict[str, dict[str, float]]:
    stamp = str(int(time.time()))
    hook = listener({"type": "hmac_sha256", "secret_env": "X"})
    stamped = listener({"type": "hmac_sha256", "secret_env": "X", "timestamp_header": "X-Ts"})
    bearer = listener({"type": "bearer", "secret_env": "X"})
    signed = "sha256=" + hmac.new(SECRET.encode(), f"{stamp}.".encode() + BODY, hashlib.sha256).hexdigest()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": ACCOUNT, "email_verified": True}
    token = jwt.encode({**claims, "iat": now, "exp": now + 3600}, key, algorithm="RS256", headers={"kid": "k"})
    public = key.public_key()
    table = {"X-Hub-Signature-256": "x"}
    return {
        f"hmac_sha256 ({len(BODY)} B body)": per_call_us(
            lambda: verify_hmac(hook, {"X-Signature": SIGNATURE}, BODY), calls
        ),
        "hmac_sha256 + timestamp": per_call_us(
            lambda: verify_hmac(stamped, {"X-Signature": signed, "X-Ts": stamp}, BODY), calls
        ),
        "bearer": per_call_us(lambda: verify_bearer(bearer, {"Authorization": f"Bearer {SECRET}"}), calls),
        "pubsub_oidc (RS256 + claims)": per_call_us(lambda: check_claims(token, public, AUDIENCE, ACCOUNT), calls),
        "baseline: sha256 of the body": per_call_us(lambda: hashlib.sha256(BODY).digest(), calls),
        "baseline: dict lookup": per_call_us(lambda: table.get("X-Hub-Signature-256"), calls),
    }


# -- HTTP -------------------------------------------------------------------------------------------


def serve_noetl(port: int) -> None:
    """The stub upstream: ``POST /api/execute`` answers a new id at once (NoETL's cost left out)."""
    from tornado.httpserver import HTTPServer
    from tornado.web import Application, RequestHandler

    class Execute(RequestHandler):
        count = 0

        def post(self) -> None:
            Execute.count += 1
            self.finish({"execution_id": str(10**15 + Execute.count), "status": "started"})

    class Health(RequestHandler):
        def get(self) -> None:
            self.finish({"status": "ok"})

    async def run() -> None:
        HTTPServer(Application([(r"/api/execute", Execute), (r"/api/health", Health)])).listen(port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(run())


def wrk_post(url: str, delivery: str | None, duration: float, connections: int, pid: int) -> harness.Load:
    """wrk POSTing the signed body; ``delivery`` None: a new delivery id per request."""
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-Hub-Signature-256": SIGNATURE}
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    lua = harness.post_lua(BODY.decode(), headers)
    if delivery is None:
        run = uuid.uuid4().hex[:8]
        lua += (
            "\nlocal n = 0\nrequest = function()\n  n = n + 1\n  local h = {}\n"
            "  for k, v in pairs(wrk.headers) do h[k] = v end\n"
            f"  h['X-GitHub-Delivery'] = '{run}-' .. n\n  return wrk.format(nil, nil, h, nil)\nend"
        )
    before = harness.cpu_seconds(pid)
    result = harness.wrk_json(url, lua, connections, duration, cpu=1)
    used = harness.cpu_seconds(pid) - before
    seconds = result["duration_us"] / 1e6
    return harness.Load(
        target="ingress",
        requests=result["requests"],
        seconds=seconds,
        rps=result["requests"] / seconds,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        errors=result["socket_errors"] + result["non2xx"],
        cpu_us=used / result["requests"] * 1e6 if result["requests"] else float("nan"),
    )


def http_rounds(args: argparse.Namespace) -> dict[str, Any]:
    if not harness.have_wrk():
        return {"skipped": "wrk not installed (apt-get install wrk)"}
    runs, duration = (1, 1.0) if args.smoke else (args.runs, args.duration)
    with harness.nats_server() as nats_url, Processes("ingress") as procs:
        noetl_port, gw_port = harness.free_port(), harness.free_port()
        noetl = procs.start("noetl", [harness.PYTHON, __file__, "--serve-noetl", str(noetl_port)], cpus={1})
        harness.wait_http(f"http://127.0.0.1:{noetl_port}/api/health", noetl)
        listeners = {
            "github": {
                "verify": {"type": "hmac_sha256", "header": "X-Hub-Signature-256", "secret_env": "BENCH_SECRET"},
                "dispatch": {"playbook": "bench/noop"},
                "directives": {"X-GitHub-Event": "github_event"},
            }
        }
        config = procs.workdir / "ingress.yaml"
        config.write_text(yaml.safe_dump({"listeners": listeners}))
        env = harness.gateway_env(
            gw_port,
            NOETL_BASE_URL=f"http://127.0.0.1:{noetl_port}",
            NATS_URL=nats_url,
            GATEWAY_LOG_LEVEL="INFO",
            GATEWAY_INGRESS_CONFIG=str(config),
            GATEWAY_INGRESS_RATE_PER_MINUTE="0",
            BENCH_SECRET=SECRET,
        )
        gateway = procs.start("gateway", [harness.PYTHON, "-m", "gateway"], env, cpus={0})
        base = f"http://127.0.0.1:{gw_port}"
        harness.wait_http(f"{base}/health/ready", gateway)
        ingress = f"{base}/ingress/github"
        wrk_post(ingress, "warm-up", 1, args.connections, gateway.pid)  # claims the id the redelivery case reuses
        targets: dict[str, Callable[[], harness.Load]] = {
            "GET /health": lambda: harness.run_load(
                "health", harness.LoadPlan(f"{base}/health", duration, args.connections, cpu=1), gateway.pid
            ),
            "new delivery": lambda: wrk_post(ingress, None, duration, args.connections, gateway.pid),
            "redelivery": lambda: wrk_post(ingress, "warm-up", duration, args.connections, gateway.pid),
        }
        rounds: list[dict[str, harness.Load]] = []
        for index in range(runs):
            order = list(targets) if index % 2 == 0 else list(reversed(targets))
            result = {name: targets[name]() for name in order}
            for name, load in result.items():
                print(f"round {index + 1} {name:13s} {load.rps:8.0f} rps {load.cpu_us:6.0f} CPU µs/req", load.errors)
            rounds.append(result)
    summary: dict[str, Any] = {"rounds": [{k: v.as_dict() for k, v in r.items()} for r in rounds]}
    for name in targets:
        summary[name] = {
            "rps": harness.median_spread([r[name].rps for r in rounds]),
            "cpu_us": harness.median_spread([r[name].cpu_us for r in rounds]),
            "p50_ms": harness.median_spread([r[name].p50_ms for r in rounds]),
            "p99_ms": harness.median_spread([r[name].p99_ms for r in rounds]),
            "errors": sum(r[name].errors for r in rounds),
        }
        summary[name]["ratio_to_health"] = harness.median_spread([r[name].rps / r["GET /health"].rps for r in rounds])
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.common_args(parser)
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per verifier")
    parser.add_argument("--serve-noetl", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_noetl:
        serve_noetl(args.serve_noetl)
        return
    costs = verify_costs(200 if args.smoke else args.calls)
    for name, cost in costs.items():
        print(f"{name:34s} p50 {cost['p50']:8.2f} µs  p99 {cost['p99']:8.2f} µs  mean {cost['mean']:8.2f} µs")
    harness.write_json(args.json, {"scenario": "ingress", "verify_us": costs, "http": http_rounds(args)})


if __name__ == "__main__":
    main()
