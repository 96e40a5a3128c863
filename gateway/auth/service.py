"""Authentication logic: login, session validation, access checks, logout (CONTRACT §3).

Login and check-access run NoETL playbooks and wait for their callback; validation is
cache first, then NoETL's validate API (or the validate playbook where that API is
missing). Handlers only translate between HTTP and these calls.

What a caller without a session can cost (issue 13 §4): a token that misses the cache is
asked of NoETL only within the client's budget (``GATEWAY_VALIDATE_MISS_PER_MINUTE`` per
client IP, ``ValidationBudgetExceeded`` beyond it), and a token NoETL called invalid is
refused from a short negative cache (``GATEWAY_NEGATIVE_CACHE_SECS``) without asking
again. Logout writes a tombstone only for a session that validates.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Any

from gateway.auth.auth0 import Auth0Verifier
from gateway.auth.callbacks import CallbackRouter, CallbackTimeout
from gateway.auth.miss_budget import MissBudget
from gateway.auth.rate_limit import RateLimiter
from gateway.auth.sessions import Session, SessionCache, User, parse_user, session_from_record
from gateway.auth.tokens import CallbackSigner, is_wellformed_session_token, token_hash
from gateway.config import GatewayConfig
from gateway.errors import UPSTREAM_ERROR, UPSTREAM_UNAVAILABLE, PublicError
from gateway.logging import short_hash
from gateway.noetl.client import NoetlClient, UpstreamError, UpstreamFailure

log = logging.getLogger("gateway.auth")

DEV_USER = User(user_id=0, email="dev@localhost", display_name="Developer (auth bypass)", roles=("admin",))


class AuthError(PublicError):
    """An auth failure with the status and public text the client sees."""

    def __init__(self, status: int, public: str) -> None:
        # Seen from GraphQL, a failed auth playbook (timeout, error) is an upstream failure.
        super().__init__(status, UPSTREAM_UNAVAILABLE if status in (502, 503, 504) else UPSTREAM_ERROR, public)


class ValidationBudgetExceeded(AuthError):
    """This client spent its budget of cache-missing session checks: 429, no NoETL call."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(429, "Too many session checks from this client; retry later")
        self.retry_after = max(1, math.ceil(retry_after))


def _playbook_reason(data: Any, fallback: str) -> str:
    """The playbook's own ``message``/``error`` text, as the reference gateway reports it."""
    if not isinstance(data, dict):
        return fallback
    message = str(data.get("message") or "").strip()
    error = str(data.get("error") or "").strip()
    if message and error:
        return f"{message}: {error}"
    return message or error or fallback


def _callback_status(callback: dict[str, Any]) -> str:
    """``status`` defaults to success only when absent (an empty string is not a success)."""
    status = callback.get("status")
    return "success" if status is None else str(status)


def _validate_api_missing(status: int, answer: Any) -> bool:
    """A 404 from the router (no such endpoint), not NoETL's 404 for a missing credential."""
    return status == 404 and (not isinstance(answer, dict) or answer.get("detail") in (None, "Not Found"))


def _data_of(callback: dict[str, Any]) -> dict[str, Any]:
    data = callback.get("data")
    return data if isinstance(data, dict) else {}


