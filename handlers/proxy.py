"""Placeholder: routes of this module are added by its issue."""

from __future__ import annotations

from typing import Any

default_handlers: list[tuple[str, Any]] = []
