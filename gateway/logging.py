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

from gateway.log_writer import BackgroundHandler, ContextStamp, LineRenderer
from gateway.tracing import log_ids

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


# What a formatter needs of a line: created, msecs, level name, logger name, message (scrubbed),
# request id, (trace id, span id) or None.
QueuedFields = tuple[float, float, str, str, str, str, "tuple[Any, Any] | None"]


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
        return self._time_text(record.created, record.msecs)

    def _time_text(self, created: float, msecs: float) -> str:
        text = self._seconds.get(created, lambda t: time.strftime(self.default_time_format, self.converter(t)))
        return self.default_msec_format % (text, msecs) if self.default_msec_format else text

    def renders_lines(self) -> bool:
        """True when ``format_line`` makes what ``format`` would (the gateway's own format)."""
        return self._fmt == TEXT_FORMAT and self.datefmt is None

    def format_line(self, line: QueuedFields) -> str:
        """``format`` of a record without exception or stack, from its fields."""
        created, msecs, levelname, name, message, request_id, _ids = line
        return f"{self._time_text(created, msecs)} {levelname} {name} [{request_id}] {message}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def __init__(self) -> None:
        super().__init__()
        self._seconds = _SecondCache()

    def format(self, record: logging.LogRecord) -> str:
        trace_id = getattr(record, "trace_id", None)
        ids = None if trace_id is None else (trace_id, getattr(record, "span_id", None))
        fields = (record.created, record.msecs, record.levelname, record.name, record.getMessage())
        entry = self._entry((*fields, getattr(record, "request_id", "-"), ids))
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return orjson.dumps(entry).decode()

    def _entry(self, line: QueuedFields) -> dict[str, Any]:
        created, msecs, levelname, name, message, request_id, ids = line
        second = self._seconds.get(created, lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)))
        entry: dict[str, Any] = {
            "ts": second + f".{int(msecs):03d}Z",
            "level": levelname,
            "logger": name,
            "msg": message,
            "request_id": request_id,
        }
        if ids is not None and ids[0] is not None:  # tracing on and a span current: the line joins its trace
            entry["trace_id"], entry["span_id"] = ids
        return entry

    def renders_lines(self) -> bool:
        return True

    def format_line(self, line: QueuedFields) -> str:
        """``format`` of a record without exception or stack, from its fields."""
        return orjson.dumps(self._entry(line)).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class QueuedLines(LineRenderer):
    """A queued access line through ``TokenScrubber`` and the handler's formatter without a
    ``LogRecord`` (≈ 2 µs a line on the writer thread instead of ≈ 6: record, filter chain,
    generic formatting). tests/test_log_writer.py compares it with the record path byte for byte."""

    def __init__(self, scrubber: TokenScrubber, formatter: TextFormatter | JsonFormatter) -> None:
        self._scrubber = scrubber
        self._formatter = formatter

    def usable(self, sink: logging.Handler) -> bool:
        formatter = self._formatter
        return sink.formatter is formatter and sink.filters == [self._scrubber] and formatter.renders_lines()

    def render(self, line: Any) -> str:
        created, level, name, msg, args, request_id, ids = line
        message = str(msg)  # LogRecord.getMessage(), and TokenScrubber's fallback when it fails
        if args:
            try:
                message = message % args
            except Exception:
                pass
        current = log_ids()  # ContextStamp on the rendering thread, as the record path runs it
        msecs = int((created - int(created)) * 1000) + 0.0  # as LogRecord computes it
        fields = (created, msecs, logging.getLevelName(level), name, scrub(message), request_id)
        return self._formatter.format_line((*fields, ids if current is None else current))


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
    scrubber = TokenScrubber()
    handler.addFilter(scrubber)
    formatter = JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    if background:
        assert isinstance(handler, logging.StreamHandler)
        _background = BackgroundHandler(handler, renderer=QueuedLines(scrubber, formatter))
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
