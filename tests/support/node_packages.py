"""Node and a test folder's npm packages, installed from its lock file (``npm ci``) when missing or stale.

Used by every test that runs a real JavaScript client (tests/node/, tests/node_graphql/). Without
node or npm the test is skipped locally and fails under CI (``fail_in_ci_else_skip``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.missing import fail_in_ci_else_skip


def node_with_packages(folder: Path) -> str:
    """The node binary, with ``folder``'s packages installed (``npm ci``, once, when missing or stale)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        fail_in_ci_else_skip("node and npm are needed for the JavaScript client tests (apt-get install nodejs npm)")
    installed = folder / "node_modules" / ".package-lock.json"
    lock = folder / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            fail_in_ci_else_skip(f"npm ci in {folder.name} failed: {done.stderr.strip()[-500:]}")
    return node
