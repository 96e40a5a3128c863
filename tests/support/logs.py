"""The gateway's production logging set up for one test, writing into a buffer, then put back."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

from gateway.logging import setup_logging, stop_logging


@contextlib.contextmanager
def production_logging(fmt: str = "json", level: str = "DEBUG") -> Iterator[io.StringIO]:
    """``setup_logging(fmt, level)`` into a StringIO; on the way out the writer thread is drained
    (every line is in the buffer) and the root logger gets its own handlers and level back."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    setup_logging(fmt, level, stream=buffer)
    try:
        yield buffer
    finally:
        stop_logging()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
