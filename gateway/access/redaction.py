"""Credentials the gateway hands to playbooks are never read back by a non-admin (CONTRACT §4).

The gateway puts ``session_token``, ``callback_token``, ``auth0_token`` and
``auth0_refresh_token`` into the workloads of the playbooks it runs; NoETL stores workloads and
step contexts and returns them from its execution routes (single, list, events, ``full=true``…),
sometimes as a JSON object, sometimes as a JSON *string* holding JSON (and that string may sit
inside another one). This module is the one place that knows those keys and hides their values.

Mechanism: a byte-level filter over the serialized answer, not a JSON parser. It finds a
credential key followed by ``:`` and the opening quote of a string value, at any escaping depth
— ``"session_token": "v"``, ``\\"session_token\\": \\"v\\"``, ``\\\\\\"session_token\\\\\\"…`` —
(and Python's ``'session_token': 'v'``, the form a repr in an error text takes), drops the
value's bytes up to its closing quote at the same depth, and writes ``[redacted]`` instead. So:

* nesting of any kind is covered, objects in lists in strings in objects alike, without
  parsing or holding the document;
* it streams: only a possible *beginning* of a match at the end of a chunk is carried over to
  the next one (a few dozen bytes in practice, at most ``MAX_CARRY_BYTES``), so a key or a value
  split across chunk boundaries is still caught, memory stays bounded whatever the answer's
  size, and a live stream is not held back;
* a value whose end never comes is dropped to the end of the answer (fail closed).

Only string values are hidden: the gateway only ever hands these credentials as strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from gateway.access.roles import is_admin

# The credentials the gateway injects into workloads (gateway/auth/service.py, gateway/executions/service.py).
CREDENTIAL_KEYS = ("session_token", "callback_token", "auth0_token", "auth0_refresh_token")
REDACTED = b"[redacted]"
# A possible start of a match held back at a chunk's end may not grow beyond this (it is a key,
# some whitespace and backslash runs: a few dozen bytes unless the answer is hostile).
MAX_CARRY_BYTES = 64 * 1024


class RedactionError(Exception):
    """The answer cannot be checked within bounded memory: it must not be relayed."""


def _key_alternation() -> bytes:
    return b"|".join(re.escape(key.encode()) for key in sorted(CREDENTIAL_KEYS, key=len, reverse=True))


def _prefix_alternation() -> bytes:
    prefixes = {key[:n] for key in CREDENTIAL_KEYS for n in range(1, len(key))}
    return b"|".join(re.escape(p.encode()) for p in sorted(prefixes, key=len, reverse=True))


# Whitespace around the colon, literal or escaped at some depth (``\n``, ``\\n``, …).
_WS = rb"(?:[ \t\r\n]|\\+[nrt])*"
# A credential key and the opening quote of its string value. Group 1: the backslash run that
# escapes a quote at this depth (empty at the top level, ``\`` one string deep, ``\\\`` two…);
# the key's quotes and the value's opening quote carry exactly that run. Group 2: the quote.
_OPENING = re.compile(
    rb"(?<!\\)(\\*)([\"'])(?:" + _key_alternation() + rb")\1\2" + _WS + rb":" + _WS + rb"\1\2",
    re.IGNORECASE,
)
# Every key ends in ``_token``: a literal the regex engine finds fast; openings are matched only
# where it occurs (the byte-level filter costs ~2 ms per 7 MB answer without credentials).
_ANCHOR = re.compile(rb"_token", re.IGNORECASE)
_KEY_HEADS = sorted({len(key) - len("_token") for key in CREDENTIAL_KEYS})
# A possible beginning of an opening that reaches the end of the buffer: held back until more
# bytes decide. Every branch ends at ``\Z``. It is made only of these bytes, so only the
# buffer's tail made of them is searched.
_PARTIAL_OPENING = re.compile(
    rb"(?<!\\)(\\*)(?:\Z|([\"'])(?:\Z|(?:"
    + _prefix_alternation()
    + rb")\Z|(?:"
    + _key_alternation()
    + rb")(?:\\*\Z|\1\2"
    + _WS
    + rb"\\*\Z|\1\2"
    + _WS
    + rb":"
    + _WS
    + rb"\\*\Z)))",
    re.IGNORECASE,
)
_PARTIAL_BYTES = bytes(
    sorted(set(b"\\\"' \t\r\n:" + "".join(CREDENTIAL_KEYS).encode() + "".join(CREDENTIAL_KEYS).upper().encode()))
)


def _find_opening(buf: bytes, start: int) -> re.Match[bytes] | None:
    """The first credential key + value opening in ``buf[start:]``."""
    pos = start
    while (hit := _ANCHOR.search(buf, pos)) is not None:
        anchor = hit.start()
        for head in _KEY_HEADS:
            quote = anchor - head - 1
            if quote < start or buf[quote] not in b"\"'":
                continue
            run_start = quote
            while run_start > start and buf[run_start - 1] == 0x5C:  # a backslash
                run_start -= 1
            match = _OPENING.match(buf, run_start)
            if match is not None:
                return match
        pos = anchor + 1
    return None


def _partial_start(buf: bytes, start: int) -> int | None:
    """Where a possible, unfinished opening at the end of ``buf`` begins (None: there is none)."""
    floor = max(start, len(buf) - MAX_CARRY_BYTES)
    tail = buf[floor:]
    from_ = floor + len(tail.rstrip(_PARTIAL_BYTES))
    if from_ == floor and floor > start:
        # The whole window could belong to one unfinished key (hostile whitespace): look further
        # back once; a key that began before the window cannot be carried, so it is refused.
        seg_start = start + len(buf[start:floor].rstrip(_PARTIAL_BYTES))
        early = _PARTIAL_OPENING.search(buf, seg_start)
        if early is not None and early.start() < floor:
            raise RedactionError("an unfinished credential key is larger than the carry-over window")
    match = _PARTIAL_OPENING.search(buf, from_)
    if match is None or match.start() == len(buf):
        return None
    return match.start()


class _Value:
    """Inside a credential's string value: finds its closing quote across chunks."""

    def __init__(self, run: int, quote: bytes) -> None:
        # A quote closes the value when the backslash run before it has length ``run`` plus any
        # number of escaped backslashes at this depth (each ``2 * (run + 1)`` long); other runs
        # escape a quote *inside* the value. A single quote is never JSON-escaped: run 0.
        self.run = run if quote == b'"' else 0
        self.quote = quote
        self._period = 2 * (self.run + 1)
        self._pending = 0  # backslashes at the end of what was already dropped

    def closing(self) -> bytes:
        """The value's closing quote as it was escaped."""
        return b"\\" * self.run + self.quote

    def end_in(self, buf: bytes, start: int) -> int | None:
        """Index just after the closing quote in ``buf[start:]``, or None (all of it is value)."""
        at = buf.find(self.quote, start)
        while at != -1:
            if self._run_before(buf, start, at) % self._period == self.run:
                self._pending = 0
                return at + 1
            at = buf.find(self.quote, at + 1)
        self._pending = self._run_before(buf, start, len(buf))
        return None

    def _run_before(self, buf: bytes, start: int, at: int) -> int:
        """Length of the backslash run ending just before ``at`` (continuing from earlier chunks)."""
        run = 0
        while at - run - 1 >= start and buf[at - run - 1] == 0x5C:  # a backslash
            run += 1
        return run + self._pending if at - run == start else run


