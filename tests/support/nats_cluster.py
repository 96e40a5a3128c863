"""A real 3-node nats-server cluster (JetStream, a temp store per node, loopback ports) for drills.

Each node listens for clients, routes and monitoring on ports of its own; the routes list names
every node, so any two form a quorum. A node can be killed (SIGKILL: a crashed pod), frozen
(SIGSTOP: a partitioned or hung node that keeps its sockets), thawed (SIGCONT) and restarted on the
same ports and store (a pod rescheduled onto its PVC). ``meta_leader`` asks the monitoring endpoint
of a live node which server leads the JetStream meta group.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.nats_server import free_port, jetstream_args
from tests.support.processes import NotReady, stop_process

CLUSTER_NAME = "drill"


class ClusterNode:
    """One nats-server of the cluster."""

    def __init__(self, binary: str, name: str) -> None:
        self.binary = binary
        self.name = name
        self.reset()
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def reset(self) -> None:
        """Fresh ports and an empty store (before the first start, or after a start that failed)."""
        if getattr(self, "store", None):
            shutil.rmtree(self.store, ignore_errors=True)
        self.port, self.cluster_port, self.monitor_port = free_port(), free_port(), free_port()
        self.store = tempfile.mkdtemp(prefix=f"nats-{self.name}-")
        self.log_path = Path(self.store) / "server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self, routes: list[str]) -> None:
        """Start the process (not waiting for it: a node needs its peers to become healthy)."""
        args = [
            *jetstream_args(self.binary, self.port, self.monitor_port, self.store, self.log_path),
            "--name",
            self.name,
            "--cluster_name",
            CLUSTER_NAME,
            "--cluster",
            f"nats://127.0.0.1:{self.cluster_port}",
            "--routes",
            ",".join(routes),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.frozen = False

    def monitor(self, path: str, timeout: float = 0.5) -> tuple[int, Any]:
        """GET a monitoring endpoint: (status, decoded JSON or None); (0, None) when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}{path}", timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            with contextlib.suppress(ValueError):
                return exc.code, json.loads(exc.read() or b"null")
            return exc.code, None
        except (OSError, ValueError):
            return 0, None

    def healthy(self) -> bool:
        """JetStream on this node is current with the meta group (``/healthz``: 200)."""
        return self.running and not self.frozen and self.monitor("/healthz")[0] == 200

    def kill(self) -> None:
        """SIGKILL and reap: no goodbye to clients or peers."""
        proc = self.proc
        assert proc is not None, f"{self.name} is not running"
        if self.frozen:
            os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(10)
        self.proc = None
        self.frozen = False

    def freeze(self) -> None:
        """SIGSTOP: sockets stay open, nothing answers (a partition as its peers and clients see it)."""
        assert self.proc is not None, f"{self.name} is not running"
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT after ``freeze``."""
        assert self.proc is not None, f"{self.name} is not running"
        os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.frozen and self.proc is not None:
            self.thaw()
        stop_process(self.proc, 5)
        self.proc = None


class NatsCluster:
    """Three nodes n1..n3 routed to each other; ``url`` lists every client URL (comma-separated)."""

    def __init__(self, binary: str, size: int = 3) -> None:
        self.nodes = [ClusterNode(binary, f"n{i + 1}") for i in range(size)]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    @property
    def routes(self) -> list[str]:
        return [f"nats://127.0.0.1:{node.cluster_port}" for node in self.nodes]

    def node(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.name == name)

    def start(self, timeout: float = 30.0, attempts: int = 3) -> None:
        """Start every node, then wait until each is healthy and a meta-leader is elected.

        A port found free can be taken before the node binds it (another test's outgoing connection
        gets it as its ephemeral source port): a node that exits while starting makes the whole
        cluster start again on fresh ports; the last attempt's failure names the node's log."""
        for attempt in range(attempts):
            for node in self.nodes:
                node.spawn(self.routes)
            try:
                self.wait_healthy(timeout)
                return
            except NotReady as exc:
                if "exited" not in str(exc) or attempt == attempts - 1:
                    raise NotReady(f"{exc}; {self.log_tails()}") from None
                for node in self.nodes:
                    node.stop()
                    node.reset()

    def log_tails(self) -> str:
        """The last lines of each node's log (why a node would not start)."""
        tails = []
        for node in self.nodes:
            with contextlib.suppress(OSError):
                lines = node.log_path.read_text(errors="replace").splitlines()[-3:]
                tails.append(f"{node.name}: " + " | ".join(lines))
        return "; ".join(tails)

    def restart(self, node: ClusterNode, timeout: float = 30.0) -> None:
        """Bring a killed or stopped node back on its ports and store; wait until it has caught up."""
        assert not node.running, f"{node.name} is still running"
        node.spawn(self.routes)
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every running, unfrozen node healthy and agreeing on a meta-leader (polled with a deadline)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    raise NotReady(f"nats-server {node.name} exited with {node.proc.returncode}")
            live = [node for node in self.nodes if node.running and not node.frozen]
            if live and all(node.healthy() for node in live) and self.meta_leader() is not None:
                return
            time.sleep(0.05)  # the poll interval of a readiness check
        raise NotReady(f"NATS cluster not healthy within {timeout:.0f} s: {self.describe()}")

    def meta_leader(self) -> str | None:
        """The name of the JetStream meta-leader, as the live nodes report it (None while electing)."""
        leaders = set()
        for node in self.nodes:
            if not node.running or node.frozen:
                continue
            status, body = node.monitor("/jsz")
            if status == 200 and isinstance(body, dict):
                leaders.add((body.get("meta_cluster") or {}).get("leader") or None)
        leaders.discard(None)
        return leaders.pop() if len(leaders) == 1 else None

    def wait_new_leader(self, old: str, timeout: float = 30.0) -> str:
        """The meta-leader elected after ``old`` went away."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.meta_leader()
            if leader is not None and leader != old:
                return leader
            time.sleep(0.05)
        raise NotReady(f"no new meta-leader within {timeout:.0f} s: {self.describe()}")

    def stream_replicas(self, stream: str) -> tuple[str | None, list[str]]:
        """(leader, replica names) of a stream, from a live node's ``/jsz?streams=true``."""
        for node in self.nodes:
            if not node.running or node.frozen:
                continue
            status, body = node.monitor("/jsz?streams=true&config=true")
            if status != 200 or not isinstance(body, dict):
                continue
            for account in body.get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    if detail.get("name") == stream:
                        cluster = detail.get("cluster") or {}
                        replicas = [peer.get("name") for peer in cluster.get("replicas") or []]
                        return cluster.get("leader"), replicas
        return None, []

    def describe(self) -> str:
        states = [f"{node.name}:{'frozen' if node.frozen else 'up' if node.running else 'down'}" for node in self.nodes]
        return f"{' '.join(states)}, meta-leader {self.meta_leader()}"

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        for node in self.nodes:
            shutil.rmtree(node.store, ignore_errors=True)
