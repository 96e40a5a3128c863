"""Which document a request runs: its text, a hash of it (automatic persisted queries), or the safelist.

Automatic persisted queries (APQ) as Apollo defines them: a client sends
``extensions.persistedQuery = {"version": 1, "sha256Hash": "<hex>"}`` without the text; when the
hash is unknown it gets ``PersistedQueryNotFound`` (HTTP 200, ``extensions.code``
``PERSISTED_QUERY_NOT_FOUND``, as Apollo Server answers) and sends the text with the hash, which
registers it once it validated. Hashes are known from this process's document cache, then from
the NATS KV bucket every replica shares, so one replica's registration serves them all.

In safelist mode (schema/safelist.py) the manifest is the only source: nothing registers, and
a document or hash that is not listed is refused with ``PERSISTED_QUERY_NOT_ALLOWED``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from schema.documents import DocumentCache, document_hash
from schema.errors import BAD_REQUEST, simple_error
from schema.outcome import GraphQLOutcome, Outcome
from schema.safelist import Safelist

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("gateway.graphql")

PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
PERSISTED_QUERY_NOT_ALLOWED = "PERSISTED_QUERY_NOT_ALLOWED"
NOT_FOUND_MESSAGE = "PersistedQueryNotFound"  # Apollo Server's exact text: clients match on it
NO_DOCUMENT = "GraphQL operations must contain a non-empty `query` or a `persistedQuery` extension."
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_MAX_ID_CHARS = 256  # manifest ids are usually SHA-256 hex; anything longer is not one of ours


@dataclass(frozen=True, slots=True)
class Source:
    """The text to run; ``digest`` set when it came by hash or is to be registered under it."""

    query: str
    digest: str | None = None
    share: bool = False  # registered by this request: write it to the shared bucket too


@dataclass(frozen=True, slots=True)
class Unregistered:
    """A hash-only request this process does not know: ask the shared bucket (``PersistedQueries.from_shared``)."""

    digest: str


class SharedDocuments:
    """hash → document text in the NATS KV bucket (``NATS_PERSISTED_QUERY_BUCKET``), for every replica."""

    def __init__(self, services: Services) -> None:
        self._bucket = services.persisted_queries
        self._nats = services.nats

    async def find(self, digest: str) -> str | None:
        """The text some replica registered under ``digest``, if the bucket still holds it."""
        value = await self._bucket.get(digest)
        text = value.get("query") if value else None
        if not isinstance(text, str):
            return None
        if document_hash(text) != digest:  # never run a text under a hash it does not have
            log.warning("persisted query bucket: entry %s… does not match its hash; ignored", digest[:12])
            return None
        return text

    async def share(self, digest: str, query: str) -> None:
        """Write while NATS is up; during an outage only this process knows it (memory stays bounded)."""
        if self._nats.connected:
            await self._bucket.put(digest, {"query": query})


class PersistedQueries:
    """Resolves a request's document from its text, its APQ hash, or the safelist."""

    def __init__(self, documents: DocumentCache, safelist: Safelist | None, outcomes: Counter) -> None:
        self.documents = documents
        self.safelist = safelist
        self._count = {
            name: outcomes.labels(name)
            for name in ("hit", "shared_hit", "miss", "registered", "safelisted", "refused", "invalid")
        }

    def resolve(self, query: str | None, extensions: dict[str, Any] | None) -> Source | Unregistered | GraphQLOutcome:
        """The document to run, the error that answers instead, or a hash to look up in the bucket.

        Synchronous: a hit (the common case) costs no coroutine and no round trip.
        """
        requested = self._requested_hash(extensions)
        if isinstance(requested, GraphQLOutcome):
            return requested
        if self.safelist is not None:
            return self._from_safelist(self.safelist, query, requested)
        if requested is None:
            if query is None:
                return _bad_request(NO_DOCUMENT)
            return Source(query)
        if query is not None:
            if document_hash(query) != requested:
                self._count["invalid"].inc()
                return _bad_request("provided sha does not match query")  # Apollo Server's text
            return Source(query, requested, share=self.documents.query_for_hash(requested) is None)
        text = self.documents.query_for_hash(requested)
        if text is not None:
            self._count["hit"].inc()
            return Source(text, requested)
        return Unregistered(requested)

    async def from_shared(self, digest: str, shared: SharedDocuments | None) -> Source | GraphQLOutcome:
        """A hash no document here has: the text another replica registered, or PersistedQueryNotFound."""
        text = await shared.find(digest) if shared is not None else None
        if text is not None:
            self._count["shared_hit"].inc()
            return Source(text, digest)
        self._count["miss"].inc()
        return GraphQLOutcome(
            Outcome.PERSISTED_QUERY_NOT_FOUND,
            {"errors": [simple_error(NOT_FOUND_MESSAGE, PERSISTED_QUERY_NOT_FOUND)]},
        )

    def remember(self, source: Source) -> bool:
        """After validation: index the document by its hash here; True when the bucket must learn it too."""
        if source.digest is None or self.safelist is not None:
            return False
        self.documents.remember_hash(source.digest, source.query)
        if source.share:
            self._count["registered"].inc()
        return source.share

    def _requested_hash(self, extensions: dict[str, Any] | None) -> str | GraphQLOutcome | None:
        persisted = extensions.get("persistedQuery") if extensions else None
        if persisted is None:
            return None
        problem = None
        if not isinstance(persisted, dict):
            problem = "Invalid 'extensions.persistedQuery': must be a JSON object"
        elif type(persisted.get("version")) is not int or persisted["version"] != 1:
            problem = "Unsupported persisted query version"  # Apollo Server's text
        else:
            digest = persisted.get("sha256Hash")
            if self.safelist is not None and isinstance(digest, str) and 0 < len(digest) <= _MAX_ID_CHARS:
                return digest  # a manifest id need not be a SHA-256
            if isinstance(digest, str) and _SHA256_HEX.fullmatch(digest):
                return digest
            problem = "Invalid 'extensions.persistedQuery.sha256Hash': must be a lowercase hex SHA-256"
        self._count["invalid"].inc()
        return _bad_request(problem)

    def _from_safelist(self, safelist: Safelist, query: str | None, requested: str | None) -> Source | GraphQLOutcome:
        if query is None:
            if requested is None:
                return _bad_request(NO_DOCUMENT)
            body = safelist.body_for(requested)
            if body is not None:
                self._count["safelisted"].inc()
                return Source(body)
            return self._refuse(f"Persisted query '{requested[:80]}' is not in this gateway's safelist.")
        digest = document_hash(query)
        if requested is not None and requested != digest and safelist.body_for(requested) != query:
            self._count["invalid"].inc()
            return _bad_request("provided sha does not match query")
        if safelist.allows(digest):
            self._count["safelisted"].inc()
            return Source(query)
        return self._refuse("This operation is not in this gateway's safelist.")

    def _refuse(self, message: str) -> GraphQLOutcome:
        self._count["refused"].inc()
        return GraphQLOutcome(Outcome.NOT_ALLOWED, {"errors": [simple_error(message, PERSISTED_QUERY_NOT_ALLOWED)]})


def _bad_request(message: str) -> GraphQLOutcome:
    return GraphQLOutcome(Outcome.BAD_REQUEST, {"errors": [simple_error(message, BAD_REQUEST)]})
