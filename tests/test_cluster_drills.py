"""Cluster drills: a 3-node NATS JetStream cluster and several gateway replicas under load, while a
NATS node is killed, a NATS node hangs, or the gateways are restarted one by one.

Load (what 2 shared cores carry next to everything else; tests/support/drill.py): 20 SSE clients on
10 sessions, 10 executePlaybook/s plus 10 ``{ me }`` queries/s over the replicas round-robin, and 30
worker callbacks/s (two progress notes and the result per request) to any replica. Every drill checks
0 failed requests, every result at its client exactly once, each client's playbook events in order,
and prints a report (requests served, results delivered, max delivery gap, time to ready) — timings
are printed, not asserted: the machine is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import GatewayFactory, Standin
from tests.support.drill import DrillClient, DrillLoad, DrillReport, Pool, Replica, check_delivery, missing_results
from tests.support.gateway import GatewayInstance, GatewayProcess, call
from tests.support.live import services_of
from tests.support.nats_cluster import ClusterNode, NatsCluster
from tests.support.signin import login
from tests.support.waiting import wait_for

pytestmark = pytest.mark.drill

CLIENTS, SESSIONS, RATE = 20, 10, 10.0
CLUSTER_ENV = {"NATS_REPLICAS": "3", "GATEWAY_HEARTBEAT_INTERVAL_SECS": "2", "GATEWAY_LOG_LEVEL": "WARNING"}


def http_session() -> aiohttp.ClientSession:
    """No keep-alive: a request is never sent on a connection the server is about to close."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=0), timeout=aiohttp.ClientTimeout(total=30)
    )


async def is_ready(http: aiohttp.ClientSession, replica: Replica) -> bool:
    try:
        status, body, _ = await call(http, "GET", f"{replica.url}/health/ready")
    except aiohttp.ClientError:
        return False
    return status == 200 and isinstance(body, dict) and body.get("status") == "ready"


async def all_ready(http: aiohttp.ClientSession, replicas: Sequence[Replica]) -> bool:
    return all(await asyncio.gather(*(is_ready(http, replica) for replica in replicas)))


@contextlib.asynccontextmanager
async def under_load(pool: Pool, tokens: list[str]) -> AsyncIterator[tuple[DrillLoad, aiohttp.ClientSession]]:
    """Clients streaming and the load running for the body of the ``async with``; then every result
    delivered (or the drill fails naming the missing ones) and everything stopped."""
    http = http_session()
    clients = [DrillClient(i, tokens[i % len(tokens)]) for i in range(CLIENTS)]
    streams_stop = asyncio.Event()
    readers = [asyncio.create_task(c.run(http, pool, streams_stop)) for c in clients]
    load = DrillLoad(pool, clients, RATE)
    runner: asyncio.Task[None] | None = None
    try:
        await wait_for(lambda: all(c.ready.is_set() for c in clients), timeout=20)
        runner = asyncio.create_task(load.run(http))
        await wait_for(lambda: len(load.posted) >= 2 * RATE, timeout=30)  # warmed up: results flowing
        yield load, http
        load.stop.set()
        await runner
        with contextlib.suppress(AssertionError):  # check_delivery names what is missing
            await wait_for(lambda: not missing_results(load), timeout=30)
    finally:
        load.stop.set()
        if runner is not None:
            for task in (runner, *load.tasks):
                task.cancel()
            await asyncio.gather(runner, *load.tasks, return_exceptions=True)
        streams_stop.set()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await http.close()


async def more_traffic(load: DrillLoad, results: int, timeout: float = 40) -> None:
    """Wait until ``results`` more results have been accepted by a replica."""
    target = len(load.posted) + results
    await wait_for(lambda: len(load.posted) >= target, timeout=timeout)


async def sign_in(client: aiohttp.ClientSession, replicas: Sequence[Replica]) -> list[str]:
    return [
        await login(client, replicas[i % len(replicas)], f"good:user{i}@example.com")  # type: ignore[arg-type]
        for i in range(SESSIONS)
    ]


def connected_node(gw: GatewayInstance, cluster: NatsCluster) -> ClusterNode | None:
    """The node the gateway's NATS connection is on (None while it reconnects)."""
    nc = services_of(gw).nats.nc
    url = nc.connected_url if nc is not None and nc.is_connected else None
    return next((node for node in cluster.nodes if url is not None and node.port == url.port), None)


def moved_off(gw: GatewayInstance, cluster: NatsCluster, node: ClusterNode) -> bool:
    now = connected_node(gw, cluster)
    return now is not None and now is not node


async def in_thread(fn: Callable[..., object], *args: object) -> object:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# -- 1. the JetStream meta-leader killed ----------------------------------------------------------