class StreamRedactor:
    """Redacts credential values in a byte stream fed chunk by chunk (see the module doc)."""

    def __init__(self) -> None:
        self._carry = b""
        self._context = b""  # the byte before the carry (a lookbehind needs it)
        self._value: _Value | None = None

    def feed(self, chunk: bytes) -> bytes:
        """The redacted bytes that are safe to send now; a possible match start is kept back."""
        return self._run(chunk, final=False)

    def finish(self) -> bytes:
        """The rest, at the end of the answer."""
        return self._run(b"", final=True)

    def _run(self, chunk: bytes, *, final: bool) -> bytes:
        offset = len(self._context)
        buf = self._context + self._carry + chunk
        out: list[bytes] = []
        i = offset
        while True:
            if self._value is not None:
                end = self._value.end_in(buf, i)
                if end is None:  # the value goes on in the next chunk
                    i = len(buf)
                    if final:
                        out.append(REDACTED + self._value.closing())
                        self._value = None
                    break
                out.append(REDACTED + self._value.closing())
                self._value = None
                i = end
                continue
            match = _find_opening(buf, i)
            if match is None:
                break
            out.append(buf[i : match.end()])
            self._value = _Value(len(match.group(1)), match.group(2))
            i = match.end()
        keep = len(buf)
        if self._value is None and not final:
            partial = _partial_start(buf, i)
            if partial is not None:
                keep = partial
        out.append(buf[i:keep])
        self._carry = buf[keep:]
        self._context = buf[keep - 1 : keep] if keep > 0 else b""
        return b"".join(out)


def redact_bytes(data: bytes) -> bytes:
    """``data`` with every credential value hidden (whole answers, small bodies)."""
    if not _may_hold_credentials(data):
        return data
    redactor = StreamRedactor()
    return redactor.feed(data) + redactor.finish()


def redact_json(value: Any) -> Any:
    """A JSON value (already decoded) with every credential value hidden, nested or in strings."""
    encoded = orjson.dumps(value)
    redacted = redact_bytes(encoded)
    return value if redacted is encoded else orjson.loads(redacted)


def _may_hold_credentials(data: bytes) -> bool:
    lowered = data.lower()
    return any(key.encode() in lowered for key in CREDENTIAL_KEYS)


def sees_credentials(roles: Iterable[str], admin_roles: Iterable[str]) -> bool:
    """Admins read answers unchanged; everyone else gets them redacted."""
    return is_admin(roles, admin_roles)


def visible_json(value: Any, roles: Iterable[str], admin_roles: Iterable[str]) -> Any:
    """``value`` as a user with ``roles`` may read it: unchanged for admins, else redacted."""
    return value if sees_credentials(roles, admin_roles) else redact_json(value)


# -- what a redacted proxy exchange changes on the wire ----------------------------------------

# Request headers that would make NoETL answer something the filter cannot check: a compressed
# body (the bytes hide the keys) or a byte range (a range may begin inside a value, after its key).
_UNCHECKABLE_REQUEST_HEADERS = frozenset({"accept-encoding", "range", "if-range"})
# Answer headers that describe the bytes before redaction.
REDACTED_ANSWER_DROPS = frozenset({"content-length", "content-md5", "digest", "content-digest", "repr-digest"})


def checkable_request_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers for NoETL when its answer will be redacted: an identity-encoded, whole body."""
    kept = [(name, value) for name, value in headers if name.lower() not in _UNCHECKABLE_REQUEST_HEADERS]
    kept.append(("Accept-Encoding", "identity"))
    return kept


def uncheckable_answer(status: int, content_encoding: str | None) -> str | None:
    """Why an answer cannot be redacted and must not be relayed (None: it can be)."""
    if content_encoding and content_encoding.strip().lower() not in ("", "identity"):
        return "NoETL answered with a compressed body the gateway cannot check for credentials"
    if status == 206:
        return "NoETL answered with a partial body the gateway cannot check for credentials"
    return None
