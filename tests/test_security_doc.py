"""SECURITY.md's threat table stays true: every test it names as proof exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def named_tests() -> list[tuple[str, str]]:
    """(file, test) pairs in the threat table; ``::name`` cells reuse the file named before them."""
    pairs: list[tuple[str, str]] = []
    for line in (ROOT / "SECURITY.md").read_text().splitlines():
        if not line.startswith("|"):
            continue
        last_file = ""
        for match in re.finditer(r"`(?:(e2e/)?(test_[a-z0-9_]+\.py))?::(test_[A-Za-z0-9_]+)", line):
            if match.group(2):
                last_file = (match.group(1) or "") + match.group(2)
            assert last_file, f"a test name without its file in SECURITY.md: {line[:80]}"
            pairs.append((last_file, match.group(3)))
    return pairs


def test_every_test_the_threat_table_names_exists() -> None:
    pairs = named_tests()
    assert len(pairs) >= 30, pairs
    for file, name in pairs:
        path = ROOT / "tests" / file
        assert path.exists(), f"SECURITY.md names {file}, which does not exist"
        functions = {
            node.name
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        assert name in functions, f"SECURITY.md names {file}::{name}, which does not exist"
