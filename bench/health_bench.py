"""``GET /health`` of the gateway vs a bare Tornado hello handler, same run (goal: ≥ 0.9× rps).

The gateway runs as ``python -m gateway`` (default logging; /health writes no access line but
counts in the request metrics, gets a request id and the security headers); the baseline is this
file's ``--serve`` mode: one Tornado ``RequestHandler`` answering ``ok``. Each server is pinned
to CPU 0 and the load generator (wrk -t1 -c50) to CPU 1; after a warm-up the targets take turns,
``--runs`` rounds of ``--duration`` seconds. Reported per round: rps of each, their ratio, and
each server's own CPU time per request (from /proc, barely moved by other load on the machine).

Usage: .venv/bin/python bench/health_bench.py [--runs 3] [--duration 5] [--smoke] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio

import harness
from harness import Load, LoadPlan, Processes

GOAL = 0.9


def serve_bare(port: int) -> None:
    """The baseline: the least a Tornado server can do for ``GET /health``."""
    from tornado.httpserver import HTTPServer
    from tornado.web import Application, RequestHandler

    class Hello(RequestHandler):
        def get(self) -> None:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("ok")

    async def run() -> None:
        server = HTTPServer(Application([(r"/health", Hello)]))
        server.listen(port, address="127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(run())


def measure(args: argparse.Namespace) -> dict[str, object]:
    runs = 1 if args.smoke else args.runs
    duration = 2.0 if args.smoke else args.duration
    with Processes("health") as procs:
        gw_port, bare_port = harness.free_port(), harness.free_port()
        gateway = procs.start(
            "gateway",
            [harness.PYTHON, "-m", "gateway"],
            harness.gateway_env(gw_port, GATEWAY_LOG_LEVEL="INFO"),
            cpus={0},
        )
        bare = procs.start("bare", [harness.PYTHON, __file__, "--serve", str(bare_port)], cpus={0})
        targets = {
            "gateway": (f"http://127.0.0.1:{gw_port}/health", gateway),
            "bare tornado": (f"http://127.0.0.1:{bare_port}/health", bare),
        }
        for url, proc in targets.values():
            harness.wait_http(url, proc)
        for name, (url, proc) in targets.items() if not args.smoke else ():  # warm-up
            harness.run_load(name, LoadPlan(url, 2, cpu=1), proc.pid)
        rounds: list[dict[str, Load]] = []
        for index in range(runs):
            order = list(targets) if index % 2 == 0 else list(reversed(targets))
            result = {}
            for name in order:
                url, proc = targets[name]
                result[name] = harness.run_load(name, LoadPlan(url, duration, cpu=1), proc.pid)
                print(
                    f"round {index + 1} {name:14s} {result[name].rps:9.0f} rps  {result[name].cpu_us:6.0f} CPU µs/req"
                )
            rounds.append(result)
    return summarise(rounds)


def summarise(rounds: list[dict[str, Load]]) -> dict[str, object]:
    # A round where either side completed nothing (a machine busy elsewhere, in a 1 s smoke round)
    # has no ratio; it is left out rather than divided by.
    measured = [r for r in rounds if r["bare tornado"].rps > 0 and r["gateway"].rps > 0 and r["gateway"].cpu_us > 0]
    if not measured:
        raise RuntimeError("no round completed requests on both servers: the machine is too busy to measure")
    ratios = [r["gateway"].rps / r["bare tornado"].rps for r in measured]
    capacity = [r["bare tornado"].cpu_us / r["gateway"].cpu_us for r in measured]
    ratio = harness.median_spread(ratios)
    return {
        "scenario": "health",
        "rounds": [{name: load.as_dict() for name, load in r.items()} for r in rounds],
        "gateway_rps": harness.median_spread([r["gateway"].rps for r in rounds]),
        "baseline_rps": harness.median_spread([r["bare tornado"].rps for r in rounds]),
        "gateway_cpu_us": harness.median_spread([r["gateway"].cpu_us for r in rounds]),
        "baseline_cpu_us": harness.median_spread([r["bare tornado"].cpu_us for r in rounds]),
        "ratio": ratio,
        "capacity_ratio": harness.median_spread(capacity),
        "goal": GOAL,
        "met": ratio["median"] >= GOAL,
        "tool": rounds[0]["gateway"].tool,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.common_args(parser)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_bare(args.serve)
        return
    harness.write_json(args.json, measure(args))


if __name__ == "__main__":
    main()