@pytest.mark.gen_test(timeout=180)
async def test_meta_leader_killed_under_load(
    make_gateway: GatewayFactory, nats_cluster: NatsCluster, standin: Standin, client: aiohttp.ClientSession
) -> None:
    leader = nats_cluster.node(nats_cluster.meta_leader() or "")
    # A knows only the leader's URL (the others it learns from the cluster); B has the full list.
    a = await make_gateway(NATS_URL=leader.url, **CLUSTER_ENV)
    b = await make_gateway(NATS_URL=nats_cluster.url, **CLUSTER_ENV)
    assert connected_node(a, nats_cluster) is leader
    tokens = await sign_in(client, (a, b))
    loop = asyncio.get_running_loop()
    ready: dict[str, float] = {}
    started = loop.time()
    async with under_load(lambda: (a, b), tokens) as (load, http):
        killed_at = loop.time()
        load.phase = "leader killed"
        await in_thread(leader.kill)
        new_leader = await in_thread(nats_cluster.wait_new_leader, leader.name)
        ready["new meta-leader"] = loop.time() - killed_at
        await wait_for(lambda: moved_off(a, nats_cluster, leader), timeout=30)
        await wait_for(lambda: all_ready(http, (a, b)), timeout=30)
        ready["both gateways ready"] = loop.time() - killed_at
        load.phase = "new leader"
        await more_traffic(load, 40)
        load.phase = "node restarting"
        back_at = loop.time()
        await in_thread(nats_cluster.restart, leader)
        ready["killed node back and current"] = loop.time() - back_at
        load.phase = "node back"
        await more_traffic(load, 30)
    report = DrillReport(f"meta-leader {leader.name} killed (new: {new_leader})", load, loop.time() - started, ready)
    print(report.text())
    check_delivery(load)
    assert services_of(a).nats.replica_shortfalls == {}


# -- 2. one NATS node hung for 10 s (SIGSTOP, then SIGCONT) ----------------------------------------


@pytest.mark.gen_test(timeout=180)
async def test_nats_node_hung_for_ten_seconds(
    make_gateway: GatewayFactory, nats_cluster: NatsCluster, standin: Standin, client: aiohttp.ClientSession
) -> None:
    a = await make_gateway(NATS_URL=nats_cluster.url, **CLUSTER_ENV)
    b = await make_gateway(NATS_URL=nats_cluster.url, **CLUSTER_ENV)
    node = connected_node(a, nats_cluster)
    assert node is not None
    tokens = await sign_in(client, (a, b))
    loop = asyncio.get_running_loop()
    ready: dict[str, float] = {}
    started = loop.time()
    async with under_load(lambda: (a, b), tokens) as (load, http):
        load.phase = "node hung"
        await in_thread(node.freeze)
        frozen_at = loop.time()
        try:
            # The scenario is a 10 s partition, by the clock; A must move to another node meanwhile.
            await wait_for(lambda: moved_off(a, nats_cluster, node), timeout=10)
            ready["A on another node"] = loop.time() - frozen_at
            await wait_for(lambda: loop.time() - frozen_at >= 10, timeout=15, interval=0.2)
        finally:
            await in_thread(node.thaw)
        thawed_at = loop.time()
        load.phase = "node back"
        await in_thread(nats_cluster.wait_healthy)
        ready["hung node current again"] = loop.time() - thawed_at
        await wait_for(lambda: all_ready(http, (a, b)), timeout=30)
        ready["both gateways ready"] = loop.time() - frozen_at
        load.phase = "after"
        await more_traffic(load, 30)
    print(DrillReport(f"NATS node {node.name} hung 10 s", load, loop.time() - started, ready).text())
    check_delivery(load)


# -- 3. rolling restart of three gateway processes ---------------------------------------------------


@pytest.mark.gen_test(timeout=240)
async def test_rolling_restart_of_three_gateways(
    gateway_env: dict[str, str],
    nats_cluster: NatsCluster,
    standin: Standin,
    client: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    env = {**gateway_env, **CLUSTER_ENV, "NATS_URL": nats_cluster.url, "GATEWAY_SHUTDOWN_GRACE_SECS": "10"}
    loop = asyncio.get_running_loop()
    started_processes: list[GatewayProcess] = []

    async def start(name: str) -> GatewayProcess:
        process = GatewayProcess(env)
        started_processes.append(process)
        await in_thread(process.start, str(tmp_path / f"{name}.log"), 30.0)
        return process

    serving: list[GatewayProcess] = [await start(f"old{i}") for i in range(3)]
    ready: dict[str, float] = {}
    try:
        tokens = await sign_in(client, serving)
        started = loop.time()
        async with under_load(lambda: tuple(serving), tokens) as (load, http):
            for i in range(3):
                begun = loop.time()
                new = await start(f"new{i}")
                await wait_for(lambda new=new: is_ready(http, new), timeout=30)
                ready[f"new{i}"] = loop.time() - begun
                serving.append(new)
                old = serving[0]
                assert old.proc is not None
                # As Kubernetes rolls a pod: out of the Service's endpoints first, SIGTERM after the
                # preStop pause (here: until more callbacks went through, so requests already sent
                # to it are answered). A connection still in its accept queue at SIGTERM would be
                # reset unanswered, which no client may retry for a POST; the preStop pause is what
                # keeps new ones from arriving there (deploy/helm: preStopSleepSeconds).
                serving.remove(old)
                await more_traffic(load, 5)
                old.proc.terminate()  # SIGTERM: SSE clients still on it get a retry hint and move
                code = await in_thread(old.proc.wait, 30)
                assert code == 0, f"old gateway {i} exited with {code}"
                await more_traffic(load, 20)
        print(DrillReport("rolling restart of 3 gateways", load, loop.time() - started, ready).text())
        check_delivery(load)
        assert sum(c.reconnects for c in load.clients) >= CLIENTS  # every client was moved at least once
    finally:
        for process in started_processes:
            await in_thread(process.stop)
