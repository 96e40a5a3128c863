"""Header hygiene of the ``/noetl/*`` proxy (CONTRACT §4), both directions.

Requests: hop-by-hop headers, ``Host``, every credential the gateway consumed
(``Authorization``, ``Cookie``, ``X-Session-Token``) and every client-sent identity header
(``X-User-*``, ``X-Noetl-User-*``) are dropped; the gateway adds who the user is and where
the request came from. Responses: end-to-end headers pass through, except the ones the
gateway owns (CORS, request id) and ``Set-Cookie`` (see docs/proxy.md for why).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

# RFC 9110 §7.6.1 plus the legacy ones proxies still meet; names in lower case.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Request headers never forwarded: credentials the gateway consumed, ``Expect`` (Tornado
# already answered ``100 Continue``; the upstream leg is ours), and the framing and
# forwarding headers the gateway sets itself.
_REQUEST_DROP = HOP_BY_HOP | {
    "host",
    "content-length",
    "authorization",
    "cookie",
    "x-session-token",
    "expect",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
}
_REQUEST_DROP_PREFIXES = ("x-user-", "x-noetl-user-")

# Response headers the gateway owns or refuses to relay.
_RESPONSE_DROP = HOP_BY_HOP | {"set-cookie", "x-request-id"}
_RESPONSE_DROP_PREFIXES = ("access-control-",)


_TOKENS: dict[str, frozenset[str]] = {}  # Connection value → its tokens ("keep-alive" on nearly every message)
_TOKENS_MAX = 256


def _connection_tokens(value: str) -> frozenset[str]:
    """Header names listed in one ``Connection`` value: hop-by-hop for this message too."""
    tokens = _TOKENS.get(value)
    if tokens is None:
        tokens = frozenset(token.strip().lower() for token in value.split(",") if token.strip())
        if len(_TOKENS) < _TOKENS_MAX:
            _TOKENS[value] = tokens
    return tokens


def upstream_request_headers(
    client_headers: Iterable[tuple[str, str]],
    *,
    user_id: str,
    user_email: str,
    request_id: str,
    peer_ip: str,
    scheme: str,
    host: str,
    trust_forwarded: bool = True,
) -> list[tuple[str, str]]:
    """Headers to send to NoETL: the client's end-to-end ones, cleaned, plus the gateway's.

    ``trust_forwarded`` (a proxy sits in front, ``GATEWAY_TRUSTED_PROXY_HOPS`` > 0): its
    ``X-Forwarded-Proto``/``-Host`` are passed on; otherwise they came from the client and
    the gateway's own view replaces them. One pass over the headers (this runs on every
    proxied call); names listed in ``Connection`` are taken out afterwards.
    """
    listed: set[str] = set()
    out: list[tuple[str, str]] = []
    forwarded_for: list[str] = []
    forwarded_proto = ""
    forwarded_host = ""
    for name, value in client_headers:
        lower = name.lower()
        if lower in _REQUEST_DROP:
            if lower == "x-forwarded-for":
                forwarded_for.append(value.strip())
            elif lower == "x-forwarded-proto":
                if not forwarded_proto:
                    forwarded_proto = value.split(",")[0].strip()
            elif lower == "x-forwarded-host":
                if not forwarded_host:
                    forwarded_host = value.split(",")[0].strip()
            elif lower == "connection":
                listed |= _connection_tokens(value)
            continue
        if not lower.startswith(_REQUEST_DROP_PREFIXES):
            out.append((name, value))
    if listed - _REQUEST_DROP:
        out = [(name, value) for name, value in out if name.lower() not in listed]
    # Appending the peer keeps the chain an ingress built (NoETL decides how much of it to
    # trust); Proto/Host set by a trusted ingress in front of the gateway win over the
    # gateway's own view (the ingress may terminate TLS).
    forwarded_for.append(peer_ip)
    if not trust_forwarded:
        forwarded_proto = forwarded_host = ""
    chain = peer_ip if len(forwarded_for) == 1 else ", ".join([part for part in forwarded_for if part])
    out += (
        ("X-Forwarded-For", chain),
        ("X-Forwarded-Proto", forwarded_proto or scheme),
        ("X-Forwarded-Host", forwarded_host or host),
        ("X-Noetl-User-Id", user_id),
        ("X-Noetl-User-Email", user_email),
        ("X-Request-Id", request_id),
    )
    return out


_PASS, _DROP, _CONNECTION, _LOCATION = range(4)
# Upstream header name (as sent) → (name, lower-case name, what to do with it): NoETL sends the
# same few names on every answer. Bounded, since the names come from the upstream.
_RESPONSE_NAMES: dict[bytes, tuple[str, str, int]] = {}
_RESPONSE_NAMES_MAX = 512


def _response_name(raw: bytes) -> tuple[str, str, int]:
    known = _RESPONSE_NAMES.get(raw)
    if known is None:
        name = raw.decode("latin-1")
        lower = name.lower()
        if lower == "connection":
            kind = _CONNECTION
        elif lower in _RESPONSE_DROP or lower.startswith(_RESPONSE_DROP_PREFIXES):
            kind = _DROP
        else:
            kind = _LOCATION if lower == "location" else _PASS
        known = (name, lower, kind)
        if len(_RESPONSE_NAMES) < _RESPONSE_NAMES_MAX:
            _RESPONSE_NAMES[raw] = known
    return known


def client_response_headers(
    upstream_headers: Iterable[tuple[bytes, bytes]], noetl_base_url: str | None = None
) -> list[tuple[str, str, str]]:
    """Headers of NoETL's answer (as received: latin-1 bytes) that reach the client, as
    (name, lower-case name, value); order and repeats kept.

    With ``noetl_base_url``, a ``Location`` into NoETL's API is rewritten to the gateway's
    ``/noetl/`` path and one elsewhere on NoETL's internal host is dropped: the client must
    never learn (or be sent to) the internal address.
    """
    listed: set[str] = set()
    out: list[tuple[str, str, str]] = []
    for raw_name, raw_value in upstream_headers:
        name, lower, kind = _response_name(raw_name)
        if kind == _PASS:
            out.append((name, lower, raw_value.decode("latin-1")))
        elif kind == _CONNECTION:
            listed |= _connection_tokens(raw_value.decode("latin-1"))
        elif kind == _LOCATION:
            if noetl_base_url is None:
                out.append((name, lower, raw_value.decode("latin-1")))
            else:
                public = public_location(raw_value.decode("latin-1"), noetl_base_url)
                if public is not None:
                    out.append((name, lower, public))
    if listed - _RESPONSE_DROP:  # ``Connection: keep-alive`` names nothing left to drop
        out = [header for header in out if header[1] not in listed]
    return out


def public_location(location: str, noetl_base_url: str) -> str | None:
    """``Location`` as the client may see it: ``http://noetl-host/api/…`` → ``/noetl/…``; NoETL's other
    absolute URLs → None (dropped); relative ones and other hosts unchanged (CONTRACT §4)."""
    try:
        target = urlsplit(location.strip())
        base = urlsplit(noetl_base_url)
    except ValueError:
        return None  # unparsable: it cannot be checked, so it is not sent
    if not target.netloc or target.netloc.lower() != base.netloc.lower():
        return location  # relative, or another host: NoETL's address is not in it
    if not target.path.startswith("/api/"):
        return None
    public = "/noetl/" + target.path[len("/api/") :]
    if target.query:
        public += "?" + target.query
    if target.fragment:
        public += "#" + target.fragment
    return public
