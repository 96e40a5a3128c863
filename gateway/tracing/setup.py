"""Whether this process traces, decided once from the standard ``OTEL_*`` variables.

Off (the default) unless an OTLP endpoint is configured: ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``. ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``
turn it off whatever else is set. Off means the SDK is never imported.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.tracing.sdk import Tracing

log = logging.getLogger("gateway.tracing")

_PROTOCOLS = ("http/protobuf", "grpc")


def tracing_wanted(environ: Mapping[str, str]) -> bool:
    """True when the ``OTEL_*`` variables ask for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def _protocol(environ: Mapping[str, str]) -> str:
    value = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip()
    return value or "http/protobuf"


def tracing_from_environ(environ: Mapping[str, str] | None = None) -> Tracing | None:
    """This process's tracing, or None (off). The SDK reads its own settings from ``os.environ``."""
    env = os.environ if environ is None else environ
    if not tracing_wanted(env):
        return None
    protocol = _protocol(env)
    if protocol not in _PROTOCOLS:
        log.error("tracing off: OTEL_EXPORTER_OTLP_PROTOCOL=%s is not one of %s", protocol, ", ".join(_PROTOCOLS))
        return None
    try:
        from gateway.tracing.sdk import Tracing

        tracing = Tracing.from_environ(protocol)
    except ImportError as exc:
        log.error("tracing off: %s (install noetl-gateway[grpc] for OTLP over gRPC)", exc)
        return None
    log.info("tracing on: OTLP over %s", protocol)
    return tracing


async def shutdown_tracing(tracing: Tracing | None, timeout: float = 5.0) -> None:
    """Flush and stop the exporter off the event loop; a collector that hangs delays stop by ``timeout`` at most."""
    if tracing is None:
        return
    try:
        await asyncio.wait_for(asyncio.to_thread(tracing.shutdown), timeout)
    except TimeoutError:
        log.warning("tracing: spans not exported within %gs at stop", timeout)
