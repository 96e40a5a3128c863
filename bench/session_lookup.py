"""Microbenchmark: session check on a cache hit vs an in-process dict lookup (same run).

Starts a real nats-server, fills the session bucket through the gateway's own SessionCache,
waits for the mirror to sync, then times ``AuthService.validate`` (token shape check, hash,
revocation check, mirror hit, expiry) against a bare ``dict`` lookup of the same keys.
Usage: .venv/bin/python bench/session_lookup.py [--sessions 10000] [--lookups 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.auth.sessions import Session, User
from gateway.auth.tokens import token_hash
from gateway.config import load_config
from gateway.services import Services
from tests.support.nats_server import NatsServer, nats_server_binary
from tests.support.waiting import wait_for


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    return (
        ordered[len(ordered) // 2],
        ordered[int(len(ordered) * 0.99)],
        statistics.fmean(ordered),
    )


async def main(sessions: int, lookups: int) -> None:
    binary = nats_server_binary()
    if not binary:
        raise SystemExit("nats-server not found: run `make install` first")
    server = NatsServer(binary)
    server.start()
    services = Services.create(load_config({"NATS_URL": server.url, "NOETL_BASE_URL": "http://127.0.0.1:9"}))
    try:
        await services.start(nats_wait_secs=5)
        tokens = [secrets.token_urlsafe(32) for _ in range(sessions)]
        user = User(user_id=1, email="bench@example.com", display_name="Bench", roles=("a",))
        for token in tokens:
            await services.sessions.store(Session(user, "2099-01-01T00:00:00Z", token_hash(token), 4102444800.0))
        await wait_for(lambda: len(services.sessions.sessions) >= sessions, timeout=60)  # mirror fed by the KV watch
        plain = {token: user for token in tokens}
        picks = [tokens[i % sessions] for i in range(lookups)]

        gateway_ns: list[float] = []
        for token in picks:
            t0 = time.perf_counter_ns()
            found = await services.auth.validate(token, client="127.0.0.1")
            gateway_ns.append(time.perf_counter_ns() - t0)
            assert found is not None
        dict_ns: list[float] = []
        for token in picks:
            t0 = time.perf_counter_ns()
            found_user = plain.get(token)
            dict_ns.append(time.perf_counter_ns() - t0)
            assert found_user is not None
        g50, g99, gmean = percentiles(gateway_ns)
        d50, d99, dmean = percentiles(dict_ns)
        print(f"sessions={sessions} lookups={lookups}")
        print("| path | p50 µs | p99 µs | mean µs |")
        print("|---|---|---|---|")
        print(f"| AuthService.validate, mirror hit | {g50 / 1000:.2f} | {g99 / 1000:.2f} | {gmean / 1000:.2f} |")
        print(f"| dict lookup (baseline) | {d50 / 1000:.3f} | {d99 / 1000:.3f} | {dmean / 1000:.3f} |")
    finally:
        await services.close()
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    args = parser.parse_args()
    asyncio.run(main(args.sessions, args.lookups))
