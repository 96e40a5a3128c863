"""Parsed and validated documents, cached by query text (bounded LRU).

Parsing and validating cost 0.6–2.5 ms per request; a cache hit costs a dict lookup.
Invalid documents are cached too (as their formatted errors, without the AST), so a
client repeating a bad query does not pay for it again. The cache is bounded by entry
count and by total query text (a parsed AST with locations is ~45× its text), so its
worst-case memory stays small whatever clients send.

Entries a client reached by hash (automatic persisted queries, schema/persisted.py) are also
indexed by that SHA-256, and leave the index when they leave the cache.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    parse,
    specified_rules,
    validate,
)
from graphql.validation import MaxIntrospectionDepthRule
from prometheus_client import Counter

from schema.errors import PARSE_FAILED, VALIDATION_FAILED, format_document_error
from schema.limits import QueryLimits, limit_errors

BYTES_PER_ENTRY = 2048  # average query text budgeted per cache entry
VALIDATION_RULES = (*specified_rules, MaxIntrospectionDepthRule)


def document_hash(query: str) -> str:
    """The APQ hash of a document: lowercase hex SHA-256 of its UTF-8 text (as Apollo computes it)."""
    return hashlib.sha256(query.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    """A query ready to execute, or the request errors that stop it."""

    document: DocumentNode | None
    errors: list[dict[str, Any]] = field(default_factory=list)
    operations: dict[str | None, OperationType] = field(default_factory=dict)


class DocumentCache:
    """Query text → PreparedDocument, least recently used evicted first."""

    def __init__(self, schema: GraphQLSchema, limits: QueryLimits, max_entries: int, outcomes: Counter) -> None:
        self.schema = schema
        self.limits = limits
        self.max_entries = max_entries
        self.max_chars = max_entries * BYTES_PER_ENTRY
        self._entries: OrderedDict[str, PreparedDocument] = OrderedDict()
        self._chars = 0
        self._by_hash: dict[str, str] = {}  # APQ hash → query text of a cached entry
        self._hash_of: dict[str, str] = {}  # and back, to unindex an evicted entry
        self._hit = outcomes.labels("hit")
        self._miss = outcomes.labels("miss")

    def __len__(self) -> int:
        return len(self._entries)

    def query_for_hash(self, digest: str) -> str | None:
        """The cached text a client registered under this hash, if still cached."""
        return self._by_hash.get(digest)

    def remember_hash(self, digest: str, query: str) -> None:
        """Index a cached entry by its hash (no-op for a text the cache did not keep)."""
        if query in self._entries and query not in self._hash_of:
            self._by_hash[digest] = query
            self._hash_of[query] = digest

    def prepare(self, query: str) -> PreparedDocument:
        """The cached result for this text, or parse + check limits + validate (and cache)."""
        entry = self._entries.get(query)
        if entry is not None:
            self._entries.move_to_end(query)
            self._hit.inc()
            return entry
        self._miss.inc()
        if self.limits.too_large(query):
            return PreparedDocument(
                None,
                [
                    {
                        "message": f"Query is larger than the limit of {self.limits.max_bytes} bytes.",
                        "extensions": {"code": VALIDATION_FAILED, "limit": "size"},
                    }
                ],
            )
        entry = self._build(query)
        self._store(query, entry)
        return entry

    def _build(self, query: str) -> PreparedDocument:
        try:
            document = parse(query, max_tokens=self.limits.max_tokens)
        except GraphQLError as error:
            code = PARSE_FAILED
            if "tokens" in error.message and "Parsing aborted" in error.message:
                error.extensions = {"code": VALIDATION_FAILED, "limit": "tokens"}
            return PreparedDocument(None, [format_document_error(error, code)])
        except RecursionError:
            return PreparedDocument(
                None, [{"message": "Document is nested too deeply.", "extensions": {"code": PARSE_FAILED}}]
            )
        try:
            errors = limit_errors(document, self.limits)
            if not errors:
                errors = validate(self.schema, document, VALIDATION_RULES, max_errors=20)
        except RecursionError:  # e.g. a chain of ~500 fragment spreads, within every other limit
            return PreparedDocument(
                None,
                [
                    {
                        "message": "Document is nested too deeply.",
                        "extensions": {"code": VALIDATION_FAILED, "limit": "depth"},
                    }
                ],
            )
        if errors:
            return PreparedDocument(None, [format_document_error(error, VALIDATION_FAILED) for error in errors])
        operations = {
            (d.name.value if d.name else None): d.operation
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
        }
        return PreparedDocument(document, [], operations)

    def _store(self, query: str, entry: PreparedDocument) -> None:
        if self.max_entries <= 0 or len(query) > self.max_chars // 8:
            return  # one entry may use at most 1/8 of the budget
        self._entries[query] = entry
        self._chars += len(query)
        while len(self._entries) > self.max_entries or self._chars > self.max_chars:
            old_query, _ = self._entries.popitem(last=False)
            self._chars -= len(old_query)
            digest = self._hash_of.pop(old_query, None)
            if digest is not None:
                del self._by_hash[digest]
