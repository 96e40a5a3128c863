"""Load for the cluster drills: resuming SSE clients, paced GraphQL and worker callbacks, a report.

* :class:`DrillClient` is a browser tab: one SSE stream, reopened after it ends with its ``client_id``
  and ``Last-Event-ID`` (the SSE protocol's own resume) on whichever replica answers.
* :class:`DrillLoad` is the traffic: ``executePlaybook`` (a playbook that never calls back) and a
  ``{ me }`` query for every client in turn, at a fixed rate, on the replicas round-robin; then the
  worker's callbacks for each started request (progress notes and the result), to any replica — like
  a worker posting to the gateway's Service.
* The only retry is the one HTTP allows without knowing whether the server acted: a connection
  that could not be opened (refused: the replica is gone) is tried on the next replica. Requests use
  no keep-alive, so no request is ever sent on a connection the server is closing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson

from gateway.auth.tokens import CallbackSigner
from tests.standin import playbooks
from tests.support.live import SECRET
from tests.support.sse_client import SseEvent, SseStream

EXECUTE = """mutation($name: String!, $c: String) {
  executePlaybook(name: $name, variables: {}, clientId: $c) { requestId }
}"""
RESULT_PATH = "/api/internal/callback/async"
PROGRESS_PATH = "/api/internal/progress"


class Replica(Protocol):
    @property
    def url(self) -> str: ...


Pool = Callable[[], Sequence[Replica]]  # the replicas that should be serving right now


def order_key(event_id: str | None) -> tuple[int, int]:
    major, _, minor = (event_id or "0").partition(".")
    return int(major), int(minor or 0)


class Refused(Exception):
    """No replica accepted a connection."""


async def send(
    http: aiohttp.ClientSession, pool: Pool, turn: int, method: str, path: str, body: Any, headers: dict[str, str]
) -> tuple[int, Any, int]:
    """One request on replica ``turn`` of the pool; refused connections move on. (status, body, retries)."""
    replicas = list(pool())
    data = orjson.dumps(body) if body is not None else None
    for attempt in range(2 * len(replicas) + 1):
        replica = replicas[(turn + attempt) % len(replicas)]
        try:
            async with http.request(
                method, f"{replica.url}{path}", data=data, headers={"Content-Type": "application/json", **headers}
            ) as resp:
                raw = await resp.read()
                return resp.status, orjson.loads(raw) if raw else None, attempt
        except aiohttp.ClientConnectorError:
            replicas = list(pool()) or replicas
            continue
    raise Refused(f"{method} {path}: every replica refused the connection")


@dataclass
class DrillClient:
    """One SSE client across reconnects: what it received, in arrival order."""

    index: int
    token: str
    client_id: str = ""
    last_id: str | None = None
    results: dict[str, list[float]] = field(default_factory=dict)  # request id -> arrival times
    keys: list[tuple[int, int]] = field(default_factory=list)  # ids of playbook events, arrival order
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def _take(self, event: SseEvent) -> None:
        if event.id is not None:
            self.last_id = event.id
        if event.event == "message" and not self.client_id:
            self.client_id = event.json["result"]["clientId"]
        elif event.event == "error":
            self.errors.append(event.data)
        elif event.event.startswith("playbook/"):
            self.keys.append(order_key(event.id))
            if event.event == "playbook/result":
                self.results.setdefault(event.json["params"]["requestId"], []).append(time.monotonic())

    async def run(self, http: aiohttp.ClientSession, pool: Pool, stop: asyncio.Event) -> None:
        """Hold a stream until ``stop``; reopen it (client id + Last-Event-ID) whenever it ends."""
        for turn in itertools.count(self.index):
            if stop.is_set():
                return
            replicas = pool()
            url = replicas[turn % len(replicas)].url
            try:
                stream = await SseStream.open(
                    http, url, self.token, client_id=self.client_id or None, last_event_id=self.last_id
                )
            except aiohttp.ClientConnectorError:
                continue  # that replica is gone: the next one
            if turn != self.index:
                self.reconnects += 1
            try:
                seen = 0
                while not stop.is_set():
                    try:
                        await stream.wait_for(lambda e: True, timeout=3600, after=seen)
                    except AssertionError:  # the stream ended
                        break
                    for event in stream.events[seen:]:
                        self._take(event)
                    seen = len(stream.events)
                    self.ready.set()
                for event in stream.events[seen:]:
                    self._take(event)
            finally:
                await stream.close()


@dataclass
class DrillLoad:
    """Paced traffic from signed-in clients; what was asked, answered and posted."""

    pool: Pool
    clients: list[DrillClient]
    rate: float  # executePlaybook per second (plus as many { me } queries)
    progress_per_result: int = 2  # callbacks per request: this many progress notes, then the result
    expected: dict[str, int] = field(default_factory=dict)  # request id -> client index
    posted: dict[str, float] = field(default_factory=dict)  # request id -> when its result was accepted
    failures: list[str] = field(default_factory=list)
    served: int = 0
    callbacks: int = 0
    retried: int = 0  # connections refused, tried on the next replica
    retried_503: int = 0  # callbacks answered 503 (pending requests unreadable during a failover), sent again
    phase: str = "before"  # what the drill is doing now: tags failures
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _signer: CallbackSigner = field(default_factory=lambda: CallbackSigner(SECRET, 3600))
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The rounds still running."""
        return list(self._tasks)

    async def run(self, http: aiohttp.ClientSession) -> None:
        """``rate`` rounds per second until ``stop`` (pacing by the clock: the load's rate is the scenario)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for turn in itertools.count():
            if self.stop.is_set():
                break
            task = asyncio.create_task(self._round(http, turn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            delay = started + (turn + 1) / self.rate - loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                except TimeoutError:
                    pass
        if self._tasks:
            await asyncio.gather(*self._tasks)

    async def _round(self, http: aiohttp.ClientSession, turn: int) -> None:
        client = self.clients[turn % len(self.clients)]
        auth = {"Authorization": f"Bearer {client.token}"}
        try:
            variables = {"name": playbooks.NOOP, "c": client.client_id}
            status, body, retries = await send(
                http, self.pool, turn, "POST", "/graphql", {"query": EXECUTE, "variables": variables}, auth
            )
            self.retried += retries
            if status != 200 or body.get("errors"):
                self.failures.append(f"{self.phase}: executePlaybook: {status} {body}")
                return
            request_id = body["data"]["executePlaybook"]["requestId"]
            self.expected[request_id] = client.index
            status, body, retries = await send(
                http, self.pool, turn, "POST", "/graphql", {"query": "{ me { email } }"}, auth
            )
            self.retried += retries
            if status != 200 or body.get("errors"):
                self.failures.append(f"{self.phase}: query: {status} {body}")
            self.served += 2
            await self._callbacks(http, turn, request_id)
        except (TimeoutError, Refused, aiohttp.ClientError) as exc:
            self.failures.append(f"{self.phase}: round {turn}: {type(exc).__name__}: {exc}")

    async def _callbacks(self, http: aiohttp.ClientSession, turn: int, request_id: str) -> None:
        """The worker's posts for one request: progress notes, then the result (each to the next replica)."""
        headers = {"Authorization": f"Bearer {self._signer.issue(request_id)}"}
        base = {"request_id": request_id, "execution_id": "9001"}
        for step in range(self.progress_per_result + 1):
            last = step == self.progress_per_result
            path = RESULT_PATH if last else PROGRESS_PATH
            body = {**base, "status": "COMPLETED", "data": {"step": step}} if last else {**base, "progress": step / 10}
            sent = time.monotonic()
            status, answer, retries = await send(http, self.pool, turn + 1 + step, "POST", path, body, headers)
            self.retried += retries
            waited = 0
            while status == 503 and waited < 120:  # "try again later": pending requests unreadable for a moment
                self.retried_503 += 1
                waited += 1
                await asyncio.sleep(0.25)  # a worker's retry pause, not synchronisation
                status, answer, retries = await send(http, self.pool, turn + waited, "POST", path, body, headers)
                self.retried += retries
            self.callbacks += 1
            if status not in (200, 202):
                self.failures.append(f"{self.phase}: {path}: {status} {answer}")
            elif last:
                self.posted[request_id] = sent


