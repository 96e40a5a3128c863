"""What the tracing hooks read: the process's tracer and the caller's trace context, per task.

Both ride in context variables, never in module globals, so several gateways in one test
process each trace with their own provider (or not at all):

* ``active`` is the running gateway's :class:`~gateway.tracing.sdk.Tracing`, or ``None`` when
  tracing is off. Each request sets it (handlers/base.py); ``Services.start`` sets it for the
  background tasks it starts (the NATS consumers inherit it).
* ``passthrough`` is the caller's ``traceparent``/``tracestate`` when tracing is off: passed on
  unchanged to NoETL, so a trace started upstream still continues downstream.

Stdlib only: importing this costs nothing when tracing is off.
"""

from __future__ import annotations

import contextvars
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.tracing.sdk import Tracing

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

active: contextvars.ContextVar[Tracing | None] = contextvars.ContextVar("gateway_tracing", default=None)
passthrough: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "gateway_traceparent", default=None
)

# W3C Trace Context §3.2: version 00 exactly, later versions may append fields; ids not all zero.
_TRACEPARENT_RE = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[ -~]*)?")
_MAX_TRACESTATE = 512  # §3.3.1.1: a vendor may drop a longer one; we never relay more


def valid_traceparent(value: str | None) -> str | None:
    """The header if it is a well-formed W3C ``traceparent`` (else None: the trace restarts)."""
    if not value or len(value) > 256:
        return None
    value = value.strip()
    match = _TRACEPARENT_RE.fullmatch(value)
    if match is None:
        return None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(span_id) == {"0"}:
        return None
    return value


def caller_context(traceparent: str | None, tracestate: str | None) -> tuple[str, str | None] | None:
    """The caller's context to pass on unchanged, or None when it sent none (or a malformed one)."""
    parent = valid_traceparent(traceparent)
    if parent is None:
        return None
    state = tracestate.strip() if tracestate else None
    return parent, state if state and len(state) <= _MAX_TRACESTATE and state.isascii() else None


def activate(tracing: Tracing | None) -> None:
    """Make ``tracing`` the tracer of the current task and of the tasks it starts from now on."""
    active.set(tracing)
