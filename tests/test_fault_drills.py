"""Fault drills: NATS killed under load, a callback flood for unknown ids, NoETL flapping mid-traffic.

Each drill runs real processes and servers (nats-server, the NoETL stand-in, gateways over HTTP)
and checks what an operator would: no request fails that should not, no result is lost, the
gateway recovers on its own within bounds, and nothing piles up (pending state, stores, tasks,
memory) once the fault is over.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from gateway.auth.tokens import CallbackSigner
from tests.conftest import GatewayFactory, ReplicasFactory, Standin
from tests.standin import playbooks
from tests.support.fault import collected, kill_nats, rss_kib, state_sizes, task_count
from tests.support.gateway import GatewayInstance, call
from tests.support.graphql_client import gql
from tests.support.live import SECRET, hashed, raw_bucket, services_of
from tests.support.nats_server import NatsServer
from tests.support.signin import bearer, login
from tests.support.sse_client import SseStream, init_of, open_stream
from tests.support.waiting import wait_for

WORKERS = 10
EXECUTE = """mutation($name: String!, $c: String) {
  executePlaybook(name: $name, variables: {}, clientId: $c) { executionId requestId }
}"""


# -- (a) NATS killed and restarted while 50 clients hold streams and requests flow -------------


@dataclass
class Flow:
    """Authenticated traffic from every client while the drill runs; what it saw."""

    gateways: tuple[GatewayInstance, ...]
    tokens: list[str]
    streams: list[SseStream]
    client_ids: list[str]
    expected: dict[str, int] = field(default_factory=dict)  # request id -> stream index
    failures: list[str] = field(default_factory=list)
    done: int = 0
    phase: str = "before"
    by_phase: dict[str, int] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def worker(self, client: aiohttp.ClientSession, worker: int, workers: int) -> None:
        for turn in itertools.count():
            if self.stop.is_set():
                return
            index = (worker + turn * workers) % len(self.streams)
            token = self.tokens[index % len(self.tokens)]
            gw = self.gateways[(index + turn) % len(self.gateways)]  # any replica, like a load balancer
            phase = self.phase
            status, body, _ = await gql(
                client, gw, token, EXECUTE, {"name": playbooks.PROGRESS_RESULT, "c": self.client_ids[index]}
            )
            if status != 200 or body.get("errors"):
                self.failures.append(f"{phase}: executePlaybook via {gw.port}: {status} {body}")
            else:
                self.expected[body["data"]["executePlaybook"]["requestId"]] = index
            status, body, _ = await gql(client, gw, token, "{ me { email } health }")
            if status != 200 or body.get("errors"):
                self.failures.append(f"{phase}: query via {gw.port}: {status} {body}")
            status, body, _ = await call(client, "POST", f"{gw.url}/api/auth/validate", {"session_token": token})
            if status != 200 or body.get("valid") is not True:
                self.failures.append(f"{phase}: validate via {gw.port}: {status} {body}")
            self.done += 1
            self.by_phase[phase] = self.by_phase.get(phase, 0) + 1

    def queued_during_outage(self, standin: Standin) -> int:
        return self._outage_replies(standin).count(202)

    def mark_outage(self, standin: Standin, edge: str) -> None:
        setattr(self, f"_{edge}", len(standin.state.callback_replies))

    def _outage_replies(self, standin: Standin) -> list[int]:
        replies = standin.state.callback_replies[getattr(self, "_start", 0) : getattr(self, "_end", None)]
        return [status for path, status, _ in replies if path == "/api/internal/callback/async"]

    def results(self, index: int) -> list[str]:
        return [e.json["params"]["requestId"] for e in self.streams[index].named("playbook/result")]


async def ready(client: aiohttp.ClientSession, gw: GatewayInstance) -> bool:
    status, body, _ = await call(client, "GET", f"{gw.url}/health/ready")
    return status == 200 and body.get("status") == "ready"


@pytest.mark.gen_test(timeout=90)
async def test_nats_killed_and_restarted_under_load(
    make_replicas: ReplicasFactory, own_nats: NatsServer, standin: Standin, client: aiohttp.ClientSession
) -> None:
    a, b = await make_replicas(NATS_URL=own_nats.url)
    tokens = [await login(client, (a, b)[i % 2], f"good:user{i}@example.com") for i in range(10)]
    streams = [await open_stream(client, (a, b)[i % 2].url, tokens[i % 10]) for i in range(50)]
    flow = Flow((a, b), tokens, streams, [init_of(stream)["clientId"] for stream in streams])
    loop = asyncio.get_running_loop()
    workers = [asyncio.create_task(flow.worker(client, w, WORKERS)) for w in range(WORKERS)]
    try:
        await wait_for(lambda: flow.done >= 100, timeout=15)  # every client used via both replicas

        flow.phase = "outage"
        flow.mark_outage(standin, "start")
        await loop.run_in_executor(None, kill_nats, own_nats)
        await wait_for(lambda: not services_of(a).nats.connected and not services_of(b).nats.connected, timeout=10)
        outage_start = flow.done
        await wait_for(lambda: flow.done >= outage_start + 50, timeout=20)

        flow.mark_outage(standin, "end")
        await loop.run_in_executor(None, own_nats.start)
        flow.phase = "recovery"
        back = loop.time()
        await wait_for(lambda: _all(ready(client, a), ready(client, b)), timeout=15)
        recovered_in = loop.time() - back
        after = flow.done
        await wait_for(lambda: flow.done >= after + 30, timeout=20)
        flow.phase = "after"
    finally:
        flow.stop.set()
        await asyncio.gather(*workers, return_exceptions=True)

    try:
        assert not flow.failures, flow.failures[:5]
        # How fast both are ready again is a measurement (printed below, bench/ for figures), not an
        # assertion: the wait above bounds it at 15 s whatever the machine's load.
        # Every result arrives, at the stream of the client that asked, exactly once.
        for request_id, index in flow.expected.items():
            try:
                await streams[index].wait_for(
                    lambda e, rid=request_id: e.event == "playbook/result" and e.json["params"]["requestId"] == rid,
                    timeout=10,
                )
            except AssertionError:
                posted = [
                    (url, status, answer)
                    for url, rid, status, answer in standin.state.callback_log
                    if rid == request_id
                ]
                raise AssertionError(
                    f"result of {request_id} never reached stream {index} (held by {(a, b)[index % 2].url}); "
                    f"the worker's posts for it: {posted}"
                ) from None
        for index in range(len(streams)):
            got = flow.results(index)
            assert len(got) == len(set(got)), f"stream {index} got a result twice"
            assert set(got) == {rid for rid, i in flow.expected.items() if i == index}
        assert not any(stream.ended.is_set() for stream in streams)
        assert not any(stream.named("error") for stream in streams)
        # Results of clients held by the other replica were posted during the outage (queued there).
        assert flow.queued_during_outage(standin) > 0
        # Nothing piles up in the gateways: no outbox, queued writes, outage copies or deferred releases.
        try:  # replays go through JetStream; on a loaded machine they take a while, but they must end
            await wait_for(lambda: not leftovers(a) and not leftovers(b), timeout=30)
        except AssertionError:
            raise AssertionError(f"state left over: A {leftovers(a)}, B {leftovers(b)}") from None
        # Nor in NATS: delivered requests are gone and their slots free, but for writes the killed
        # server had acknowledged and not yet stored (JetStream syncs to disk asynchronously): those
        # linger until they expire, and a session at its limit re-checks its slots.
        lingering = await lingering_state(services_of(a).live, tokens, list(flow.expected))
        assert len(lingering) <= 2 * WORKERS, lingering  # one request in flight per worker: its slot, its record
        print(
            f"\nNATS drill: {flow.by_phase} rounds, {len(flow.expected)} results "
            f"({flow.queued_during_outage(standin)} queued during the outage), ready {recovered_in:.2f} s after NATS "
            f"returned; lingering in NATS after the kill: {len(lingering)}"
        )
    finally:
        await asyncio.gather(*(stream.close() for stream in streams))


def leftovers(gw: GatewayInstance) -> dict[str, int]:
    """Per-request state a gateway still holds for the outage (empty once it is over)."""
    live: Any = services_of(gw).live
    sizes = {
        "outbox": len(live.delivery.outbox),
        "slots counted in process": len(live.slots.bucket),
        "deferred slot releases": live.slots.bucket.backlog,
        "queued request writes": len(live.requests.bucket._queued),
        "queued client writes": len(live.clients.bucket._queued),
        "write-behind": live.writes.backlog,
        "callback waiters": services_of(gw).callbacks.pending,
    }
    return {name: size for name, size in sizes.items() if size}


async def lingering_state(live: Any, tokens: list[str], request_ids: list[str]) -> list[str]:
    """Slots and request records still in NATS for requests that were delivered."""
    found = []
    for token in tokens:
        held, _ = await live.slots._load(hashed(token))
        found += [f"slot {rid[:8]}" for rid in held]
    records = await asyncio.gather(*(live.find_request(rid) for rid in request_ids))
    found += [f"request {rid[:8]}" for rid, record in zip(request_ids, records, strict=True) if record is not None]
    return found


async def _all(*checks: Any) -> bool:
    return all(await asyncio.gather(*checks))


# -- (b) a callback flood for unknown request ids -----------------------------------------------

CALLBACK_PATHS = ("/api/internal/callback/async", "/api/internal/progress")


@dataclass
class Flood:
    """Callbacks for request ids nobody registered, with and without (good, foreign, forged) tokens."""

    gw: GatewayInstance
    signer: CallbackSigner = field(default_factory=lambda: CallbackSigner(SECRET, 3600))
    seen: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def request(self, i: int) -> tuple[str, dict[str, Any], dict[str, str], str]:
        request_id = str(uuid.uuid4())
        path = CALLBACK_PATHS[i % 2]
        body: dict[str, Any] = {"request_id": request_id, "execution_id": "9001", "status": "COMPLETED"}
        variant = ("none", "own token", "foreign token", "forged token", "body token")[i % 5]
        headers: dict[str, str] = {}
        if variant == "own token":
            headers["Authorization"] = f"Bearer {self.signer.issue(request_id)}"
        elif variant == "foreign token":
            headers["X-Callback-Token"] = self.signer.issue(str(uuid.uuid4()))
        elif variant == "forged token":
            headers["Authorization"] = (
                f"Bearer {CallbackSigner('not-the-secret-0123456789abcdefghij', 60).issue(request_id)}"
            )
        elif variant == "body token":
            body["callback_token"] = self.signer.issue(request_id)
        return path, body, headers, variant

    async def run(self, client: aiohttp.ClientSession, count: int, concurrency: int = 50, record: bool = True) -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            path, body, headers, variant = self.request(i)
            async with gate:
                started = loop.time()
                status, answer, _ = await call(client, "POST", f"{self.gw.url}{path}", body, headers=headers)
                if record:
                    self.latencies.append(loop.time() - started)
            assert isinstance(answer, dict) and isinstance(answer.get("error"), str), answer
            if record:
                self.seen[(path, variant, status)] += 1

        await asyncio.gather(*(one(i) for i in range(count)))


async def health_flood(client: aiohttp.ClientSession, gw: GatewayInstance, count: int, concurrency: int = 50) -> float:
    """Seconds for ``count`` GET /health at that concurrency (the yardstick for "cheap")."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            async with client.get(f"{gw.url}/health") as resp:
                assert resp.status == 200
                await resp.read()

    started = loop.time()
    await asyncio.gather(*(one() for _ in range(count)))
    return loop.time() - started


