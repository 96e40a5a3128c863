"""Google Pub/Sub push authentication: the OIDC token Google signs for the push subscription.

RS256 only, the key named by the token's ``kid`` from a JWKS (Google's by default,
``GATEWAY_INGRESS_JWKS_URL`` for tests or another issuer of the same kind), then ``aud`` == the
listener's audience, ``iss`` Google's, ``exp`` (60 s leeway, as the reference), ``email`` == the
listener's service account and ``email_verified``. Keys are fetched with the gateway's async
HTTP client, kept ``KEYS_MAX_AGE_SECS`` and refetched for an unknown ``kid`` at most once a
minute, so forged kids cannot make the gateway hammer the key server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import jwt
import orjson

from gateway.auth.jwks import rsa_signing_keys
from gateway.ingress.listeners import Listener
from gateway.ingress.rejections import IngressRejected, forbidden, unauthorized

log = logging.getLogger("gateway.ingress")

GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
LEEWAY_SECS = 60
KEYS_MAX_AGE_SECS = 3600.0
REFRESH_INTERVAL_SECS = 60.0
FAILED_FETCH_PAUSE_SECS = 5.0  # no keys at all: deliveries are refused (503) this long before the next fetch


def bearer_of(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer`` header."""
    raw = headers.get("Authorization", "")
    return raw[7:].strip() if raw[:7].lower() == "bearer " else None


class JwksKeys:
    """RSA verification keys by ``kid``, from one JWKS URL."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self._http = http
        self._keys: dict[str, Any] = {}
        self._loaded_at = float("-inf")
        self._last_miss_refresh = float("-inf")
        self._unavailable_until = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key_for(self, kid: str) -> Any | None:
        """The key, fetching the set when it is old or (at most once a minute) when the kid is new."""
        now = time.monotonic()
        key = self._keys.get(kid)
        if key is not None and now - self._loaded_at < KEYS_MAX_AGE_SECS:
            return key
        async with self._lock:
            now = time.monotonic()
            if not self._keys and now < self._unavailable_until:
                raise self._unavailable()
            stale = now - self._loaded_at >= KEYS_MAX_AGE_SECS
            if stale or (kid not in self._keys and now - self._last_miss_refresh >= REFRESH_INTERVAL_SECS):
                if not stale:
                    self._last_miss_refresh = now
                await self._refresh()
            return self._keys.get(kid)

    @staticmethod
    def _unavailable() -> IngressRejected:
        return IngressRejected(
            503, "jwks_error", "Cannot fetch the push signing keys right now", retry_after=FAILED_FETCH_PAUSE_SECS
        )

    async def _refresh(self) -> None:
        self.fetches += 1
        try:
            async with self._http.get(self.url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status != 200:
                    raise ValueError(f"status {resp.status}")
                document = orjson.loads(await resp.read())
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.warning("ingress: JWKS fetch failed (%s)", type(exc).__name__)
            # Keep the keys we have; either way, the next attempt waits a refresh interval.
            self._loaded_at = time.monotonic() - KEYS_MAX_AGE_SECS + REFRESH_INTERVAL_SECS
            if self._keys:
                return
            self._unavailable_until = time.monotonic() + FAILED_FETCH_PAUSE_SECS
            raise self._unavailable() from None
        keys = rsa_signing_keys(document)
        self._keys = keys
        self._loaded_at = time.monotonic()
        log.info("ingress: loaded %d push signing keys", len(keys))


class OidcVerifier:
    """``pubsub_oidc``: the checks of the module docstring, with reference reason codes."""

    def __init__(self, keys: JwksKeys) -> None:
        self.keys = keys

    async def verify(self, listener: Listener, headers: Mapping[str, str]) -> None:
        """Return if the token is Google's, for this audience and this service account."""
        token = bearer_of(headers)
        if not token:
            raise unauthorized("missing_token", "Missing Authorization: Bearer token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise unauthorized("oidc_malformed", "The token is not a JWT") from None
        if header.get("alg") != "RS256":
            raise unauthorized("oidc_malformed", "The token is not RS256-signed")
        key = await self.keys.key_for(str(header.get("kid") or ""))
        if key is None:
            raise unauthorized("oidc_unknown_kid", "The token is signed by an unknown key")
        check_claims(token, key, listener.spec.verify.audience or "", listener.spec.verify.service_account or "")


def check_claims(token: str, key: Any, audience: str, service_account: str) -> dict[str, Any]:
    """Signature, ``aud``, ``iss``, ``exp``, then the identity; the claims (pure: the bench times it)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=audience,
            issuer=GOOGLE_ISSUERS,
            leeway=LEEWAY_SECS,
            options={"require": ["exp", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("oidc_expired", "The token has expired") from None
    except jwt.InvalidAudienceError:
        raise forbidden("oidc_wrong_audience", "The token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise unauthorized("oidc_wrong_issuer", "The token is not Google's") from None
    except jwt.InvalidSignatureError:
        raise unauthorized("oidc_bad_signature", "The token's signature is invalid") from None
    except jwt.InvalidTokenError:
        raise unauthorized("oidc_invalid", "The token is not valid") from None
    if claims.get("email") != service_account:
        raise forbidden("oidc_wrong_sa", "The token is for another service account")
    if claims.get("email_verified") is not True:
        raise forbidden("oidc_unverified_email", "The token's email is not verified")
    return claims
