"""Path safety and upstream URL building for the ``/noetl/*`` proxy (CONTRACT §4).

The gateway never normalises a client's path: a path that could leave ``/api/`` once
some server decodes or normalises it is refused with 400, and every other path is
forwarded byte for byte (escapes kept as sent, raw non-ASCII bytes percent-encoded).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes

from yarl import URL

# Encoded "/" or "\" in any case, also double-encoded (%252f): a server that decodes
# once more would see a separator the gateway never checked.
_ENCODED_SEPARATOR = re.compile(r"%(?:25)*(?:2f|5c)", re.IGNORECASE)
# Characters kept as they are when a raw path/query is re-quoted: "%" keeps the client's
# escapes untouched, everything else below is legal in a URI path or query.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_MAX_DECODE_ROUNDS = 4
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_~/:@!$&'()*+,;=-]*")
# Text that ``quote(..., safe=_PATH_SAFE)`` / ``_QUERY_SAFE`` returns unchanged (ASCII, nothing to
# escape): the common path and query skip the encode-and-quote round trip (every proxied call).
_QUOTED_PATH = re.compile(r"[A-Za-z0-9_.~/%:@!$&'()*+,;=-]*")
_QUOTED_QUERY = re.compile(r"[A-Za-z0-9_.~/%:@!$&'()*+,;=?-]*")


def unsafe_path_reason(raw_path: str) -> str | None:
    """Why ``raw_path`` (the undecoded part after ``/noetl/``) is refused, or None if safe."""
    if _PLAIN_PATH.fullmatch(raw_path):
        return None  # the common case: nothing encoded, no dot, nothing to decode
    if "\\" in raw_path:
        return "Path must not contain a backslash"
    if _ENCODED_SEPARATOR.search(raw_path):
        return "Path must not contain an encoded slash or backslash"
    for segment in raw_path.split("/"):
        decoded = _fully_decoded(segment)
        # "..;x" is ".." to servlet-style servers that strip path parameters.
        if decoded.split(b";", 1)[0] in (b".", b".."):
            return "Path must not contain '.' or '..' segments"
        if b"/" in decoded or b"\\" in decoded:
            return "Path must not contain an encoded slash or backslash"
        if any(byte < 0x20 or byte == 0x7F for byte in decoded):
            return "Path must not contain control characters"
    return None


def _fully_decoded(segment: str) -> bytes:
    """Decode percent-escapes until nothing changes (bounded): catches %252e%252e too."""
    data = segment.encode("latin-1", "replace")
    for _ in range(_MAX_DECODE_ROUNDS):
        if b"%" not in data:
            break
        decoded = unquote_to_bytes(data)
        if decoded == data:
            break
        data = decoded
    return data


def upstream_url(base_url: str, raw_path: str, raw_query: str) -> URL:
    """``{base}/api/{path}?{query}`` with the client's escapes kept (yarl must not re-encode)."""
    path = (
        raw_path if _QUOTED_PATH.fullmatch(raw_path) else quote(raw_path.encode("latin-1", "replace"), safe=_PATH_SAFE)
    )
    url = f"{base_url}/api/{path}"
    if raw_query:
        if not _QUOTED_QUERY.fullmatch(raw_query):
            raw_query = quote(raw_query.encode("latin-1", "replace"), safe=_QUERY_SAFE)
        url += "?" + raw_query
    return URL(url, encoded=True)


def canonical_path(raw_path: str) -> str:
    """Decoded path without empty segments, for matching routes such as ``execute``."""
    if "%" in raw_path or not raw_path.isascii():
        raw_path = _fully_decoded(raw_path).decode("utf-8", "replace")  # else decoding changes nothing
    return "/".join([part for part in raw_path.split("/") if part]).lower()