def baseline(gw: GatewayInstance) -> dict[str, int]:
    collected()
    return {**state_sizes(gw), "tasks": task_count()}


async def request_keys(gw: GatewayInstance) -> int:
    kv = await raw_bucket(gw, services_of(gw).live.requests.bucket.name)
    return int((await kv.status()).values)


@pytest.mark.gen_test(timeout=60)
async def test_callback_flood_for_unknown_ids_is_cheap_and_leaves_nothing(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway()
    flood = Flood(gw)
    await flood.run(client, 500)  # warm-up: lazily built things exist before the baseline
    before, keys_before, upstream_before = (
        baseline(gw),
        await request_keys(gw),
        len(standin.state.calls),
    )
    flood.seen.clear()
    flood.latencies.clear()
    started = asyncio.get_running_loop().time()
    await flood.run(client, 2000)
    elapsed = asyncio.get_running_loop().time() - started

    # Unauthenticated or mismatched: refused before any lookup; authentic but unknown: 404.
    expected = {"none": 401, "forged token": 401, "foreign token": 403, "own token": 404, "body token": 404}
    for (path, variant, status), count in flood.seen.items():
        assert status == expected[variant], (path, variant, status, count)
    assert sum(flood.seen.values()) == 2000
    assert len(standin.state.calls) == upstream_before  # nothing reached NoETL
    # Cheap: about what the gateway's cheapest request costs, on the same machine, same concurrency.
    health = await health_flood(client, gw, 2000)
    assert elapsed < 3 * health + 0.5, f"callbacks {elapsed:.2f} s, /health {health:.2f} s for 2000"
    latencies = sorted(flood.latencies)
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]

    # No growth: pending state, stores, KV keys, tasks.
    await wait_for(lambda: baseline(gw) == before, timeout=5)
    assert await request_keys(gw) == keys_before
    # Nor memory: after one more flood (allocator warm-up), another one adds nothing (a leak grows with
    # every request). pytest keeps every log record it captures, so logging is off while measuring.
    logging.disable(logging.WARNING)
    try:
        await flood.run(client, 2000, record=False)
        collected()
        rss_before = rss_kib()
        await flood.run(client, 2000, record=False)
        collected()
        growth = rss_kib() - rss_before
    finally:
        logging.disable(logging.NOTSET)
    assert growth < 1024, f"RSS grew by {growth} KiB over 2000 more callbacks"
    await wait_for(lambda: baseline(gw) == before, timeout=5)
    print(
        f"\ncallback flood: 2000 in {elapsed:.2f} s (/health: {health:.2f} s; p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms), RSS {growth:+d} KiB over the next 2000, state {before}"
    )


@pytest.mark.gen_test(timeout=60)
async def test_unsigned_callback_flood_in_legacy_mode_is_404_without_growth(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """``GATEWAY_CALLBACK_AUTH=legacy`` looks every id up: still 404, still nothing kept."""
    gw = await make_gateway(GATEWAY_CALLBACK_AUTH="legacy")

    async def unsigned(count: int) -> Counter[int]:
        async def one(i: int) -> int:
            body = {"request_id": str(uuid.uuid4()), "status": "COMPLETED", "progress": 0.5}
            status, _, _ = await call(client, "POST", f"{gw.url}{CALLBACK_PATHS[i % 2]}", body)
            return status

        return Counter(await asyncio.gather(*(one(i) for i in range(count))))

    await unsigned(200)
    before, keys_before = baseline(gw), await request_keys(gw)
    assert await unsigned(1000) == Counter({404: 1000})
    await wait_for(lambda: baseline(gw) == before, timeout=5)
    assert await request_keys(gw) == keys_before


# -- (c) NoETL flapping during executePlaybook and the proxy ------------------------------------


@pytest.mark.gen_test(timeout=60)
async def test_noetl_flapping_during_executions_and_proxy(
    make_gateway: GatewayFactory, standin: Standin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(NOETL_TIMEOUT_SECS="0.4", GATEWAY_PROXY_TIMEOUT_SECS="0.4")
    token = await login(client, gw)
    stream = await open_stream(client, gw.url, token)
    client_id = init_of(stream)["clientId"]
    live = services_of(gw).live
    loop = asyncio.get_running_loop()
    started_ids: list[str] = []
    outcomes: Counter[str] = Counter()
    slowest = 0.0
    rounds = itertools.count()

    async def flap(turn: int) -> None:
        """The fault schedule, by request count: up, down (refused), slow (beyond the timeouts)."""
        phase = (turn // 8) % 3
        if phase == 1:
            await standin.go_down()
        else:
            standin.come_back()
            standin.state.execute_delay = 1.0 if phase == 2 else 0.0

    async def worker() -> None:
        nonlocal slowest
        while (turn := next(rounds)) < 120:
            if turn % 8 == 0:
                await flap(turn)
            begun = loop.time()
            if turn % 2:
                status, body, _ = await gql(
                    client, gw, token, EXECUTE, {"name": playbooks.PROGRESS_RESULT, "c": client_id}
                )
                assert status == 200, body
                if body.get("errors"):
                    codes = [e["extensions"]["code"] for e in body["errors"]]
                    assert codes in (["UPSTREAM_UNAVAILABLE"], ["UPSTREAM_ERROR"]), body
                    outcomes[f"execute {codes[0]}"] += 1
                else:
                    started_ids.append(body["data"]["executePlaybook"]["requestId"])
                    outcomes["execute ok"] += 1
            else:
                if turn % 4:  # a start through the proxy meets the slow /api/execute too
                    url, payload = f"{gw.url}/noetl/execute", {"path": playbooks.NOOP, "payload": {}}
                    status, body, _ = await call(client, "POST", url, payload, headers=bearer(token))
                else:
                    url = f"{gw.url}/noetl/executions?limit=5"
                    status, body, _ = await call(client, "GET", url, headers=bearer(token))
                assert status in (200, 502, 504), (status, body)
                if status != 200:
                    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
                outcomes[f"proxy {status}"] += 1
            slowest = max(slowest, loop.time() - begun)

    # Baseline after one round trip: the client's request index exists from then on.
    warm = await gql(client, gw, token, EXECUTE, {"name": playbooks.PROGRESS_RESULT, "c": client_id})
    await stream.wait_for(lambda e: e.event == "playbook/result")
    await wait_for(lambda: _equals(live.slots.count(hashed(token)), 0), timeout=5)
    assert not warm[1].get("errors"), warm
    base = baseline(gw)
    try:
        await asyncio.gather(*(worker() for _ in range(4)))
    finally:
        standin.come_back()
        standin.state.execute_delay = 0.0
    # Bounded: nothing waits much longer than the timeouts (access check + execute, each 0.4 s).
    assert slowest < 2.0, slowest
    assert outcomes["proxy 502"] and outcomes["proxy 504"] and outcomes["proxy 200"], outcomes
    assert outcomes["execute ok"] and outcomes["execute UPSTREAM_UNAVAILABLE"], outcomes
    try:
        for request_id in started_ids:  # every execution that started reports back
            await stream.wait_for(
                lambda e, rid=request_id: e.event == "playbook/result" and e.json["params"]["requestId"] == rid,
                timeout=10,
            )
        # No pile-up: failed starts left no request or slot; delivered ones freed theirs.
        await wait_for(lambda: _equals(live.slots.count(hashed(token)), 0), timeout=5)
        try:  # the write-behind deletes delivered requests soon after: seconds on a loaded machine
            await wait_for(lambda: baseline(gw) == base, timeout=15)
        except AssertionError:
            assert baseline(gw) == base  # shows which part of the state grew
        assert services_of(gw).inflight <= 1  # the event stream itself
    finally:
        await stream.close()
    print(f"\nNoETL flapping: {dict(outcomes)}, slowest {slowest:.2f} s")


async def _equals(value: Any, expected: int) -> bool:
    return await value == expected
