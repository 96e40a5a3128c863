"""Span names from templates, never from raw paths: a raw path holds ids (unbounded span names)
and sometimes what a client should not have put there (a token in a query string)."""

from __future__ import annotations

import re

_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>(?:[^()\\]|\\.)*\)")
_GROUP = re.compile(r"\((?:[^()\\]|\\.)*\)")
_ID_SEGMENT = re.compile(r"\d+|[0-9a-fA-F-]{16,}|[A-Za-z0-9_-]{32,}")


def route_template(pattern: str) -> str:
    """A Tornado route regex as a template: ``/noetl/(.*)`` → ``/noetl/{path}``, ``/graphql/?`` → ``/graphql``."""
    text = pattern.removesuffix("$")
    text = _NAMED_GROUP.sub(lambda match: "{" + match.group(1) + "}", text)
    text = _GROUP.sub("{path}", text)
    if text.endswith("/?"):
        text = text[:-2]
    return text.replace("\\", "") or "/"


def url_template(path: str) -> str:
    """An upstream path with its ids folded: ``/api/executions/123/status`` → ``/api/executions/{id}/status``."""
    return "/".join("{id}" if _ID_SEGMENT.fullmatch(part) else part for part in path.split("/"))
