"""Operator files (YAML or TOML) validated by a pydantic model at start: one loader for all of them.

Used by ``GATEWAY_ROUTE_POLICY`` (gateway/access/policy_file.py) and ``GATEWAY_INGRESS_CONFIG``
(gateway/ingress/listeners.py). A file that cannot be read, does not parse or does not validate
is a ``ConfigError`` naming the variable, the file and — where it can be found — the line of the
entry that is wrong (the rule, the listener), so start-up stops with one line an operator can act on.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gateway.config import ConfigError

SpecT = TypeVar("SpecT", bound=BaseModel)


def read_spec_file(variable: str, path: str, model: type[SpecT], *, what: str) -> SpecT:
    """Parse and validate ``path`` as ``model``; every error names the file and, where it can, the line.

    ``what`` says what the file must hold at its top (for the message about a non-mapping file).
    """
    where = f"{variable}: {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror}") from None
    is_toml = path.lower().endswith(".toml")
    try:
        data: Any = tomllib.loads(text) if is_toml else yaml.safe_load(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"{where}: not valid YAML{line}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must hold a mapping with {what}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"]
        number = line_of(text, loc, is_toml)
        at = f" line {number}" if number else ""
        field = ".".join(str(part) for part in loc) or "file"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}:{at}: {field}: {message}") from None


def line_of(text: str, loc: tuple[int | str, ...], is_toml: bool) -> int | None:
    """The 1-based line of the entry an error points at: the list item or mapping key under a
    top-level section (``rules[1]``, ``listeners.github``), or a top-level key."""
    if not loc:
        return None
    if len(loc) > 1:
        if is_toml:
            number = _toml_entry_line(text, str(loc[0]), loc[1])
        else:
            number = _yaml_entry_line(text, str(loc[0]), loc[1])
        if number is not None:
            return number
    key = str(loc[0])
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*{re.escape(key)}\s*[:=]", line):
            return number
    return None


def _toml_entry_line(text: str, section: str, entry: int | str) -> int | None:
    lines = [line.strip() for line in text.splitlines()]
    if isinstance(entry, int):  # [[section]] tables, the n-th one
        headers = [n for n, line in enumerate(lines, 1) if line == f"[[{section}]]"]
        return headers[entry] if entry < len(headers) else None
    table = f"[{section}.{entry}"
    for number, line in enumerate(lines, 1):  # [section.entry] or its first sub-table
        if line.startswith(table) and line[len(table) : len(table) + 1] in ("]", "."):
            return number
    return None


def _yaml_entry_line(text: str, section: str, entry: int | str) -> int | None:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    for key, value in root.value:
        if getattr(key, "value", None) != section:
            continue
        if isinstance(value, yaml.SequenceNode) and isinstance(entry, int) and entry < len(value.value):
            return int(value.value[entry].start_mark.line) + 1
        if isinstance(value, yaml.MappingNode):
            for sub_key, _ in value.value:
                if getattr(sub_key, "value", None) == str(entry):
                    return int(sub_key.start_mark.line) + 1
    return None
