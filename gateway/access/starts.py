"""Playbook starts: which NoETL calls start work, what they would really run, and the access check.

One list of start routes and one reading of their bodies, used by ``executePlaybook``, the
``/noetl/*`` proxy and ``proxyRequest`` alike. NoETL 4.26's ``POST /api/execute`` runs the
catalog entry named by ``catalog_id`` when one is given (it wins over ``path``), else the
entry at ``path`` (``version`` picks a version of that same path). So a start is checked on
the playbook it will run: a ``catalog_id`` is resolved to its catalog path through NoETL's
catalog API and checked there; one that cannot be resolved, or that disagrees with ``path``,
is refused. MCP routes that run a playbook named in the URL are starts too.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from gateway.access.refusals import AccessDenied, StartNotCheckable
from gateway.auth.service import AuthError, AuthService
from gateway.noetl.client import NoetlClient, UpstreamError, UpstreamTimeout

log = logging.getLogger("gateway.access")

# Canonical API paths (gateway/proxy_path.canonical_path) whose POST starts a playbook named
# in the body: NoETL 4.26's ``execute`` and the names older servers used.
BODY_START_ROUTES = frozenset({"execute", "executions/run", "run/playbook", "resource/run", "run"})
# Fields that name the playbook by path, in the spellings servers have read.
PATH_FIELDS = ("path", "playbook_path", "catalog_path")
MAX_PLAYBOOK_PATH = 1024
_CATALOG_CACHE_SIZE = 1024

StartKind = Literal["body", "url"]


@dataclass(frozen=True, slots=True)
class PlaybookStart:
    """What a start names: a catalog path, a catalog id, or both (then they must agree)."""

    path: str | None
    catalog_id: int | None


def start_kind(method: str, canonical_path: str) -> StartKind | None:
    """``"body"`` when the call names its playbook in the JSON body, ``"url"`` in the path, else None."""
    if method.upper() != "POST":
        return None
    if canonical_path in BODY_START_ROUTES:
        return "body"
    parts = canonical_path.split("/")
    if len(parts) >= 3 and parts[0] == "mcp":
        if parts[1] == "playbook" and parts[-1] == "jsonrpc" and len(parts) >= 4:
            return "url"
        if parts[-1] == "discover" or (len(parts) >= 4 and parts[-2] == "lifecycle"):
            return "url"
    return None


def start_from_url(raw_path: str) -> PlaybookStart:
    """The catalog path an MCP route names (decoded, case kept: catalog paths are case-sensitive)."""
    parts = [part for part in unquote(raw_path.split("?", 1)[0]).split("/") if part]
    if len(parts) >= 4 and parts[1].lower() == "playbook" and parts[-1].lower() == "jsonrpc":
        middle = parts[2:-1]
    elif parts[-1].lower() == "discover":
        middle = parts[1:-1]
    else:  # mcp/{path}/lifecycle/{verb}
        middle = parts[1:-2]
    return PlaybookStart(path=check_playbook_path("/".join(middle)), catalog_id=None)


def start_from_body(body: Any) -> PlaybookStart:
    """What a body-named start would run, or StartNotCheckable saying why it cannot be told."""
    if not isinstance(body, dict):
        raise StartNotCheckable("Request body must be a JSON object: playbook access is checked before execution")
    paths = {field: body[field] for field in PATH_FIELDS if body.get(field) is not None}
    for field, value in paths.items():
        if not isinstance(value, str):
            raise StartNotCheckable(f"Field '{field}' must be a string")
    distinct = {value for value in paths.values()}
    if len(distinct) > 1:
        raise AccessDenied("Fields 'path', 'playbook_path' and 'catalog_path' name different playbooks")
    path = check_playbook_path(distinct.pop()) if distinct else None
    catalog_id = _catalog_id(body.get("catalog_id"))
    kind = body.get("resource_kind")
    if kind is not None and not isinstance(kind, str):
        raise StartNotCheckable("Field 'resource_kind' must be a string")
    if path is None and catalog_id is None:
        raise StartNotCheckable(
            "Field 'path' (or 'catalog_id') is required: playbook access is checked before execution"
        )
    return PlaybookStart(path=path, catalog_id=catalog_id)


def check_playbook_path(path: str) -> str:
    """The path exactly as NoETL will look it up, or StartNotCheckable (never silently trimmed)."""
    if not path.strip():
        raise StartNotCheckable("Playbook name must not be empty")
    if path != path.strip():
        raise StartNotCheckable("Playbook name must not start or end with whitespace")
    if len(path) > MAX_PLAYBOOK_PATH:
        raise StartNotCheckable(f"Playbook name is longer than {MAX_PLAYBOOK_PATH} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        raise StartNotCheckable("Playbook name must not contain control characters")
    return path


def _catalog_id(value: Any) -> int | None:
    """NoETL reads ``catalog_id`` as an integer (pydantic, lax): accept exactly the plain spellings."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise StartNotCheckable("Field 'catalog_id' must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        return int(value.strip())
    raise StartNotCheckable("Field 'catalog_id' must be an integer")


