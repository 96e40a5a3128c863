"""REST auth endpoints: login, validate, check-access, logout (CONTRACT §3)."""

from __future__ import annotations

import math

from gateway.auth.tokens import is_wellformed_session_token, token_hash
from gateway.errors import PublicError
from handlers.base import APIHandler
from handlers.errors import ApiError
from handlers.models import CheckAccessRequest, LoginRequest, LogoutRequest, ValidateRequest


class LoginHandler(APIHandler):
    """Exchange an Auth0 token for a gateway session via the login playbook."""

    route_name = "auth_login"

    async def post(self) -> None:
        retry_after = self.auth.login_limiter.acquire(self.client_ip())
        if retry_after > 0:
            self.services.audit.record("rate_limited", limit="logins per minute", route=self.request.path)
            raise ApiError(
                429,
                "Too many login attempts; retry later",
                headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
            )
        body = self.parse_body(LoginRequest)
        variables = {
            "auth0_token": body.auth0_token,
            "auth0_refresh_token": body.auth0_refresh_token or "",
            "auth0_domain": body.auth0_domain or "",
            "session_duration_hours": body.session_duration_hours,
            "client_ip": body.client_ip or self.client_ip(),
            "client_user_agent": body.client_user_agent or self.request.headers.get("User-Agent", ""),
        }
        try:
            answer = await self.auth.login(variables)  # AuthError / Auth0Error: their status and text
        except Exception as exc:
            self._count_login_failure(exc)
            raise
        user = answer["user"]
        self.metrics.reference.login.labels("succeeded").inc()
        self.services.audit.record("login", outcome="success", user_id=user["user_id"], email=user["email"])
        self.write_json(answer)

    def _count_login_failure(self, exc: Exception) -> None:
        """401: the credentials were refused; anything else: the login could not be done."""
        refused = isinstance(exc, PublicError) and exc.status == 401
        self.metrics.reference.login.labels("not_authenticated" if refused else "callback_failed").inc()
        reason = exc.public if isinstance(exc, PublicError) else "internal error"
        self.services.audit.record("login", outcome="failure", reason=reason)


class ValidateHandler(APIHandler):
    """Is this session token valid? Always 200 with ``valid`` (errors are for NoETL outages)."""

    route_name = "auth_validate"

    async def post(self) -> None:
        body = self.parse_body(ValidateRequest)
        if not is_wellformed_session_token(body.session_token):
            self.write_json({"valid": False, "user": None, "expires_at": None, "message": "Malformed session token"})
            return
        session = await self.validate_token(body.session_token)
        if session is None:
            self.write_json(
                {"valid": False, "user": None, "expires_at": None, "message": "Session is invalid or expired"}
            )
            return
        self.write_json(
            {
                "valid": True,
                "user": session.user.to_json(),
                "expires_at": session.expires_at,
                "message": "Session is valid",
            }
        )


class CheckAccessHandler(APIHandler):
    """May this session run/view/edit that playbook? Answered by the check-access playbook."""

    route_name = "auth_check_access"

    async def post(self) -> None:
        body = self.parse_body(CheckAccessRequest)
        answer = {"playbook_path": body.playbook_path, "permission_type": body.permission_type}
        if not is_wellformed_session_token(body.session_token):
            self.write_json({"allowed": False, "user": None, **answer, "message": "Malformed session token"})
            return
        session = await self.validate_token(body.session_token)
        if session is None:
            self.write_json({"allowed": False, "user": None, **answer, "message": "Invalid or expired session"})
            return
        decision = await self.auth.check_access(body.session_token, body.playbook_path, body.permission_type)
        self.write_json({**decision, **answer})


class LogoutHandler(APIHandler):
    """Revoke a session on every replica: only a session that validates gets a tombstone.

    Unknown or invalid token: 401, nothing written (its check spends the client's budget like
    any session check). A session already logged out: 200 again, nothing written.
    """

    route_name = "auth_logout"

    async def post(self) -> None:
        token = None
        if self.request.body and self.request.body.strip():
            token = self.parse_body(LogoutRequest).session_token
        token = token or self.find_session_token()
        if not token:
            raise ApiError(401, "Missing authentication token")
        if not is_wellformed_session_token(token):
            raise ApiError(401, "Invalid or expired session")
        self.check_cookie_origin()
        session = await self.validate_token(token)
        if session is None:
            if await self.services.sessions.was_revoked(token_hash(token)):
                self.write_json({"status": "logged_out"})
                return
            raise ApiError(401, "Invalid or expired session")
        await self.auth.logout(token, session)
        self.services.audit.record("logout", user_id=session.user.user_id, email=session.user.email)
        self.write_json({"status": "logged_out"})


default_handlers = [
    (r"/api/auth/login", LoginHandler),
    (r"/api/auth/validate", ValidateHandler),
    (r"/api/auth/check-access", CheckAccessHandler),
    (r"/api/auth/logout", LogoutHandler),
]
