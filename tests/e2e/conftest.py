"""Session-scoped fixtures of the end-to-end suite: the real NoETL stack, our playbooks in its
catalog, a stand-in Auth0 issuer, and the gateway as a real process in front of it.

Run with ``make e2e`` (``pytest tests/e2e``); ``make test`` ignores this directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import catalog
from tests.e2e.issuer import AUDIENCE, TestIssuer
from tests.e2e.stack import NOETL_DB, Stack, StackError, http_json
from tests.support.gateway import GatewayProcess
from tests.support.missing import fail_in_ci_else_skip

AUTH_SQL = Path(__file__).parent / "sql" / "auth_schema.sql"
CALLBACK_SECRET = "e2e-callback-secret-0123456789abcdefghijklmn"

ALICE = {"sub": "auth0|e2e-alice", "email": "alice@e2e.test", "name": "Alice Analyst"}  # role analyst (seeded)
BOB = {"sub": "auth0|e2e-bob", "email": "bob@e2e.test", "name": "Bob Viewer"}  # role viewer (seeded)


def _unavailable(message: str) -> None:
    """A stack that cannot start fails in CI and skips on a developer machine (like a missing binary)."""
    fail_in_ci_else_skip(message)


@pytest.fixture(scope="session")
def issuer() -> Iterator[TestIssuer]:
    """The stand-in Auth0 tenant (RSA key + JWKS on loopback)."""
    server = TestIssuer().start()
    yield server
    server.stop()


@dataclass
class Deployed:
    """The running stack with our schema, credential and playbooks in it."""

    stack: Stack
    issuer: TestIssuer
    versions: dict[str, int]

    @property
    def noetl_url(self) -> str:
        return self.stack.noetl_url

    def sql(self, statement: str) -> str:
        """Run SQL in NoETL's database (where the ``auth`` schema lives); rows as psql -A -t text."""
        assert self.stack.postgres is not None
        return self.stack.postgres.psql(statement, db=NOETL_DB)


_TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How long the stack took to come up (the first run of a cache includes the install)."""
    if _TIMINGS:
        laps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in _TIMINGS.items() if name != "up")
        terminalreporter.write_line(f"e2e stack: up in {_TIMINGS['up']:.1f}s ({laps}); logs in .e2e-cache/logs/")


@pytest.fixture(scope="session")
def deployed(issuer: TestIssuer) -> Iterator[Deployed]:
    """Start the stack (cached venv and cluster), then deploy what the gateway relies on."""
    stack = Stack()
    try:
        stack.up()
    except StackError as exc:
        _unavailable(f"NoETL stack unavailable: {exc}")
    _TIMINGS.update(stack.timings)
    try:
        assert stack.postgres is not None
        stack.postgres.psql(file=AUTH_SQL, db=NOETL_DB)
        # NoETL's POST /api/auth/session/validate reads the auth schema through this credential.
        stack.register_credential(stack.pg_auth_credential("pg_auth"))
        versions = catalog.register_all(
            stack,
            {
                "auth0_jwks_url": issuer.jwks_url,
                "auth0_issuer": issuer.url,
                "auth0_audience": AUDIENCE,
                "auth_db_dsn": stack.auth_db_dsn,
            },
        )
        yield Deployed(stack, issuer, versions)
    finally:
        stack.down()


def gateway_settings(deployed: Deployed) -> dict[str, str]:
    """Environment of a gateway wired to the real stack."""
    return {
        "NOETL_BASE_URL": deployed.noetl_url,
        "NATS_URL": deployed.stack.nats_url,
        "GATEWAY_CALLBACK_SECRET": CALLBACK_SECRET,
        "AUTH_PLAYBOOK_TIMEOUT_SECS": "30",
        "GATEWAY_HEARTBEAT_INTERVAL_SECS": "5",
        "NOETL_TIMEOUT_SECS": "30",
        "CORS_ALLOWED_ORIGINS": "http://ui.e2e.test",
    }


@pytest.fixture
def gateway_env(deployed: Deployed) -> dict[str, str]:
    """Overrides the root fixture: ``make_gateway`` starts in-loop gateways against the real stack."""
    return gateway_settings(deployed)


@pytest.fixture(scope="session")
def gw(deployed: Deployed) -> Iterator[GatewayProcess]:
    """The gateway under test, a real ``python -m gateway`` process (log in .e2e-cache/logs/gateway.log)."""
    process = GatewayProcess(gateway_settings(deployed))
    process.start(str(deployed.stack.paths.logs / "gateway.log"))
    yield process
    process.stop()


@dataclass(frozen=True)
class Login:
    """A session opened through the gateway's login."""

    token: str
    user: dict[str, Any]
    expires_at: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def login_sync(gw: GatewayProcess, issuer: TestIssuer, who: dict[str, str]) -> Login:
    """Log in once for a whole module (the login case itself is tested on its own)."""
    token = issuer.token(who["sub"], who["email"], who["name"])
    status, body = http_json("POST", f"{gw.url}/api/auth/login", {"auth0_token": token}, timeout=60)
    assert status == 200, body
    return Login(body["session_token"], body["user"], body["expires_at"])


@pytest.fixture(scope="session")
def alice(gw: GatewayProcess, issuer: TestIssuer) -> Login:
    return login_sync(gw, issuer, ALICE)


@pytest.fixture(scope="session")
def bob(gw: GatewayProcess, issuer: TestIssuer) -> Login:
    return login_sync(gw, issuer, BOB)
