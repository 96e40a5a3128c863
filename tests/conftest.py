"""Shared fixtures: a real nats-server, the NoETL stand-in, gateway instances, an HTTP client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from tests.standin.server import StandinState, start_standin
from tests.support.gateway import GatewayInstance, GatewayProcess
from tests.support.nats_cluster import NatsCluster
from tests.support.nats_server import NatsServer, free_port, nats_server_binary, require_binary
from tests.support.signin import SignedIn, login
from tests.support.silent_login import SilentLogin, start_silent_login


@pytest.fixture(scope="session")
def nats_binary() -> str:
    return require_binary("nats-server", nats_server_binary())


@pytest.fixture(scope="session")
def nats_server(nats_binary: str) -> Iterator[NatsServer]:
    """One JetStream server for the whole run (tests use fresh random tokens and ids)."""
    server = NatsServer(nats_binary)
    server.start()
    yield server
    server.close()


@pytest.fixture
def own_nats(nats_binary: str) -> Iterator[NatsServer]:
    """A server of the test's own, for fault tests that stop and restart it."""
    server = NatsServer(nats_binary)
    server.start()
    yield server
    server.close()


class Standin:
    """The running stand-in: its state, its base URL, and a switch for outage drills."""

    def __init__(self, state: StandinState, port: int) -> None:
        self.state = state
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server: HTTPServer | None = start_standin(port, state)

    async def go_down(self) -> None:
        """Stop listening and drop open connections (NoETL crashed)."""
        if self.server is not None:
            self.server.stop()
            await self.server.close_all_connections()
            self.server = None

    def come_back(self) -> None:
        """Listen again on the same port with the same state."""
        if self.server is None:
            self.server = start_standin(self.port, self.state)


def run_standin(io_loop: IOLoop, nats_server: NatsServer) -> Iterator[Standin]:
    """A stand-in with fresh state on a free port for one test; brought down and closed after it."""
    state = StandinState(nats_url=nats_server.url)
    running = Standin(state, free_port())
    yield running
    io_loop.run_sync(running.go_down)
    io_loop.run_sync(state.close)


@pytest.fixture
def standin(io_loop: IOLoop, nats_server: NatsServer) -> Iterator[Standin]:
    yield from run_standin(io_loop, nats_server)


@pytest.fixture
def gateway_env(standin: Standin, nats_server: NatsServer) -> dict[str, str]:
    """Environment for a gateway wired to the stand-in and the shared nats-server."""
    return {
        "NOETL_BASE_URL": standin.url,
        "NATS_URL": nats_server.url,
        "AUTH_PLAYBOOK_TIMEOUT_SECS": "5",
        "GATEWAY_CALLBACK_SECRET": "test-callback-secret-0123456789abcdefghij",
        "CORS_ALLOWED_ORIGINS": "http://ui.example:3000",
        "GATEWAY_HEARTBEAT_INTERVAL_SECS": "30",
    }


GatewayFactory = Callable[..., Awaitable[GatewayInstance]]
Replicas = tuple[GatewayInstance, GatewayInstance]
ReplicasFactory = Callable[..., Awaitable[Replicas]]
SignedInFactory = Callable[..., Awaitable[SignedIn]]
SilentLoginFactory = Callable[[GatewayInstance], Awaitable[SilentLogin]]


@pytest.fixture
def make_gateway(io_loop: IOLoop, gateway_env: dict[str, str]) -> Iterator[GatewayFactory]:
    """Start gateways in the test loop: ``gw = await make_gateway(NATS_URL="", ...)``."""
    started: list[GatewayInstance] = []

    async def factory(**overrides: str) -> GatewayInstance:
        instance = GatewayInstance({**gateway_env, **overrides})
        started.append(instance)
        return await instance.start()

    yield factory
    for instance in reversed(started):
        io_loop.run_sync(instance.stop, timeout=15)


@pytest.fixture
def make_replicas(make_gateway: GatewayFactory) -> ReplicasFactory:
    """Two replicas with the same settings: ``a, b = await make_replicas(NATS_URL=own_nats.url)``.

    What one writes (sessions, waiters, revocations) the other must see through NATS.
    """

    async def factory(**overrides: str) -> Replicas:
        return await make_gateway(**overrides), await make_gateway(**overrides)

    return factory


@pytest.fixture
def replicas(io_loop: IOLoop, make_replicas: ReplicasFactory) -> Replicas:
    """Two replicas with the default settings: ``a, b = replicas``."""
    pair: Replicas = io_loop.run_sync(make_replicas, timeout=30)
    return pair


@pytest.fixture
def gateway(io_loop: IOLoop, make_gateway: GatewayFactory) -> GatewayInstance:
    instance: GatewayInstance = io_loop.run_sync(make_gateway, timeout=15)
    return instance


@pytest.fixture
def gateway_process(gateway_env: dict[str, str], tmp_path: Path) -> Iterator[GatewayProcess]:
    """The gateway as its own OS process (log in tmp_path), for what one process measures: memory, signals."""
    process = GatewayProcess({**gateway_env, "GATEWAY_LOG_LEVEL": "WARNING"}).start(str(tmp_path / "gateway.log"))
    yield process
    process.stop()


@pytest.fixture
def token(io_loop: IOLoop, gateway: GatewayInstance, client: aiohttp.ClientSession) -> str:
    """Alice's session token on ``gateway``: where most signed-in tests start."""

    async def sign_in() -> str:
        return await login(client, gateway)

    session_token: str = io_loop.run_sync(sign_in, timeout=15)
    return session_token


@pytest.fixture
def alice(gateway: GatewayInstance, client: aiohttp.ClientSession, token: str) -> SignedIn:
    """Alice signed in on ``gateway`` (``token``) with ``client``: ``await alice.gql(query)``."""
    return SignedIn(gateway, client, token)


@pytest.fixture
def make_signed_in(make_gateway: GatewayFactory, client: aiohttp.ClientSession) -> SignedInFactory:
    """A gateway with its own settings and a session on it: ``alice = await make_signed_in(GATEWAY_X="1")``."""

    async def factory(*, auth0_token: str = "good", **overrides: str) -> SignedIn:
        gw = await make_gateway(**overrides)
        return SignedIn(gw, client, await login(client, gw, auth0_token))

    return factory


@pytest.fixture
def silent_login(standin: Standin, client: aiohttp.ClientSession) -> SilentLoginFactory:
    """``login = await silent_login(gw)``: a login on ``gw`` waiting for ``await login.answer(gw)``."""

    async def start(gw: GatewayInstance) -> SilentLogin:
        return await start_silent_login(client, gw, standin)

    return start


@pytest.fixture
def client(io_loop: IOLoop) -> Iterator[aiohttp.ClientSession]:
    async def create() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    session = io_loop.run_sync(create)
    yield session
    io_loop.run_sync(session.close)


@pytest.fixture
def nats_cluster(nats_binary: str) -> Iterator[NatsCluster]:
    """A 3-node JetStream cluster of the test's own (tests/support/nats_cluster.py), for the cluster drills."""
    cluster = NatsCluster(nats_binary)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
