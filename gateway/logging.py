"""Structured logging with token scrubbing and a per-request ``request_id``.

Every record passes through :class:`TokenScrubber`, so no session, Auth0 or callback
token (nor a password in a URL) can reach a log line, whoever wrote the message.
"""

from __future__ import annotations

import atexit
import contextvars
import hashlib
import logging
import re
import sys
import time
from typing import Any

import orjson

from gateway.log_writer import BackgroundHandler, ContextStamp

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # JWTs (Auth0 tokens, callback tokens): three base64url parts, the first a JSON header.
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[jwt]"),
    # Authorization header values.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    # key=value / "key": "value" forms of anything that carries a secret.
    (
        re.compile(
            r"(?i)((?:session_token|auth0_token|auth0_refresh_token|callback_token|access_token|"
            r"refresh_token|token|password|secret|x-session-token|x-callback-token)"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]+"
        ),
        r"\1[redacted]",
    ),
    # Credentials inside URLs: scheme://user:pass@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@"), r"\1[redacted]@"),
]


# A match of any pattern above contains one of these (ASCII-lowercased) or both "://" and "@";
# most lines contain none, and then the four regular expressions (≈ 12 µs a line) are skipped.
_SECRET_HINTS = ("eyj", "bearer", "basic", "token", "password", "secret")


def scrub(text: str) -> str:
    """Replace anything that looks like a token or password with a marker."""
    # Only for ASCII text is lower() exact against (?i): re also folds e.g. "ſ" to "s".
    if text.isascii():
        lowered = text.lower()
        if not any(hint in lowered for hint in _SECRET_HINTS) and not ("://" in text and "@" in text):
            return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def short_hash(token: str) -> str:
    """A short, non-reversible tag for a token, safe to log and correlate."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:10]


class TokenScrubber(ContextStamp):
    """Render the message once, scrub it, and add the current request id (and trace ids)."""

    def __init__(self) -> None:
        super().__init__(request_id_var.get)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return super().filter(record)  # the request id and trace ids, unless stamped on the caller's thread


class _SecondCache:
    """A timestamp's text down to the second, formatted once per second (strftime ≈ 5 µs a line)."""

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def get(self, created: float, render: Any) -> str:
        second = int(created)
        if second != self.second:
            self.text = render(created)
            self.second = second
        return self.text


class TextFormatter(logging.Formatter):
    """``logging.Formatter`` whose default ``asctime`` reuses the date and time of the same second,
    and whose tracebacks are scrubbed: they are rendered here, after the filter ran, and an
    exception's message may quote a header or a URL with a token in it."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._seconds = _SecondCache()

    def formatException(self, ei: Any) -> str:
        return scrub(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return scrub(super().formatStack(stack_info))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        text = self._seconds.get(record.created, lambda t: time.strftime(self.default_time_format, self.converter(t)))
        return self.default_msec_format % (text, record.msecs) if self.default_msec_format else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def __init__(self) -> None:
        super().__init__()
        self._seconds = _SecondCache()

    def format(self, record: logging.LogRecord) -> str:
        second = self._seconds.get(record.created, lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)))
        entry: dict[str, Any] = {
            "ts": second + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        trace_id = getattr(record, "trace_id", None)
        if trace_id is not None:  # tracing on and a span current: the line joins its trace
            entry["trace_id"] = trace_id
            entry["span_id"] = getattr(record, "span_id", None)
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return orjson.dumps(entry).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


_background: BackgroundHandler | None = None


def setup_logging(fmt: str = "text", level: str = "INFO", stream: Any = None, background: bool = True) -> None:
    """Configure the root logger once: scrubbing filter on the handler, text or JSON lines.

    With ``background`` (the default) records are scrubbed, formatted and written by a writer
    thread (gateway/log_writer.py), off the event loop; ``flush_logging()`` / ``stop_logging()``
    write what is waiting.
    """
    global _background
    stop_logging()  # a second setup (tests) first writes what the previous one still holds
    handler: logging.Handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(TokenScrubber())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    if background:
        assert isinstance(handler, logging.StreamHandler)
        _background = BackgroundHandler(handler)
        _background.addFilter(ContextStamp(request_id_var.get))
        handler = _background
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter that would log connection URLs at INFO.
    logging.getLogger("nats").setLevel(logging.WARNING)


def fast_path_for(logger: logging.Logger) -> BackgroundHandler | None:
    """The background handler when it is the only one a record of ``logger`` reaches (no filter
    of the logger's own, none on the handler but the context stamp): then a caller may queue a
    line with ``queue_line`` and skip building a ``LogRecord``. None otherwise."""
    background = _background
    if background is None or logger.filters or background.level or len(background.filters) != 1:
        return None
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers += current.handlers
        current = current.parent if current.propagate else None
    return background if handlers == [background] else None


def flush_logging() -> None:
    """Write every line the background writer still holds (on the calling thread)."""
    if _background is not None:
        _background.flush()


def stop_logging() -> None:
    """Stop the background writer after writing what it holds: the graceful stop and exit call this."""
    global _background
    if _background is not None:
        _background.stop()
        _background = None


atexit.register(stop_logging)  # registered after logging's own shutdown hook, so it runs first
