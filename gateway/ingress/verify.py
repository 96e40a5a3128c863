"""Is this delivery from the listener's source? Checked first, on the raw bytes, before any parsing.

* ``hmac_sha256``: HMAC-SHA256 of the raw body with the shared secret, hex, in the signature header
  (an optional ``sha256=`` prefix, GitHub style); with ``timestamp_header`` the signed bytes are
  ``{timestamp}.{body}`` and a timestamp more than ``tolerance_secs`` away from now is refused (a
  captured delivery cannot be replayed later).
* ``bearer``: the shared token in the header (``Bearer`` optional), compared in constant time.
* ``pubsub_oidc``: Google's signed OIDC token (gateway/ingress/oidc.py).

Failures are ``IngressRejected`` with the reference gateway's reason codes; no secret and no part
of the proof ever reaches the public text or the log.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from gateway.ingress.listeners import Listener
from gateway.ingress.oidc import OidcVerifier
from gateway.ingress.rejections import forbidden, unauthorized

Headers = Mapping[str, str]


async def verify_delivery(listener: Listener, headers: Headers, body: bytes, oidc: OidcVerifier) -> None:
    """Return if the delivery is genuine; IngressRejected (401/403, or 503 without Google's keys) if not."""
    kind = listener.spec.verify.type
    if kind == "hmac_sha256":
        verify_hmac(listener, headers, body)
    elif kind == "bearer":
        verify_bearer(listener, headers)
    else:
        await oidc.verify(listener, headers)


def verify_hmac(listener: Listener, headers: Headers, body: bytes, now: float | None = None) -> None:
    """HMAC-SHA256 over the raw body (and the timestamp, when the listener has one)."""
    spec = listener.spec.verify
    secret = _secret_of(listener)
    provided = headers.get(spec.signature_header)
    if not provided:
        raise unauthorized("missing_signature", f"Missing signature header {spec.signature_header}")
    signed = body
    if spec.timestamp_header:
        stamp = headers.get(spec.timestamp_header, "").strip()
        if not stamp:
            raise unauthorized("missing_timestamp", f"Missing timestamp header {spec.timestamp_header}")
        if not stamp.isascii() or not stamp.isdigit():
            raise unauthorized("bad_timestamp", "The timestamp is not a number of seconds")
        skew = abs((time.time() if now is None else now) - int(stamp))
        if skew > spec.tolerance_secs:
            raise unauthorized("stale_timestamp", f"The timestamp is more than {spec.tolerance_secs} s from now")
        signed = stamp.encode() + b"." + body
    value = provided.strip()
    if value[:7].lower() == "sha256=":
        value = value[7:]
    expected = hmac.new(secret, signed, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(expected, value.lower().encode("latin-1", "replace")):
        raise unauthorized("bad_signature", "The signature does not match the body")


def verify_bearer(listener: Listener, headers: Headers) -> None:
    """The shared token, ``Bearer`` prefix optional, compared in constant time."""
    spec = listener.spec.verify
    raw = headers.get(spec.signature_header)
    if not raw:
        raise unauthorized("missing_token", f"Missing token header {spec.signature_header}")
    token = raw.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not hmac.compare_digest(_secret_of(listener), token.encode("latin-1", "replace")):
        raise unauthorized("bad_token", "The token does not match")


def _secret_of(listener: Listener) -> bytes:
    if listener.secret is None:  # the models forbid it; a listener without its secret refuses everything
        raise forbidden("misconfigured", "The listener has no verification secret")
    return listener.secret
