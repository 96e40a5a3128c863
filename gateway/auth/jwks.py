"""A JWKS document's RSA signing keys by key id: what Auth0 and Google (Pub/Sub push) publish."""

from __future__ import annotations

from typing import Any

import jwt


def rsa_signing_keys(document: Any) -> dict[str, Any]:
    """``kid`` → public key, for every RS256 signing key of the document; anything else is skipped
    (an encryption key, another key type, or an entry that does not parse)."""
    keys: dict[str, Any] = {}
    for entry in document.get("keys", []) if isinstance(document, dict) else []:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
            continue
        try:
            keys[str(entry.get("kid") or "")] = jwt.PyJWK.from_dict(entry, algorithm="RS256").key
        except jwt.PyJWKError:
            continue
    return keys