class PlaybookAccess:
    """The check-access playbook for (session, playbook, ``execute``), and catalog id resolution."""

    def __init__(self, auth: AuthService, noetl: NoetlClient, *, enforce: bool) -> None:
        self.auth = auth
        self.noetl = noetl
        self.enforce = enforce
        self._catalog_paths: OrderedDict[int, str] = OrderedDict()

    async def check_path(self, token: str, playbook_path: str) -> None:
        """AccessDenied unless the check-access playbook allows it (a no-op when enforcement is off)."""
        if not self.enforce:
            return
        try:
            decision = await self.auth.check_access(token, playbook_path, "execute")
        except AuthError as exc:
            # The access check itself failed (timeout, playbook error): an upstream problem; "busy"
            # (the fail-fast budget) stays 503, so a client retries as it does after a busy login.
            if exc.status == 504:
                raise UpstreamTimeout(exc.public) from None
            raise UpstreamError(exc.public, exc.status, gateway_status=503 if exc.status == 503 else 502) from None
        if decision.get("allowed") is not True:
            message = str(decision.get("message") or "")
            raise AccessDenied(message or f"No execute permission on {playbook_path}", "playbook access")

    async def check_start(self, token: str, start: PlaybookStart) -> str:
        """Check the playbook the start will really run; return its catalog path."""
        path = start.path
        if start.catalog_id is not None:
            resolved = await self.catalog_path(start.catalog_id)
            if path is not None and path != resolved:
                raise AccessDenied(
                    f"catalog_id {start.catalog_id} is {resolved!r}, not {path!r}: they must name one playbook",
                    "playbook access",
                )
            path = resolved
        assert path is not None  # start_from_body guarantees one of the two
        await self.check_path(token, path)
        return path

    async def catalog_path(self, catalog_id: int) -> str:
        """The catalog path of an entry (``POST /api/catalog/resource``), or AccessDenied."""
        cached = self._catalog_paths.get(catalog_id)
        if cached is not None:
            self._catalog_paths.move_to_end(catalog_id)
            return cached
        status, answer = await self.noetl.request_json("POST", "catalog/resource", {"catalog_id": str(catalog_id)})
        entry = answer[0] if isinstance(answer, list) and answer else answer
        path = entry.get("path") if status == 200 and isinstance(entry, dict) else None
        if not isinstance(path, str) or not path:
            log.info("catalog_id %s could not be resolved (NoETL answered %s)", catalog_id, status)
            raise AccessDenied(
                f"catalog_id {catalog_id} cannot be resolved to a playbook, so its access cannot be checked",
                "playbook access",
            )
        # A catalog id names one immutable entry (a new version gets a new id): safe to remember.
        self._catalog_paths[catalog_id] = path
        if len(self._catalog_paths) > _CATALOG_CACHE_SIZE:
            self._catalog_paths.popitem(last=False)
        return path
