"""Memory of another process, read from /proc (tests and bench/ measure the gateway this way)."""

from __future__ import annotations

import threading
from pathlib import Path


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing for pid {pid}")


class RssSampler:
    """RSS growth of a process over a block: VmRSS at its start, then the peak, sampled in a thread
    (the caller's loop is busy moving bytes) and read from the kernel's VmHWM at the end.

    ``hwm_counts=False`` when VmHWM could not be reset first (it would hold an older peak).
    """

    def __init__(self, pid: int, *, hwm_counts: bool = True) -> None:
        self.pid = pid
        self.hwm_counts = hwm_counts
        self.baseline_kib = 0
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            self._stop.wait(0.01)

    def __enter__(self) -> RssSampler:
        self.baseline_kib = status_kib(self.pid, "VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.hwm_counts:
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmHWM"))

    @property
    def growth_bytes(self) -> int:
        """Peak minus the RSS at the start of the block."""
        return (self.peak_kib - self.baseline_kib) * 1024


def reset_peak(pid: int) -> bool:
    """Restart VmHWM from the current RSS (``clear_refs`` 5), so a peak is the run's, not start-up's.

    False when the kernel refuses (not Linux, or not allowed): then only sampled peaks count.
    """
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True