@dataclass
class DrillReport:
    """What a drill prints: requests served, results delivered, worst delivery gap, time to ready."""

    name: str
    load: DrillLoad
    elapsed: float
    ready: dict[str, float]

    def delivered(self) -> int:
        return sum(len(client.results) for client in self.load.clients)

    def max_gap(self) -> float:
        """The longest time from a result accepted by a replica to its arrival at the client."""
        gaps = [
            arrivals[0] - self.load.posted[request_id]
            for client in self.load.clients
            for request_id, arrivals in client.results.items()
            if request_id in self.load.posted
        ]
        return max(gaps, default=0.0)

    def text(self) -> str:
        load = self.load
        ready = ", ".join(f"{what} {secs:.2f} s" for what, secs in self.ready.items())
        return (
            f"\n{self.name}: {len(load.clients)} SSE clients, {load.rate:g} executePlaybook/s + {load.rate:g} "
            f"queries/s, {load.rate * (load.progress_per_result + 1):g} callbacks/s for {self.elapsed:.1f} s — "
            f"requests served {load.served}, callbacks {load.callbacks}, connections retried {load.retried}, "
            f"callbacks retried after 503 {load.retried_503}, "
            f"results delivered {self.delivered()}/{len(load.expected)}, SSE reconnects "
            f"{sum(c.reconnects for c in load.clients)}, max delivery gap {self.max_gap() * 1000:.0f} ms; "
            f"time to ready: {ready}"
        )


def check_delivery(load: DrillLoad) -> None:
    """0 failed requests, every result at its client exactly once, playbook events in order per client."""
    phases = Counter(failure.split(":")[0] for failure in load.failures)
    assert not load.failures, f"failures by phase {dict(phases)}: {load.failures[:3]}"
    missing = missing_results(load)
    assert not missing, f"{len(missing)} result(s) never reached their client: {missing[:3]}"
    for client in load.clients:
        assert not client.errors, (client.index, client.errors[:3])
        twice = [rid for rid, arrivals in client.results.items() if len(arrivals) > 1]
        assert not twice, f"client {client.index} got {len(twice)} result(s) twice: {twice[:3]}"
        assert client.keys == sorted(client.keys) and len(set(client.keys)) == len(client.keys), (
            f"client {client.index}: events out of order or repeated: {client.keys}"
        )
        wanted = {rid for rid, index in load.expected.items() if index == client.index}
        stray = set(client.results) - wanted
        assert not stray, f"client {client.index} got results of other clients: {stray}"


def missing_results(load: DrillLoad) -> list[str]:
    """Request ids whose result has not reached its client (yet)."""
    return [rid for rid, index in load.expected.items() if rid not in load.clients[index].results]
