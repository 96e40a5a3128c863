"""Two pre-forked gateway processes vs one on a 2-core machine, same run (goal: ≥ 1.7× rps, issue 19).

Both gateways run at once (``python -m gateway --processes 1`` and ``--processes 2``, each with
its own port, one nats-server — several processes need NATS); the idle one costs nothing while
the other is measured. Load: ``GET /health`` (CPU-bound, no upstream to share the cores with),
wrk -t1 -c50, not pinned (the workers need both cores; wrk takes a little of them too, so the
ideal 2.0× is out of reach on two cores). The targets take turns, ``--runs`` rounds of
``--duration`` seconds. Reported: rps, the ratio per round, and how the CPU time of the two-process
gateway split between its workers (the kernel hands each accepted connection to one worker).

Usage: .venv/bin/python bench/processes_bench.py [--runs 3] [--duration 5] [--smoke] [--json FILE]
"""

from __future__ import annotations

import argparse

import harness
from harness import Load, LoadPlan, Processes

GOAL = 1.7


def measure(args: argparse.Namespace) -> dict[str, object]:
    runs = 1 if args.smoke else args.runs
    duration = 1.0 if args.smoke else args.duration
    with harness.nats_server() as nats_url, Processes("processes") as procs:
        targets: dict[str, tuple[str, int]] = {}
        for count in (1, 2):
            port = harness.free_port()
            env = harness.gateway_env(port, NATS_URL=nats_url, GATEWAY_LOG_LEVEL="INFO")
            proc = procs.start(f"gateway-{count}", [harness.PYTHON, "-m", "gateway", "--processes", str(count)], env)
            url = f"http://127.0.0.1:{port}/health"
            harness.wait_http(url, proc)
            targets[f"{count} process{'es' if count > 1 else ''}"] = (url, proc.pid)
        for name, (url, pid) in targets.items() if not args.smoke else ():  # warm-up
            harness.run_load(name, LoadPlan(url, 2, connections=args.connections), pid)
        rounds: list[dict[str, Load]] = []
        shares: list[list[float]] = []
        two_pid = targets["2 processes"][1]
        for index in range(runs):
            order = list(targets) if index % 2 == 0 else list(reversed(targets))
            result = {}
            for name in order:
                url, pid = targets[name]
                before = [harness.cpu_seconds(child, False) for child in harness.children(pid)]
                result[name] = harness.run_load(name, LoadPlan(url, duration, connections=args.connections), pid)
                if pid == two_pid:
                    used = [
                        harness.cpu_seconds(c, False) - b for c, b in zip(harness.children(pid), before, strict=False)
                    ]
                    shares.append([u / max(sum(used), 1e-9) for u in used])
                print(
                    f"round {index + 1} {name:12s} {result[name].rps:9.0f} rps  {result[name].cpu_us:6.0f} CPU µs/req"
                )
            rounds.append(result)
    ratios = [r["2 processes"].rps / r["1 process"].rps for r in rounds]
    ratio = harness.median_spread(ratios)
    return {
        "scenario": "processes",
        "rounds": [{name: load.as_dict() for name, load in r.items()} for r in rounds],
        "one_rps": harness.median_spread([r["1 process"].rps for r in rounds]),
        "two_rps": harness.median_spread([r["2 processes"].rps for r in rounds]),
        "one_cpu_us": harness.median_spread([r["1 process"].cpu_us for r in rounds]),
        "two_cpu_us": harness.median_spread([r["2 processes"].cpu_us for r in rounds]),
        "worker_cpu_shares": shares,
        # Cores each gateway kept busy (rps x CPU per request): the two-process one can only scale
        # as far as other jobs on the machine leave it the second core.
        "one_cores": harness.median_spread([r["1 process"].rps * r["1 process"].cpu_us / 1e6 for r in rounds]),
        "two_cores": harness.median_spread([r["2 processes"].rps * r["2 processes"].cpu_us / 1e6 for r in rounds]),
        "ratio": ratio,
        "goal": GOAL,
        "met": ratio["median"] >= GOAL,
        "tool": rounds[0]["1 process"].tool,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.common_args(parser)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    harness.write_json(args.json, measure(args))


if __name__ == "__main__":
    main()