class AuthService:
    """Runs the auth playbooks and owns the session cache's read/write policy."""

    def __init__(
        self,
        config: GatewayConfig,
        noetl: NoetlClient,
        callbacks: CallbackRouter,
        sessions: SessionCache,
        signer: CallbackSigner,
    ) -> None:
        self._config, self._noetl, self._callbacks, self._signer = config, noetl, callbacks, signer
        self.sessions = sessions
        self._access_cache: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.login_limiter = RateLimiter(config.gateway_login_rate_per_minute)
        self.misses = MissBudget(
            config.gateway_validate_miss_per_minute,
            config.gateway_validate_miss_burst,
            config.gateway_negative_cache_secs,
        )
        self.auth0: Auth0Verifier | None = None
        if config.auth0_domain:
            self.auth0 = Auth0Verifier(config.auth0_domain, config.auth0_audience, config.auth0_jwks_url, noetl.http)

    # -- playbooks with callbacks ----------------------------------------------------------

    def callback_variables(self, request_id: str) -> dict[str, Any]:
        """What every playbook run by the gateway needs to call back."""
        return {
            "callback_subject": self._callbacks.subject_for(request_id),
            "request_id": request_id,
            "gateway_url": self._config.public_url,
            "callback_token": self._signer.issue(request_id, self._auth_token_ttl()),
        }

    def _auth_token_ttl(self) -> float:
        """Nobody waits for an auth playbook's callback after the timeout: its token ends soon after."""
        return min(float(self._config.gateway_callback_token_ttl_secs), self._config.auth_playbook_timeout_secs + 5.0)

    async def run_and_wait(self, playbook: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Execute a playbook and wait for its callback; the waiter is cleaned up on every path."""
        request_id = str(uuid.uuid4())
        self._callbacks.register(request_id)
        try:
            answer = await self._noetl.execute(playbook, {**variables, **self.callback_variables(request_id)})
            log.info("playbook %s started (execution %s)", playbook, answer.get("execution_id"))
            return await self._callbacks.wait(request_id, self._config.auth_playbook_timeout_secs)
        except CallbackTimeout:
            raise AuthError(
                504, f"No answer from the auth playbook within {self._config.auth_playbook_timeout_secs:g}s"
            ) from None
        finally:
            self._callbacks.discard(request_id)

    # -- login -----------------------------------------------------------------------------

    async def login(self, variables: dict[str, Any]) -> dict[str, Any]:
        """Run the login playbook; cache and return the session (CONTRACT §3 response)."""
        if self._config.gateway_auth_bypass:
            token = "dev-" + uuid.uuid4().hex
            return {
                "status": "authenticated",
                "session_token": token,
                "user": DEV_USER.to_json(),
                "expires_at": None,
                "message": "Authentication bypassed (GATEWAY_AUTH_BYPASS)",
            }
        if self.auth0 is not None:
            await self.auth0.verify(str(variables.get("auth0_token", "")))  # Auth0Error: 401/503
        callback = await self.run_and_wait(self._config.auth_playbook_login, variables)
        status = _callback_status(callback)
        data = _data_of(callback)
        if status != "success":
            raise AuthError(401, _playbook_reason(data, "Invalid credentials"))
        if data.get("status") != "authenticated":
            raise AuthError(401, _playbook_reason(data, f"Authentication status: {data.get('status')}"))
        session_token = data.get("session_token")
        user = parse_user(data.get("user"))
        if not isinstance(session_token, str) or not is_wellformed_session_token(session_token) or user is None:
            log.warning("login playbook answered without a usable session_token/user")
            raise AuthError(502, "The login playbook returned an incomplete session")
        if not user.email:
            raise AuthError(502, "The login playbook returned a user without email")
        session = session_from_record(
            {"user": user.to_json(), "expires_at": data.get("expires_at")}, token_hash(session_token)
        )
        assert session is not None
        await self.sessions.store(session)
        log.info("login succeeded for user %s (session %s)", user.user_id, short_hash(session_token))
        return {
            "status": "authenticated",
            "session_token": session_token,
            "user": user.to_json(),
            "expires_at": session.expires_at,
            "message": str(data.get("message") or "Authentication successful"),
        }

    # -- validation ------------------------------------------------------------------------

    async def validate(self, token: str | None, *, client: str | None) -> Session | None:
        """The session for a token, or None. Raises UpstreamFailure when NoETL cannot answer.

        ``client`` (the caller's IP) pays for a cache miss from its budget and gets
        ValidationBudgetExceeded when it has none left; a cached session never costs budget.
        None is for the gateway's own checks only.
        """
        if not is_wellformed_session_token(token):
            return None
        assert token is not None
        if self._config.gateway_auth_bypass:
            return Session(user=DEV_USER, expires_at=None, token_hash=token_hash(token))
        cached = await self.sessions.lookup(token)
        if cached is not None:
            return cached
        hashed = token_hash(token)
        if await self.sessions.was_revoked(hashed) or self.misses.known_invalid(hashed):
            return None
        if client is not None:
            retry_after = self.misses.spend(client)
            if retry_after > 0:
                raise ValidationBudgetExceeded(retry_after)
        status, answer = await self._noetl.validate_session(token, self._config.auth_session_db_credential)
        if _validate_api_missing(status, answer):
            return await self._validate_via_playbook(token, hashed)
        if status >= 400 or not isinstance(answer, dict):
            raise UpstreamError(f"NoETL session validation failed with status {status}", status, answer)
        if answer.get("status", "ok") != "ok":
            # NoETL could not decide (e.g. its auth database is down): that is not "invalid", and
            # evicting would log out every user whose session is not cached.
            log.warning("NoETL session validation could not be done (status %s)", answer.get("status"))
            raise UpstreamError("Session validation is unavailable right now", status, answer, gateway_status=503)
        return await self._accept_validation(answer, hashed)

    async def _validate_via_playbook(self, token: str, hashed: str) -> Session | None:
        try:
            callback = await self.run_and_wait(self._config.auth_playbook_validate_session, {"session_token": token})
        except AuthError as exc:
            raise UpstreamError(exc.public, exc.status) from None
        if _callback_status(callback) != "success":
            raise UpstreamError(_playbook_reason(callback.get("data"), "Session validation failed"), 502)
        return await self._accept_validation(_data_of(callback), hashed)

    async def _accept_validation(self, answer: dict[str, Any], hashed: str) -> Session | None:
        session = session_from_record(answer, hashed) if answer.get("valid") is True else None
        if session is None or session.expired:
            self.misses.remember_invalid(hashed)
            await self.sessions.evict(hashed)
            return None
        if self.sessions.is_revoked(hashed):
            return None
        await self.sessions.store(session)
        return session

    # -- access ----------------------------------------------------------------------------

    async def check_access(self, token: str, playbook_path: str, permission: str) -> dict[str, Any]:
        """Run the check-access playbook (decisions cached per session+path+permission)."""
        key = (token_hash(token), playbook_path, permission)
        now = time.monotonic()
        cached = self._access_cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        if self._config.gateway_auth_bypass:
            decision = {"allowed": True, "user": DEV_USER.to_json(), "message": "Access granted (auth bypass)"}
        else:
            callback = await self.run_and_wait(
                self._config.auth_playbook_check_access,
                {"session_token": token, "playbook_path": playbook_path, "action": permission},
            )
            data = _data_of(callback)
            if _callback_status(callback) != "success":
                raise AuthError(502, _playbook_reason(data, "The access check failed"))
            user = parse_user(data.get("user"))
            allowed = data.get("allowed") is True or str(data.get("allowed")).lower() == "true"
            decision = {
                "allowed": allowed,
                "user": user.to_json() if user else None,
                "message": str(data.get("message") or ("Access granted" if allowed else "Access denied")),
            }
        if self._config.gateway_access_cache_ttl_secs > 0:
            if len(self._access_cache) > 50_000:
                self._access_cache.clear()
            self._access_cache[key] = (now + self._config.gateway_access_cache_ttl_secs, decision)
        return decision

    # -- logout ----------------------------------------------------------------------------

    async def logout(self, token: str, session: Session) -> None:
        """Revoke a validated session on every replica; run the logout playbook (if configured)
        without waiting. Callers validate first: a tombstone for any string would let anyone
        grow every replica's revocation mirror."""
        hashed = session.token_hash
        await self.sessions.revoke(session)
        self._access_cache = {k: v for k, v in self._access_cache.items() if k[0] != hashed}
        log.info("session %s logged out", hashed[:10])
        playbook = self._config.auth_playbook_logout
        if playbook and not self._config.gateway_auth_bypass:
            request_id = str(uuid.uuid4())
            task = asyncio.create_task(self._run_logout_playbook(playbook, token, request_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _run_logout_playbook(self, playbook: str, token: str, request_id: str) -> None:
        try:
            await self._noetl.execute(playbook, {"session_token": token, **self.callback_variables(request_id)})
        except UpstreamFailure as exc:
            log.warning("logout playbook could not be started: %s", exc.public)

    async def close(self) -> None:
        """Let background logout playbooks finish (bounded)."""
        if self._background:
            await asyncio.wait(self._background, timeout=5.0)
