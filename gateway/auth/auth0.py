"""Verification of Auth0 access tokens at the edge, before any playbook runs (CONTRACT §2).

RS256 only (no ``none``, no HS256 key confusion), keys from the tenant's JWKS fetched with the
gateway's async HTTP client, cached, and refreshed on an unknown ``kid`` at most once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import jwt
import orjson

from gateway.auth.jwks import rsa_signing_keys
from gateway.errors import PublicError, code_for_status

log = logging.getLogger("gateway.auth0")

ALLOWED_ALGORITHMS = ["RS256"]
REFRESH_INTERVAL_SECS = 60.0
LEEWAY_SECS = 30


class Auth0Error(PublicError):
    """A token that must not reach the login playbook; ``status`` is 401 or 503."""

    def __init__(self, status: int, public: str) -> None:
        super().__init__(status, code_for_status(status), public)


def _domain_of(value: str) -> str:
    return value.removeprefix("https://").removeprefix("http://").rstrip("/")


class Auth0Verifier:
    """Checks signature, ``iss``, ``aud``, ``exp``/``nbf`` of Auth0 tokens."""

    def __init__(self, domain: str, audience: str | None, jwks_url: str | None, http: aiohttp.ClientSession) -> None:
        host = _domain_of(domain)
        self.issuer = f"https://{host}/"
        self.audience = audience
        self.jwks_url = jwks_url or f"https://{host}/.well-known/jwks.json"
        self._http = http
        self._keys: dict[str, Any] = {}
        self._last_rotation = float("-inf")
        self._loaded = False
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or Auth0Error."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Auth0Error(401, "Auth0 token is not a valid JWT") from None
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise Auth0Error(401, "Auth0 token uses an unsupported algorithm")
        key = await self._key_for(str(header.get("kid") or ""))
        options: Any = {"require": ["exp", "iss"], "verify_aud": self.audience is not None}
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALLOWED_ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECS,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise Auth0Error(401, "Auth0 token has expired") from None
        except jwt.InvalidAudienceError:
            raise Auth0Error(401, "Auth0 token was issued for another audience") from None
        except jwt.InvalidIssuerError:
            raise Auth0Error(401, "Auth0 token was issued by another tenant") from None
        except jwt.ImmatureSignatureError:
            raise Auth0Error(401, "Auth0 token is not valid yet") from None
        except jwt.InvalidTokenError:
            raise Auth0Error(401, "Auth0 token signature is invalid") from None
        return claims

    async def _key_for(self, kid: str) -> Any:
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            key = self._keys.get(kid)
            # The first load is always allowed; a reload for an unknown kid (key rotation) at most
            # once a minute, so forged kids cannot make us hammer the tenant.
            now = time.monotonic()
            if key is None and (not self._loaded or now - self._last_rotation >= REFRESH_INTERVAL_SECS):
                if self._loaded:
                    self._last_rotation = now
                await self._refresh()
                key = self._keys.get(kid)
        if key is None:
            raise Auth0Error(401, "Auth0 token was signed by an unknown key")
        return key

    async def _refresh(self) -> None:
        self.fetches += 1
        try:
            async with self._http.get(self.jwks_url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status != 200:
                    raise Auth0Error(503, "Cannot fetch the Auth0 signing keys right now")
                document = orjson.loads(await resp.read())
        except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError):
            log.warning("JWKS fetch failed")
            # A failed fetch must not block retries for a whole minute.
            self._last_rotation = float("-inf")
            raise Auth0Error(503, "Cannot fetch the Auth0 signing keys right now") from None
        keys = rsa_signing_keys(document)
        self._keys = keys
        self._loaded = True
        log.info("loaded %d Auth0 signing keys", len(keys))
