"""Starting and stopping helper processes: readiness by polling an HTTP endpoint, graceful stop."""

from __future__ import annotations

import subprocess
import time
import urllib.request


class NotReady(RuntimeError):
    """The process exited or never answered its readiness URL."""


def wait_http_ok(proc: subprocess.Popen[bytes], url: str, name: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200 (readiness, not a timed wait); fail if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NotReady(f"{name} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=0.5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.02)  # the poll interval of a readiness check
    raise NotReady(f"{name} did not answer {url} within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float) -> int | None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; the exit code (None if never started)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode
