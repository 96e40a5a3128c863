"""Session-token hygiene and the signed per-request callback tokens (CONTRACT §3, §6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from typing import Any

import jwt
import orjson

from gateway.errors import PublicError, code_for_status
from gateway.nats.kv import KvBucket

_SESSION_TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}")
# The gateway's request ids: ``str(uuid.uuid4())`` (gateway/auth/service.py, gateway/live/delivery.py), or the
# same 128 bits as 32 hex digits. Lower case, as Python writes them.
_CALLBACK_REQUEST_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


def is_wellformed_session_token(token: str | None) -> bool:
    """True if the token could be a session token; auth playbooks put tokens into SQL."""
    return bool(token) and _SESSION_TOKEN_RE.fullmatch(token or "") is not None


def is_callback_request_id(request_id: str | None) -> bool:
    """True for a request id the gateway could have issued; checked before it becomes a KV key,
    a lookup or a NATS subject token (a ``.``, ``*`` or ``>`` would address other subjects)."""
    return bool(request_id) and _CALLBACK_REQUEST_ID_RE.fullmatch(request_id or "") is not None


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
        self._secret = secret or secrets.token_urlsafe(48)  # 64 characters
        self._ttl = ttl_secs
        self._key = self._secret.encode("utf-8")
        self._header = jwt.encode({}, self._secret, algorithm="HS256").split(".", 1)[0]  # as issue() writes it

    def issue(self, request_id: str, ttl_secs: float | None = None) -> str:
        """A token for one request id, valid for the request's lifetime."""
        exp = int(time.time() + (ttl_secs if ttl_secs is not None else self._ttl))
        return jwt.encode({"rid": request_id, "exp": exp}, self._secret, algorithm="HS256")

    def verify(self, token: str | None, request_id: str) -> None:
        """Raise CallbackTokenError unless the token is ours, unexpired and names request_id."""
        if not token:
            raise CallbackTokenError(401, "Missing callback token")
        claims = self._own_unexpired_claims(token)
        if claims is not None:
            if claims["rid"] != request_id:
                raise CallbackTokenError(403, "Callback token does not match request_id")
            return
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], options={"require": ["exp", "rid"]})
        except jwt.ExpiredSignatureError:
            raise CallbackTokenError(401, "Callback token expired") from None
        except jwt.InvalidTokenError:
            raise CallbackTokenError(401, "Invalid callback token") from None
        if claims.get("rid") != request_id:
            raise CallbackTokenError(403, "Callback token does not match request_id")

    def _own_unexpired_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token exactly as ``issue`` writes them, correctly signed and not about to
        expire; None for anything else, which ``jwt.decode`` then judges (and refuses with its reason).

        ``jwt.decode`` costs ~45 µs a callback (its generic header, algorithm and claim checks); this
        is one HMAC and one JSON decode. It accepts only tokens ``jwt.decode`` accepts too.
        """
        if not token.isascii():
            return None
        header, _, rest = token.partition(".")
        payload, dot, signature = rest.partition(".")
        if header != self._header or not dot:
            return None
        digest = hmac.new(self._key, f"{header}.{payload}".encode("ascii", "replace"), hashlib.sha256).digest()
        if not hmac.compare_digest(base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"), signature):
            return None
        try:
            claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        if not isinstance(claims, dict) or claims.keys() != {"rid", "exp"} or type(claims["exp"]) is not int:
            return None
        if claims["exp"] <= time.time() + 1:  # expired or about to: jwt.decode draws the exact line
            return None
        return claims


class SpentCallbacks:
    """Request ids whose final callback was accepted: their callback token is refused from then on.

    Kept in a mirrored KV bucket (max age = the token lifetime, after which the token is refused
    anyway), so a token spent on one replica is refused by all within milliseconds, and checking
    costs no round trip (like logout tombstones). ``spend`` is an atomic create in the bucket, so
    of two concurrent final callbacks, on any replicas, exactly one is accepted. Without NATS:
    process memory.
    """

    def __init__(self, bucket: KvBucket) -> None:
        self._bucket = bucket

    def is_spent(self, request_id: str) -> bool:
        """True once the request's final callback was accepted (on any replica: the mirror)."""
        return self._bucket.get_local(request_id) is not None

    async def spend(self, request_id: str) -> bool:
        """Mark the final callback accepted; False if another one already was."""
        return await self._bucket.create(request_id, {"at": int(time.time())})

    async def release(self, request_id: str) -> None:
        """The final callback could not be delivered after all: the playbook may retry it."""
        await self._bucket.delete(request_id)
