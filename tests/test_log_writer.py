"""The background log writer: nothing lost at a graceful stop, bounded, in order, context kept."""

from __future__ import annotations

import io
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import log_writer
from gateway.log_writer import BackgroundHandler, ContextStamp
from gateway.logging import (
    TEXT_FORMAT,
    TextFormatter,
    TokenScrubber,
    fast_path_for,
    request_id_var,
)
from gateway.metrics import Metrics
from tests.support.gateway import GatewayProcess
from tests.support.logs import production_logging


class BlockingStream(io.StringIO):
    """A stream whose writes wait until released: a stalled stderr or disk."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        self.release.wait(30)
        return super().write(text)


def make_handler(stream: io.StringIO, capacity: int = log_writer.CAPACITY) -> BackgroundHandler:
    sink = logging.StreamHandler(stream)
    sink.addFilter(TokenScrubber())
    sink.setFormatter(TextFormatter(TEXT_FORMAT))
    handler = BackgroundHandler(sink, capacity)
    handler.addFilter(ContextStamp(request_id_var.get))
    return handler


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("gateway.test_log_writer")
    log.propagate = False
    log.setLevel(logging.INFO)
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def test_lines_in_order_with_request_id_and_scrubbed(logger: logging.Logger) -> None:
    stream = io.StringIO()
    handler = make_handler(stream)
    logger.addHandler(handler)
    token = request_id_var.set("req-42")
    try:
        for n in range(500):
            logger.info("line %d session_token=%s", n, "sess_secret_value")
    finally:
        request_id_var.reset(token)
    handler.stop()
    lines = stream.getvalue().splitlines()
    assert [line.split(" line ")[1].split()[0] for line in lines] == [str(n) for n in range(500)]
    assert all("[req-42]" in line for line in lines)  # stamped on the caller's thread, not the writer's
    assert "sess_secret_value" not in stream.getvalue()


def test_mutable_arguments_are_rendered_when_logged(logger: logging.Logger) -> None:
    stream = io.StringIO()
    handler = make_handler(stream)
    logger.addHandler(handler)
    items = ["before"]
    logger.info("items %s", items)
    items[0] = "after"  # the writer renders later; the line must show what was logged
    handler.stop()
    assert "items ['before']" in stream.getvalue()


def test_a_stalled_stream_never_blocks_the_logger_and_drops_are_counted(logger: logging.Logger) -> None:
    stream = BlockingStream()
    handler = make_handler(stream, capacity=100)
    logger.addHandler(handler)
    dropped_before = log_writer.dropped_total()
    logger.info("first")  # the writer takes it and then hangs in write()
    assert stream.entered.wait(5), "the writer thread never wrote"
    started = time.monotonic()
    for n in range(5000):
        logger.info("flood %d", n)
    elapsed = time.monotonic() - started
    dropped = log_writer.dropped_total() - dropped_before
    assert elapsed < 2.0, f"logging blocked for {elapsed:.2f}s"
    assert dropped == 5000 - 100  # exactly the capacity waits, the rest is counted
    stream.release.set()
    handler.stop()
    written = [line for line in stream.getvalue().splitlines() if " flood " in line]
    assert len(written) + dropped == 5000
    assert "gateway_log_dropped_total" in Metrics().render().decode()


def test_a_forked_child_writes_its_own_lines(tmp_path: Path, logger: logging.Logger) -> None:
    path = tmp_path / "log.txt"
    with open(path, "w", buffering=1) as stream:
        handler = make_handler(stream)  # type: ignore[arg-type]
        logger.addHandler(handler)
        logger.info("parent before fork")
        pid = os.fork()
        if pid == 0:  # the child: a pre-forked worker logs, then stops the writer and ends in _exit
            code = 1
            try:
                logger.info("child line")
                handler.stop()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        handler.stop()
    text = path.read_text()
    assert text.count("parent before fork") == 1  # not written again by the child
    assert text.count("child line") == 1


def test_lines_just_before_sigterm_reach_the_log(tmp_path: Path) -> None:
    """A real gateway process: every access line of a burst answered just before SIGTERM is in the log."""
    gateway = GatewayProcess({"NATS_URL": "", "NOETL_BASE_URL": "http://127.0.0.1:9", "GATEWAY_LOG_LEVEL": "INFO"})
    log_path = tmp_path / "gateway.log"
    gateway.start(str(log_path))
    try:

        def miss(n: int) -> int:
            try:
                with urllib.request.urlopen(f"{gateway.url}/no-such-route-{n}", timeout=10) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(miss, range(400)))
        assert set(statuses) == {404}
    finally:
        code = gateway.stop()  # SIGTERM right after the last answer
    assert code == 0
    text = log_path.read_text()
    missing = [n for n in range(400) if f"/no-such-route-{n} " not in text]
    assert not missing, f"{len(missing)} access lines lost at shutdown, e.g. {missing[:5]}"
    assert text.rstrip().endswith("stopped")  # the graceful stop's own last line too


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_access_fast_path_writes_the_line_the_logger_would(fmt: str) -> None:
    access = logging.getLogger("gateway.access")
    with production_logging(fmt, "INFO") as stream:
        background = fast_path_for(access)
        assert background is not None
        args = (404, "GET", "/x?session_token=[redacted]&a=1", 1.25)
        access.log(logging.WARNING, "%d %s %s %.1fms", *args, extra={"request_id": "rid-1"})
        background.queue_line(logging.WARNING, "gateway.access", "%d %s %s %.1fms", args, "rid-1")
        extra = logging.Handler()
        access.addHandler(extra)  # another handler would miss queued lines: no fast path then
        assert fast_path_for(access) is None
        access.removeHandler(extra)
    by_logger, queued = stream.getvalue().splitlines()
    if fmt == "json":
        first, second = orjson.loads(by_logger), orjson.loads(queued)
        assert len(first.pop("ts")) == len(second.pop("ts"))
        assert first == second
    else:
        assert by_logger.split(" ", 2)[2] == queued.split(" ", 2)[2]  # all but the date and time
        assert queued.split(" ", 2)[2] == "WARNING gateway.access [rid-1] 404 GET /x?session_token=[redacted]&a=1 1.2ms"


LINE_ARGS = st.one_of(
    st.tuples(st.integers(100, 599), st.sampled_from(["GET", "POST", "BREW"]), st.text(max_size=40), st.floats(0, 1e4)),
    st.tuples(st.text(max_size=20)),  # too few for the format: rendering fails, the raw message is logged
    st.just(()),
)
LINE_TEXT = st.sampled_from(
    ["%d %s %s %.1fms", "plain", "token=%s", "%s", "x-session-token: sess_abc %s", "100%"]
)  # fmt: skip


@pytest.mark.parametrize("fmt", ["text", "json"])
@settings(max_examples=400, derandomize=True, deadline=None)
@given(
    level=st.sampled_from([logging.INFO, logging.WARNING, logging.ERROR]),
    msg=LINE_TEXT,
    args=LINE_ARGS,
    request_id=st.sampled_from(["-", "rid-1", "a" * 32]),
    created=st.floats(1.7e9, 1.8e9),
    ids=st.sampled_from([None, ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"), (None, None)]),
)
def test_queued_lines_render_as_their_records_do(
    fmt: str, level: int, msg: str, args: tuple[object, ...], request_id: str, created: float, ids: object
) -> None:
    # The writer's shortcut (QueuedLines: no LogRecord) against the record path it skips, byte for byte.
    with production_logging(fmt, "INFO"):
        background = fast_path_for(logging.getLogger("gateway.access"))
        assert background is not None and background.renderer is not None
        sink = background.sink
        assert background.renderer.usable(sink)
        line = (created, level, "gateway.access", msg, args, request_id, ids)
        record = log_writer._record_of(line)
        assert sink.filter(record)
        assert background.renderer.render(line) == sink.format(record)
