"""Skip conditions shared by test files (one reason text each)."""

from __future__ import annotations

import sys

import pytest

reads_proc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")
"""For tests that measure a process's memory from /proc (Linux only)."""
