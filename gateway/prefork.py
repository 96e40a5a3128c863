"""Pre-forked worker processes sharing the port (``GATEWAY_PROCESSES``; a ``SO_REUSEPORT`` socket each).

Tornado's ``fork_processes`` leaves signal forwarding to the caller: under Kubernetes SIGTERM
reaches PID 1 only, so this supervisor forwards it to every child and waits for their graceful
stop. A child that dies unexpectedly is restarted (bounded), like a pod restart.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

log = logging.getLogger("gateway.prefork")

MAX_RESTARTS_PER_MINUTE = 10


def run_workers(count: int, sockets: list[socket.socket], child_main: Callable[[int], int]) -> int:
    """Fork ``count`` children running ``child_main(index)``; return the exit code for the parent."""
    children: dict[int, int] = {}
    stopping = False
    restarts: list[float] = []

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # child: default signal handling, run, never return into the supervisor
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = child_main(index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(count):
        spawn(index)
    # The supervisor keeps the listening sockets open (it never accepts on them) so that a
    # restarted child inherits them again.
    log.info("started %d worker processes", count)

    worst = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in children:
            continue
        index = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if stopping or code == 0:
            worst = max(worst, code if code > 0 else 0)
            continue
        now = time.monotonic()
        restarts[:] = [t for t in restarts if now - t < 60] + [now]
        if len(restarts) > MAX_RESTARTS_PER_MINUTE:
            log.error("worker %d keeps dying (exit %d); stopping all workers", index, code)
            forward(signal.SIGTERM, None)
            worst = max(worst, 1)
            continue
        log.warning("worker %d exited with %d; restarting it", index, code)
        spawn(index)
    for sock in sockets:
        sock.close()
    return worst
