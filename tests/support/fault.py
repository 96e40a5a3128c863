"""Helpers for fault drills: kill a nats-server hard, and measure what a gateway process holds."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from tests.support.gateway import GatewayInstance
from tests.support.nats_server import NatsServer


def kill_nats(server: NatsServer) -> None:
    """SIGKILL, no goodbye to clients (a crashed pod), then reap it; ``start()`` brings it back."""
    proc = server.proc
    assert proc is not None, "nats-server is not running"
    proc.kill()
    proc.wait(10)
    server.proc = None


def rss_kib() -> int:
    """Resident set size of this process (the gateways under test run in it)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def task_count() -> int:
    """Asyncio tasks alive in the running loop, but for the one per open keep-alive HTTP connection
    (their number follows the clients' connection pools, not the work done)."""
    return sum(
        1 for task in asyncio.all_tasks() if "_server_request_loop" not in getattr(task.get_coro(), "__qualname__", "")
    )


def state_sizes(gw: GatewayInstance) -> dict[str, int]:
    """Everything per-request a gateway keeps in memory: must not grow with traffic for unknown ids."""
    services = gw.services
    assert services is not None
    live: Any = services.live
    sizes = {
        "callback waiters": services.callbacks.pending,
        "in-flight requests": services.inflight,
        "request bucket (local)": len(live.requests.bucket),
        "client bucket (local)": len(live.clients.bucket),
        "event journal": len(live.journal),
        "slots (local)": len(live.slots.bucket),
        "write-behind": live.writes.backlog,
    }
    return sizes


def collected() -> None:
    """A full collection, so RSS and task counts compare like with like."""
    gc.collect()
