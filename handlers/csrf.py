"""Cross-site request forgery: which cookie-authenticated requests are refused.

A session cookie rides along with any request a browser makes, from any page. A state change
(anything but GET/HEAD/OPTIONS) that carries only the cookie must therefore come from an origin
we trust: one of ``CORS_ALLOWED_ORIGINS``, or a page this gateway served itself (GraphiQL).
A request with an Authorization or X-Session-Token header cannot be forged cross-site.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from tornado.httputil import HTTPServerRequest

from gateway.config import GatewayConfig


def cookie_change_from_foreign_origin(request: HTTPServerRequest, cookie: str | None, config: GatewayConfig) -> bool:
    """True when the request must be refused (403)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return False
    if request.headers.get("Authorization") or request.headers.get("X-Session-Token"):
        return False
    if not cookie:
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin in config.cors_allowed_origins:
        return False
    return not is_own_origin(origin, request.host, config.public_url)


def is_own_origin(origin: str, host: str, public_url: str) -> bool:
    """A page served by this gateway (e.g. GraphiQL): browsers cannot forge Origin.

    An Origin that does not parse (``http://[``) is nobody's: not ours, never a 500.
    """
    try:
        netloc = urlsplit(origin).netloc.lower()
    except ValueError:
        return False
    return bool(netloc) and netloc in (host.lower(), urlsplit(public_url).netloc.lower())
