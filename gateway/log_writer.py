"""Log lines formatted and written on a thread of their own, off the event loop.

The access log costs the proxied GET about a third of its gap to a bare proxy (docs/benchmarks.md):
building the record is cheap, scrubbing, formatting and the ``write`` are not. The event loop only
stamps the record with what belongs to its context (request id, trace ids) and appends it to a
bounded deque; a writer thread wakes every ``INTERVAL`` seconds, scrubs and formats every waiting
record with the real handler's filters and formatter and writes them in one ``write``.

Bounded: past ``capacity`` waiting records a line is dropped and counted
(``gateway_log_dropped_total``); the loop never blocks on logging. Nothing is lost at a graceful
stop: ``stop()`` (called by ``python -m gateway`` after the server stopped, and at exit) writes
what is waiting before it returns.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from gateway.tracing import log_ids

INTERVAL = 0.02  # seconds between two batches: how late a line may reach the log
CAPACITY = 50_000  # waiting records before lines are dropped (≈ 1 s of access lines at 50k rps)

# Arguments safe to render later, on the writer thread: immutable, so the line is the same.
_IMMUTABLE = frozenset((str, int, float, bool, bytes, type(None)))

_dropped = 0  # process-wide: logging exists before (and without) any Services/Metrics


def dropped_total() -> int:
    """Lines dropped because the writer fell ``CAPACITY`` records behind (for the metric)."""
    return _dropped


class ContextStamp(logging.Filter):
    """On the caller's thread: what the writer thread could not know later (context variables)."""

    def __init__(self, request_id_of: Any) -> None:
        super().__init__()
        self._request_id_of = request_id_of

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = self._request_id_of()
        ids = log_ids()  # None unless tracing is on and a span is current
        if ids is not None:
            record.trace_id, record.span_id = ids
        return True


class LineRenderer:
    """Renders a queued line (``queue_line``) to the text ``sink``'s filters and formatter would
    make of its record, without building the record; ``usable()`` is False once the sink has
    other filters or another formatter (then each line takes the record path)."""

    def usable(self, sink: logging.Handler) -> bool:
        return False

    def render(self, line: _Line) -> str:
        raise NotImplementedError


class BackgroundHandler(logging.Handler):
    """Queues records for a writer thread that hands them to ``sink``'s filters and formatter."""

    def __init__(
        self, sink: logging.StreamHandler[Any], capacity: int = CAPACITY, renderer: LineRenderer | None = None
    ) -> None:
        super().__init__()
        self.sink = sink
        self.capacity = capacity
        self.renderer = renderer
        self._records: collections.deque[logging.LogRecord | _Line] = collections.deque()
        self._write_lock = threading.Lock()  # one drain at a time keeps lines in order
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_thread()
        _ALIVE.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        global _dropped
        if len(self._records) >= self.capacity:
            _dropped += 1
            return
        if record.args and not (
            type(record.args) is tuple and all(type(arg) in _IMMUTABLE for arg in record.args)
        ):  # a mutable argument could change before the writer renders it: render now
            try:
                record.msg = record.getMessage()
            except Exception:  # a broken format string must not lose the record
                record.msg = str(record.msg)
            record.args = None
        self._records.append(record)  # deque.append is atomic: no lock on the loop's side

    def queue_line(self, level: int, name: str, msg: str, args: tuple[Any, ...], request_id: str) -> None:
        """A line without a ``LogRecord`` on the caller's side (the access log's fast path).

        ``logging.Logger.log`` costs ~8 µs a line before the handler sees it (``makeRecord``, the
        ``extra`` checks, handler lookup); the writer builds the record instead. Only for callers
        that checked ``fast_path_for`` (no other handler or filter would have seen the record) and
        ``isEnabledFor``; ``args`` must be immutable. The line comes out as the logger's would.
        """
        global _dropped
        if len(self._records) >= self.capacity:
            _dropped += 1
            return
        self._records.append((time.time(), level, name, msg, args, request_id, log_ids()))

    def flush(self) -> None:
        """Write everything waiting now, on the calling thread (tests, shutdown)."""
        self._drain()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the writer thread after it wrote every waiting line (idempotent)."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._drain()

    def close(self) -> None:
        self.stop()
        super().close()

    def _start_thread(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        """A forked worker: the parent's writer writes the parent's queue; this child needs its own."""
        self._records.clear()
        self._write_lock = threading.Lock()
        if not self._stopping.is_set():
            self._start_thread()

    def _run(self) -> None:
        while not self._stopping.wait(INTERVAL):
            if self._records:
                self._drain()
        self._drain()

    def _drain(self) -> None:
        sink = self.sink
        renderer = self.renderer
        render: Callable[[_Line], str] | None = renderer.render if renderer and renderer.usable(sink) else None
        with self._write_lock:
            lines: list[str] = []
            records = self._records
            while records:
                item = records.popleft()
                if isinstance(item, logging.LogRecord):
                    record = item
                else:
                    if render is not None and item[1] >= sink.level:
                        try:
                            lines.append(render(item))
                            continue
                        except Exception:  # the record path below decides (and reports) what it was
                            pass
                    record = _record_of(item)
                try:
                    if record.levelno >= sink.level and sink.filter(record):
                        lines.append(sink.format(record))
                except Exception:
                    sink.handleError(record)
            if not lines:
                return
            try:
                with sink.lock or _NO_LOCK:
                    sink.stream.write("\n".join(lines) + "\n")
                    sink.flush()
            except Exception:  # a closed or full stream: say so once, as logging itself does
                sink.handleError(logging.makeLogRecord({"msg": f"{len(lines)} log line(s) lost"}))


# created, level, logger name, msg, args, request id, (trace id, span id) or None
_Line = tuple[float, int, str, str, tuple[Any, ...], str, "tuple[str, str] | None"]


# What ``Logger.log`` puts into a record that the queued line does not vary (the gateway process
# leaves out caller, thread and process: gateway/__main__.py ``skip_unused_record_fields``).
_RECORD_CONSTANTS: dict[str, Any] = {
    "pathname": "",
    "filename": "",
    "module": "",
    "exc_info": None,
    "exc_text": None,
    "stack_info": None,
    "lineno": 0,
    "funcName": None,
    "thread": None,
    "threadName": None,
    "processName": None,
    "process": None,
}


def _record_of(line: _Line) -> logging.LogRecord:
    """The record ``Logger.log`` would have made (the fields the gateway's formats use, and the rest)."""
    created, level, name, msg, args, request_id, ids = line
    record = logging.LogRecord.__new__(logging.LogRecord)
    record.__dict__ = {
        "name": name,
        "msg": msg,
        "args": args,
        "levelname": logging.getLevelName(level),
        "levelno": level,
        **_RECORD_CONSTANTS,
        "created": created,
        "msecs": int((created - int(created)) * 1000) + 0.0,
        "relativeCreated": (created - logging._startTime) * 1000,  # type: ignore[attr-defined]
        "request_id": request_id,
    }
    if ids is not None:
        record.trace_id, record.span_id = ids
    return record


_ALIVE: weakref.WeakSet[BackgroundHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for handler in list(_ALIVE):
        handler._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()
