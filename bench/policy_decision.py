"""Microbenchmark: the authorization decision on every proxied call vs a dict lookup (same run).

Times what ``/noetl/*`` and ``proxyRequest`` do per request before anything is sent to NoETL —
``canonical_path`` (decode, drop empty segments, lower case) + ``RoutePolicy.decide`` with the
built-in policy — over a mix of allowed and refused routes, plain and percent-encoded, for an
admin and a non-admin; the baseline is a ``dict.get`` of the same raw paths.
Usage: .venv/bin/python bench/policy_decision.py [--decisions 200000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.access.refusals import AccessDenied
from gateway.access.routes import default_policy
from gateway.noetl.paths import canonical_path

CALLS = [
    ("GET", "executions"),
    ("GET", "executions/612345678901234567"),
    ("GET", "executions/612345678901234567/status"),
    ("GET", "executions/612345678901234567/events"),
    ("POST", "catalog/list"),
    ("POST", "execute"),
    ("GET", "catalog/api_integration/auth0/auth0_login/ui_schema"),
    ("POST", "postgres/execute"),
    ("GET", "credentials"),
    ("GET", "%65xecutions//612345678901234567/status/"),
]
ROLES = [("analyst",), ("admin", "analyst")]


def percentiles(samples: list[int]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] / 1000, ordered[int(len(ordered) * 0.99)] / 1000


def main(decisions: int) -> None:
    policy = default_policy(["admin"])
    picks = [(CALLS[i % len(CALLS)], ROLES[(i // len(CALLS)) % len(ROLES)]) for i in range(decisions)]
    decide_ns: list[int] = []
    refused = 0
    for (method, path), roles in picks:
        t0 = time.perf_counter_ns()
        try:
            policy.decide(method, canonical_path(path), roles)
        except AccessDenied:
            refused += 1
        decide_ns.append(time.perf_counter_ns() - t0)
    table = {path: method for method, path in CALLS}
    dict_ns: list[int] = []
    for (_, path), _ in picks:
        t0 = time.perf_counter_ns()
        table.get(path)
        dict_ns.append(time.perf_counter_ns() - t0)
    p50, p99 = percentiles(decide_ns)
    d50, d99 = percentiles(dict_ns)
    print(f"decisions={decisions} refused={refused}")
    print("| path | p50 µs | p99 µs | mean µs |")
    print("|---|---|---|---|")
    print(f"| canonical_path + RoutePolicy.decide | {p50:.2f} | {p99:.2f} | {statistics.fmean(decide_ns) / 1000:.2f} |")
    print(f"| dict lookup (baseline) | {d50:.3f} | {d99:.3f} | {statistics.fmean(dict_ns) / 1000:.3f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=200_000)
    main(parser.parse_args().decisions)
