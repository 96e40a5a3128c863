"""Authentication logic: login, session validation, access checks, logout (CONTRACT §3).

Login and check-access run NoETL playbooks and wait for their callback (playbook_runs: the
fail-fast budget, cancelling what nobody waits for), or — with ``NOETL_AUTH_SYNC`` /
``NOETL_AUTHZ_SYNC`` — ask NoETL's synchronous auth routes (sync_api), falling back to the
playbook where NoETL lacks them; both answers end in one tail each, so the two paths decide
alike. Validation is cache first, then NoETL's validate API or the validate playbook, in the
order ``GATEWAY_SESSION_VALIDATE_VIA_PLAYBOOK`` / ``NOETL_AUTH_SYNC`` pick. Handlers only
translate between HTTP and these calls.

What a caller without a session can cost (issue 13 §4): a token that misses the cache is
asked of NoETL only within the client's budget (``GATEWAY_VALIDATE_MISS_PER_MINUTE`` per
client IP, ``ValidationBudgetExceeded`` beyond it), and a token NoETL called invalid is
refused from a short negative cache (``GATEWAY_NEGATIVE_CACHE_SECS``) without asking
again. Logout writes a tombstone only for a session that validates.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Any

from gateway.auth.auth0 import Auth0Verifier
from gateway.auth.callback_sources import CallbackSources
from gateway.auth.callbacks import CallbackRouter
from gateway.auth.miss_budget import MissBudget
from gateway.auth.playbook_runs import AuthError, AuthPlaybooks
from gateway.auth.rate_limit import RateLimiter
from gateway.auth.sessions import Session, SessionCache, User, parse_user, session_from_record
from gateway.auth.sync_api import SyncAuthApi
from gateway.auth.tokens import CallbackSigner, is_wellformed_session_token, token_hash
from gateway.config import GatewayConfig
from gateway.logging import short_hash
from gateway.metrics import Metrics
from gateway.noetl.client import NoetlClient, UpstreamError

log = logging.getLogger("gateway.auth")

DEV_USER = User(user_id=0, email="dev@localhost", display_name="Developer (auth bypass)", roles=("admin",))


__all__ = ["DEV_USER", "AuthError", "AuthService", "ValidationBudgetExceeded"]


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


def _data_of(callback: dict[str, Any]) -> dict[str, Any]:
    data = callback.get("data")
    return data if isinstance(data, dict) else {}


def _access_decision(callback: dict[str, Any]) -> dict[str, Any]:
    """The check-access playbook's callback or the sync API's answer (same shape) → the decision;
    anything but an explicit ``allowed: true`` is a denial."""
    data = _data_of(callback)
    if _callback_status(callback) != "success":
        raise AuthError(502, _playbook_reason(data, "The access check failed"))
    user = parse_user(data.get("user"))
    allowed = data.get("allowed") is True or str(data.get("allowed")).lower() == "true"
    return {
        "allowed": allowed,
        "user": user.to_json() if user else None,
        "message": str(data.get("message") or ("Access granted" if allowed else "Access denied")),
    }


class AuthService:
    """Runs the auth playbooks and owns the session cache's read/write policy."""

    def __init__(
        self,
        config: GatewayConfig,
        noetl: NoetlClient,
        callbacks: CallbackRouter,
        sessions: SessionCache,
        signer: CallbackSigner,
        metrics: Metrics,
    ) -> None:
        self._config = config
        self.sessions = sessions
        self.playbooks = AuthPlaybooks(config, noetl, callbacks, signer, metrics)
        self._cache_failed = metrics.reference.session_cache_failed
        self.sync = SyncAuthApi(noetl, config.auth_session_db_credential)
        self.callback_sources = CallbackSources(config.gateway_callback_auth, config.gateway_callback_trusted_networks)
        self._access_cache: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}
        self.login_limiter = RateLimiter(config.gateway_login_rate_per_minute)
        self.misses = MissBudget(
            config.gateway_validate_miss_per_minute,
            config.gateway_validate_miss_burst,
            config.gateway_negative_cache_secs,
        )
        self.auth0: Auth0Verifier | None = None
        if config.auth0_domain:
            self.auth0 = Auth0Verifier(config.auth0_domain, config.auth0_audience, config.auth0_jwks_url, noetl.http)

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
        callback = await self.sync.login(variables) if self._config.noetl_auth_sync else None
        if callback is None:
            callback = await self.playbooks.run_and_wait(self._config.auth_playbook_login, variables, fail_fast=True)
        return await self._finish_login(callback)

    async def _finish_login(self, callback: dict[str, Any]) -> dict[str, Any]:
        """The login playbook's callback or the sync API's answer (same shape) → the session."""
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
        if not await self.sessions.store(session):
            self._cache_failed.labels("after_login").inc()
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
        # The reference's order: the sync API when NOETL_AUTH_SYNC, else the playbook when
        # GATEWAY_SESSION_VALIDATE_VIA_PLAYBOOK, else the API; a missing API means the playbook.
        if self._config.gateway_session_validate_via_playbook and not self._config.noetl_auth_sync:
            return await self._validate_via_playbook(token, hashed)
        answer = await self.sync.validate(token)
        if answer is None:
            return await self._validate_via_playbook(token, hashed)
        return await self._accept_validation(answer, hashed)

    def cached(self, token: str) -> Session | None:
        """``validate``'s cache hit for a well-formed token, without awaiting (the proxy's hot path).

        None is no verdict (a miss, a revocation, bypass mode): then ``validate`` decides.
        """
        if self._config.gateway_auth_bypass:
            return None
        return self.sessions.cached(token)

    async def _validate_via_playbook(self, token: str, hashed: str) -> Session | None:
        playbook = self._config.auth_playbook_validate_session
        try:
            callback = await self.playbooks.run_and_wait(playbook, {"session_token": token}, fail_fast=False)
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
        if not await self.sessions.store(session):
            self._cache_failed.labels("after_api_validate").inc()
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
            decision = _access_decision(await self._ask_access(token, playbook_path, permission))
        if self._config.gateway_access_cache_ttl_secs > 0:
            if len(self._access_cache) > 50_000:
                self._access_cache.clear()
            self._access_cache[key] = (now + self._config.gateway_access_cache_ttl_secs, decision)
        return decision

    async def _ask_access(self, token: str, playbook_path: str, permission: str) -> dict[str, Any]:
        """The sync API's answer when NOETL_AUTHZ_SYNC (and NoETL has it), else the playbook's callback."""
        if self._config.noetl_authz_sync:
            answer = await self.sync.check_access(token, playbook_path, permission)
            if answer is not None:
                return answer
        variables = {"session_token": token, "playbook_path": playbook_path, "action": permission}
        return await self.playbooks.run_and_wait(self._config.auth_playbook_check_access, variables, fail_fast=True)

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
            self.playbooks.run_later(playbook, {"session_token": token})

    async def close(self) -> None:
        """Let background cancels and logout playbooks finish (bounded)."""
        await self.playbooks.close()
