"""Session-token hygiene and the signed per-request callback tokens (CONTRACT §3, §6)."""

from __future__ import annotations

import hashlib
import re
import secrets
import time

import jwt

from gateway.errors import PublicError, code_for_status

_SESSION_TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}")


def is_wellformed_session_token(token: str | None) -> bool:
    """True if the token could be a session token; auth playbooks put tokens into SQL."""
    return bool(token) and _SESSION_TOKEN_RE.fullmatch(token or "") is not None


def token_hash(token: str) -> str:
    """Hex SHA-256 of a token: the only form in which a token is stored or compared."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class CallbackTokenError(PublicError):
    """A callback token is missing, forged, expired, or names another request."""

    def __init__(self, status: int, public: str) -> None:
        super().__init__(status, code_for_status(status), public)


class CallbackSigner:
    """Issues and checks the HS256 JWTs that authenticate worker callbacks."""

    def __init__(self, secret: str | None, ttl_secs: int) -> None:
        self.secret_was_generated = not secret
        self._secret = secret or secrets.token_urlsafe(48)
        self._ttl = ttl_secs

    def issue(self, request_id: str, ttl_secs: float | None = None) -> str:
        """A token for one request id, valid for the request's lifetime."""
        exp = int(time.time() + (ttl_secs if ttl_secs is not None else self._ttl))
        return jwt.encode({"rid": request_id, "exp": exp}, self._secret, algorithm="HS256")

    def verify(self, token: str | None, request_id: str) -> None:
        """Raise CallbackTokenError unless the token is ours, unexpired and names request_id."""
        if not token:
            raise CallbackTokenError(401, "Missing callback token")
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], options={"require": ["exp", "rid"]})
        except jwt.ExpiredSignatureError:
            raise CallbackTokenError(401, "Callback token expired") from None
        except jwt.InvalidTokenError:
            raise CallbackTokenError(401, "Invalid callback token") from None
        if claims.get("rid") != request_id:
            raise CallbackTokenError(403, "Callback token does not match request_id")
