"""Safelist mode (``GATEWAY_GRAPHQL_SAFELIST``): only the operations of a persisted-query manifest run.

The manifest is the file Apollo's tooling generates (``@apollo/generate-persisted-query-manifest``)::

    {"format": "apollo-persisted-query-manifest", "version": 1,
     "operations": [{"id": "…", "name": "GetItem", "type": "query", "body": "query GetItem { … }"}]}

An operation is found by its ``id`` (what a client using the manifest sends as
``extensions.persistedQuery.sha256Hash``) or by the SHA-256 of its ``body`` (what APQ clients
send, and how a full document is matched). The file is read once at start; one that cannot be
read, is not such a manifest or holds a body that does not parse stops the start with one line
naming the file — a safelist that half-loads would refuse operations nobody meant to refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from graphql import GraphQLError, parse

from gateway.config import ConfigError
from schema.documents import document_hash

MANIFEST_FORMAT = "apollo-persisted-query-manifest"
OPERATION_TYPES = frozenset({"query", "mutation", "subscription"})
SETTING = "GATEWAY_GRAPHQL_SAFELIST"


@dataclass(frozen=True, slots=True)
class Safelist:
    """The manifest's operations, by id and by the SHA-256 of their body."""

    source: str
    bodies: dict[str, str]  # id or sha256(body) → body
    hashes: frozenset[str]  # sha256 of every body

    def __len__(self) -> int:
        return len(self.hashes)

    def body_for(self, key: str) -> str | None:
        """The body listed under this id or body hash, if any."""
        return self.bodies.get(key)

    def allows(self, digest: str) -> bool:
        """True when a listed body has this SHA-256 (a full document sent as text)."""
        return digest in self.hashes


def load_safelist(path: str) -> Safelist:
    """Read and check the manifest; ConfigError (naming the file and the entry) if anything is wrong."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise _problem(path, f"cannot read it ({exc.strerror})") from None
    try:
        manifest = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _problem(path, f"not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise _problem(path, f'not a persisted-query manifest (expected "format": "{MANIFEST_FORMAT}")')
    if manifest.get("version") != 1 or isinstance(manifest.get("version"), bool):
        raise _problem(path, 'unsupported manifest version (expected "version": 1)')
    operations = manifest.get("operations")
    if not isinstance(operations, list):
        raise _problem(path, '"operations" must be a list')
    bodies: dict[str, str] = {}
    for index, operation in enumerate(operations):
        op_id, body = _checked_operation(path, index, operation)
        for key in (op_id, document_hash(body)):
            if bodies.setdefault(key, body) != body:
                raise _problem(path, f"operations[{index}]: id {key[:80]!r} is listed twice with different bodies")
    return Safelist(path, bodies, frozenset(document_hash(body) for body in bodies.values()))


def _checked_operation(path: str, index: int, operation: Any) -> tuple[str, str]:
    where = f"operations[{index}]"
    if not isinstance(operation, dict):
        raise _problem(path, f"{where} must be an object")
    op_id, body, kind, name = (operation.get(key) for key in ("id", "body", "type", "name"))
    if not isinstance(op_id, str) or not op_id.strip():
        raise _problem(path, f'{where} has no "id"')
    where = f"{where} (id {op_id[:80]!r})"
    if not isinstance(body, str) or not body.strip():
        raise _problem(path, f'{where} has no "body"')
    if kind is not None and kind not in OPERATION_TYPES:
        raise _problem(path, f'{where}: "type" must be one of query, mutation, subscription')
    if name is not None and not isinstance(name, str):
        raise _problem(path, f'{where}: "name" must be a string')
    try:
        parse(body, no_location=True)
    except GraphQLError as exc:
        raise _problem(path, f"{where}: body does not parse ({exc.message})") from None
    return op_id, body


def _problem(path: str, what: str) -> ConfigError:
    return ConfigError(f"{SETTING}: {path}: {what}")
