"""Scripted playbooks of the NoETL stand-in, by catalog path.

Auth playbooks read the Auth0 token to choose a script (so one stand-in serves every
test): ``reject…`` is refused, ``error…`` fails, ``silent…`` never calls back,
``slow…`` answers after ``slow_secs`` variables or 1 s, ``nats…`` answers over NATS,
``member…`` logs in as a user without the admin role, anything else logs in as an admin.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.standin.server import PlaybookRun, StandinState

LOGIN = "api_integration/auth0/auth0_login"
VALIDATE = "api_integration/auth0/auth0_validate_session"
CHECK_ACCESS = "api_integration/auth0/check_playbook_access"
LOGOUT = "api_integration/auth0/auth0_logout"
PROGRESS_RESULT = "tests/progress_result"
FAILING = "tests/failing"
NOOP = "tests/noop"
# A registered playbook the check-access playbook refuses ("forbidden" in its path).
FORBIDDEN = "secret/forbidden_report"
AMADEUS = "api_integration/amadeus_ai_api"

DEFAULT_USER = {"user_id": "42", "email": "alice@example.com", "display_name": None, "roles": "{admin,analyst}"}
# "member…" Auth0 tokens log in as a signed-in user without the admin role.
MEMBER_USER = {"user_id": "77", "email": "mia@example.com", "display_name": "Mia", "roles": "{analyst}"}


CATALOG_BASE_ID = 880_000_000_000_000_001


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def login_outcome(state: StandinState, variables: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """What the login script decides for these variables: (callback status, data). A successful
    login creates the session in the stand-in. Shared by the playbook and the sync login route."""
    token = str(variables.get("auth0_token", ""))
    if token.startswith("reject"):
        return "success", {"status": "unauthenticated", "message": "Auth0 token rejected"}
    if token.startswith("error"):
        return "error", {"error": "auth0 userinfo call failed"}
    hours = float(variables.get("session_duration_hours") or 8)
    if token.startswith("expired"):
        hours = -1
    session_token = "sess_" + secrets.token_urlsafe(24)
    user = dict(MEMBER_USER if token.startswith("member") else DEFAULT_USER)
    if ":" in token:  # "good:bob@example.com" logs in as that address
        user["email"] = token.split(":", 1)[1]
        user["user_id"] = str(abs(hash(user["email"])) % 100000)
    expires_at = _iso(time.time() + hours * 3600)
    state.sessions[session_token] = {"user": user, "expires_at": expires_at, "valid": True}
    return "success", {
        "status": "authenticated",
        "session_token": session_token,
        "user": user,
        "expires_at": expires_at,
        "message": "Authentication successful",
    }


async def auth0_login(run: PlaybookRun) -> None:
    token = str(run.variables.get("auth0_token", ""))
    if token.startswith("silent"):
        return
    if token.startswith("slow"):
        await asyncio.sleep(float(run.variables.get("slow_secs", 1.0)))
    status, data = login_outcome(run.state, run.variables)
    await run.callback(status, data, transport="nats" if token.startswith("nats") else None)


async def validate_session(run: PlaybookRun) -> None:
    record = run.state.sessions.get(str(run.variables.get("session_token")))
    if record is None or not record.get("valid", True):
        await run.callback("success", {"valid": False, "user": None, "expires_at": None})
        return
    await run.callback("success", {"valid": True, "user": record["user"], "expires_at": record["expires_at"]})


def access_outcome(state: StandinState, variables: dict[str, Any]) -> dict[str, Any]:
    """What the check-access script decides: ``{allowed, user, message}`` (playbook and sync route)."""
    path = str(variables.get("playbook_path"))
    record = state.sessions.get(str(variables.get("session_token")))
    allowed = record is not None and path not in state.denied_paths and "forbidden" not in path
    return {
        "allowed": allowed,
        "user": record["user"] if record else None,
        "message": "Access granted" if allowed else f"No execute permission on {path}",
    }


async def check_access(run: PlaybookRun) -> None:
    await run.callback("success", access_outcome(run.state, run.variables))


async def logout(run: PlaybookRun) -> None:
    record = run.state.sessions.get(str(run.variables.get("session_token")))
    if record is not None:
        record["valid"] = False


async def progress_result(run: PlaybookRun) -> None:
    """Reports progress, waits at its gate (if a test set one), then posts its result."""
    rid = run.variables.get("request_id")
    eid = run.execution.execution_id
    await run.post(
        "/api/internal/progress",
        {"request_id": rid, "execution_id": eid, "step": "start", "message": "working", "progress": 0.5},
    )
    await run.gate()
    result = {"answer": 42, "echo": {k: v for k, v in run.variables.items() if k not in ("callback_token",)}}
    run.execution.result = result
    await run.post(
        "/api/internal/callback/async", {"request_id": rid, "execution_id": eid, "status": "COMPLETED", "data": result}
    )


async def failing(run: PlaybookRun) -> None:
    rid = run.variables.get("request_id")
    await run.gate()
    run.execution.status = "FAILED"
    await run.post(
        "/api/internal/callback/async",
        {
            "request_id": rid,
            "execution_id": run.execution.execution_id,
            "status": "FAILED",
            "error": {"message": "step http_call failed: 500 from upstream"},
        },
    )


async def noop(run: PlaybookRun) -> None:
    await run.gate()


DEFAULT_PLAYBOOKS: dict[str, Callable[[PlaybookRun], Awaitable[None]]] = {
    LOGIN: auth0_login,
    VALIDATE: validate_session,
    CHECK_ACCESS: check_access,
    LOGOUT: logout,
    PROGRESS_RESULT: progress_result,
    FAILING: failing,
    NOOP: noop,
    FORBIDDEN: noop,
    AMADEUS: progress_result,
}
