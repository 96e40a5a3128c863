"""The audit stream: one JSON line per security-relevant event, apart from the operational log.

Who signed in or failed to, who signed out, what was refused and by which rule, who used an admin
route, which callback was refused and why, who hit a rate limit, and the configuration the process
started with. The schema is stable and documented in docs/audit.md; a line never holds a token:
values are checked against the log scrubber's patterns, and the config's secrets are masked.

Writing happens on a thread of its own behind a bounded queue: an attacker who makes us refuse
requests by the thousand makes lines, but never makes a request wait on disk I/O. When the queue
is full a line is dropped and counted (``gateway_audit_dropped_total``), never blocks.
"""

from __future__ import annotations

import contextvars
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

import orjson

from gateway.logging import request_id_var, scrub

SCHEMA_VERSION = 1
MAX_QUEUED_LINES = 10_000

# Every event type and the fields it may carry beyond the common ones (ts, event, v, request_id).
EVENTS: dict[str, tuple[str, ...]] = {
    "login": ("outcome", "user_id", "email", "ip", "reason"),
    "logout": ("user_id", "email", "ip"),
    "access_denied": ("user_id", "email", "ip", "method", "route", "rule", "playbook"),
    "admin_route": ("user_id", "email", "ip", "method", "route", "rule"),
    "callback_refused": ("ip", "route", "reason"),
    "rate_limited": ("ip", "limit", "route"),
    "ingress_refused": ("ip", "listener", "reason", "status", "delivery_id"),
    "ingress_accepted": ("ip", "listener", "delivery_id", "playbook", "execution_id", "duplicate"),
    "config": ("settings",),
}

_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN")

# Who is calling, noted by the HTTP layer as it learns it (address first, then the signed-in user),
# so a service deep in a request can audit an event without every caller passing the session down.
_caller: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("audit_caller", default={})  # noqa: B039 -- never mutated


def note_caller(**fields: Any) -> None:
    """Add ``ip``/``user_id``/``email`` to what this request's audit lines say about the caller."""
    _caller.set({**_caller.get(), **fields})


class AuditLog:
    """Security events as JSON lines to stdout, a file, or nowhere (``GATEWAY_AUDIT_LOG``)."""

    def __init__(self, destination: str = "off", on_drop: Callable[[], None] | None = None) -> None:
        self.destination = destination.strip() or "off"
        self.enabled = self.destination.lower() != "off"
        self._on_drop = on_drop
        self._queue: queue.Queue[bytes | None] = queue.Queue(MAX_QUEUED_LINES)
        self._thread: threading.Thread | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> None:
        """Open the destination and start the writer thread (idempotent; nothing when off)."""
        if not self.enabled or self._thread is not None:
            return
        if self.destination.lower() == "stdout":
            self._out = sys.stdout.buffer
        else:
            self._out = open(self.destination, "ab")  # held open for the process's life
        self._thread = threading.Thread(target=self._write_lines, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, event: str, **fields: Any) -> None:
        """Queue one event; fields outside the event's schema are a programming error."""
        allowed = EVENTS[event]
        unknown = set(fields) - set(allowed)
        if unknown:
            raise ValueError(f"audit event {event!r} has no field {sorted(unknown)[0]!r}")
        if not self.enabled:
            return
        entry: dict[str, Any] = {"ts": _now(), "v": SCHEMA_VERSION, "event": event}
        rid = request_id_var.get()
        if rid != "-":
            entry["request_id"] = rid
        caller = _caller.get()
        for name in allowed:
            value = fields.get(name, caller.get(name))
            if value is not None:
                entry[name] = scrub(value) if isinstance(value, str) else value
        try:
            self._queue.put_nowait(orjson.dumps(entry) + b"\n")
        except queue.Full:
            if self._on_drop is not None:
                self._on_drop()

    def record_config(self, settings: Mapping[str, Any]) -> None:
        """The configuration the process runs with; secrets are shown as set or not, never their value."""
        self.record("config", settings={name: _masked(name, value) for name, value in sorted(settings.items())})

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued (bounded wait), then stop the thread."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._thread = None
        if self._out is not None and self._out is not sys.stdout.buffer:
            self._out.close()

    def _write_lines(self) -> None:
        out = self._out
        assert out is not None
        while True:
            line = self._queue.get()
            if line is None:
                out.flush()
                return
            out.write(line)
            if self._queue.empty():
                out.flush()


def _masked(name: str, value: Any) -> Any:
    if any(word in name.upper() for word in _SECRET_WORDS):
        return "[set]" if value else "[not set]"
    if isinstance(value, str):
        return scrub(value)  # e.g. a password inside NATS_URL
    if isinstance(value, list | tuple):
        return [scrub(v) if isinstance(v, str) else v for v in value]
    return value if isinstance(value, int | float | bool) or value is None else str(value)


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
