"""Session records, their normalisation, and the shared cache (CONTRACT §7).

The cache is keyed by the SHA-256 of the token (a raw token is never a key); values
hold no token. Revocation tombstones (logout) are checked before the cache, on every
replica, through a mirrored bucket of their own. Tombstones exist only for sessions that
were valid (logout validates first), and each replica mirrors at most
``GATEWAY_REVOCATION_MIRROR_MAX`` of them: past that, tombstones of sessions that have
expired anyway go first, and while live ones had to go too, a mirror miss is confirmed by
a read of the bucket (``SessionCache.was_revoked``) — a full mirror is slower, never wrong.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.auth.tokens import token_hash
from gateway.metrics import Metrics
from gateway.nats.kv import KvBucket
from gateway.timestamps import epoch_seconds
from gateway.tracing import session_lookup


@dataclass(frozen=True, slots=True)
class User:
    """The authenticated user as the wire contract spells it."""

    user_id: int
    email: str
    display_name: str
    roles: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """CONTRACT §3 ``user`` object."""
        return {
            "user_id": self.user_id,
            "email": self.email,
            "display_name": self.display_name,
            "roles": list(self.roles),
        }


@dataclass(frozen=True, slots=True)
class Session:
    """A validated session: who, until when."""

    user: User
    expires_at: str | None
    token_hash: str
    expires_epoch: float | None = field(default=None, compare=False)

    @property
    def expired(self) -> bool:
        """True once ``expires_at`` is in the past."""
        return self.expires_epoch is not None and self.expires_epoch <= time.time()


def parse_roles(raw: Any) -> tuple[str, ...]:
    """Roles as a list, a JSON list in a string, or a Postgres array literal ``{a,b}``."""
    if raw is None:
        return ()
    if isinstance(raw, list | tuple):
        return tuple(str(role) for role in raw if role is not None)
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return ()
        if text.startswith("["):
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = None
            if isinstance(decoded, list):
                return tuple(str(role) for role in decoded if role is not None)
        if text.startswith("{") and text.endswith("}"):
            inner = text[1:-1]
            return tuple(part.strip().strip('"') for part in inner.split(",") if part.strip())
        return (text,)
    return (str(raw),)


def parse_user(raw: Any) -> User | None:
    """A User from a playbook/NoETL answer, tolerant of the known spellings; None if unusable."""
    if not isinstance(raw, dict):
        return None
    user_id_raw = raw.get("user_id")
    if isinstance(user_id_raw, bool):
        return None
    try:
        user_id = int(user_id_raw) if user_id_raw is not None else 0
    except (TypeError, ValueError):
        return None
    email = str(raw.get("email") or "")
    display_name = str(raw.get("display_name") or email)
    return User(user_id=user_id, email=email, display_name=display_name, roles=parse_roles(raw.get("roles")))


def parse_expiry(raw: Any) -> float | None:
    """Epoch seconds of ``expires_at`` (gateway.timestamps' one rule); None if unknown."""
    return epoch_seconds(raw)


def session_from_record(record: dict[str, Any], hashed: str) -> Session | None:
    """A Session from a cache value or a validate answer (``user`` nested or flat)."""
    user = parse_user(record.get("user") if isinstance(record.get("user"), dict) else record)
    if user is None:
        return None
    expires_at = record.get("expires_at")
    expires_text = str(expires_at) if expires_at not in (None, "") else None
    return Session(user=user, expires_at=expires_text, token_hash=hashed, expires_epoch=parse_expiry(expires_at))


def tombstone(session: Session) -> dict[str, Any]:
    """The revocation value: when, and until when the session could have been used at all."""
    return {"revoked_at": time.time(), "session_expires": session.expires_epoch}


def tombstone_obsolete(value: dict[str, Any], now: float) -> bool:
    """A tombstone of a session past its own expiry: that session is refused anyway (§3)."""
    expires = value.get("session_expires")
    return isinstance(expires, int | float) and expires < now


def cache_record(session: Session) -> dict[str, Any]:
    """The KV value of CONTRACT §7 (no token in it)."""
    return {
        "user_id": session.user.user_id,
        "email": session.user.email,
        "display_name": session.user.display_name,
        "expires_at": session.expires_at,
        "is_active": True,
        "roles": list(session.user.roles),
    }


class SessionCache:
    """Cached sessions and revocations, shared across replicas through NATS KV."""

    def __init__(self, sessions: KvBucket, revoked: KvBucket, metrics: Metrics) -> None:
        self.sessions = sessions
        self.revoked = revoked
        self._metrics = metrics
        # Decode once: the Session built from a mirror value, valid while that same value is held.
        self._decoded: dict[str, tuple[dict[str, Any], Session]] = {}

    def is_revoked(self, hashed: str) -> bool:
        """A logged-out token hash, by the mirror alone (complete unless it overflowed)."""
        return self.revoked.get_local(hashed) is not None

    async def was_revoked(self, hashed: str) -> bool:
        """A logged-out token hash: the mirror, and the bucket itself while the mirror is incomplete."""
        if self.revoked.get_local(hashed) is not None:
            return True
        if self.revoked.complete:
            return False
        return await self.revoked.fetch(hashed) is not None

    def lookup_local(self, hashed: str) -> Session | None:
        """The hot path: a mirror hit costs no I/O and no JSON decoding."""
        record = self.sessions.get_local(hashed)
        if record is None:
            self._decoded.pop(hashed, None)
            return None
        return self._session_of(hashed, record)

    def cached(self, token: str) -> Session | None:
        """The hot path, without awaiting: a session this replica's mirrors vouch for, counted as a
        hit. None is no verdict: ``lookup`` decides and counts."""
        return self._vouched(token_hash(token))

    def _vouched(self, hashed: str) -> Session | None:
        """The hit rules, for ``cached`` and ``lookup`` alike: the revocation mirror is complete and
        has no tombstone for it, the session mirror holds it, it has not expired. Counted as a hit."""
        if not self.revoked.complete or self.is_revoked(hashed):
            return None
        session = self.lookup_local(hashed)
        if session is None or session.expired:
            return None
        self._metrics.count_session("hit")
        return session

    @session_lookup  # a span with the outcome when tracing is on
    async def lookup(self, token: str) -> Session | None:
        """A valid cached session for the token, else None (revoked/expired/inactive evicted)."""
        hashed = token_hash(token)
        session = self._vouched(hashed)
        if session is not None:
            return session
        # The slow path: an incomplete revocation mirror, a tombstone, a mirror miss, an expiry.
        if self.is_revoked(hashed) or (not self.revoked.complete and await self.was_revoked(hashed)):
            self._metrics.count_session("revoked")
            return None
        session = self.lookup_local(hashed)
        if session is None:
            record = await self.sessions.get(hashed)
            session = self._session_of(hashed, record) if record is not None else None
        if session is None:
            self._metrics.count_session("miss")
            return None
        if session.expired:
            self._metrics.count_session("expired")
            await self.evict(hashed)
            return None
        self._metrics.count_session("hit")
        return session

    def _session_of(self, hashed: str, record: dict[str, Any]) -> Session | None:
        cached = self._decoded.get(hashed)
        if cached is not None and cached[0] is record:
            return cached[1]
        if record.get("is_active") is False:
            return None
        session = session_from_record(record, hashed)
        if session is not None:
            if len(self._decoded) > 100_000:
                self._decoded.clear()
            self._decoded[hashed] = (record, session)
        return session

    async def store(self, session: Session) -> bool:
        """Cache a session validated by NoETL; False when only this process has it (NATS away or
        the write failed: it is queued, and other replicas validate the session again meanwhile)."""
        return await self.sessions.put(session.token_hash, cache_record(session))

    async def evict(self, hashed: str) -> None:
        """Forget a session (invalid on validate, expired)."""
        self._decoded.pop(hashed, None)
        await self.sessions.delete(hashed)

    async def revoke(self, session: Session) -> None:
        """Logout of a valid session: a tombstone every replica honours, then evict."""
        await self.revoked.put(session.token_hash, tombstone(session))
        await self.evict(session.token_hash)
