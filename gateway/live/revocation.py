"""A logout on any replica ends, on this one, every live connection of that session.

The session bucket's revocation mirror calls its listeners with the revoked token hash on every
replica; SSE streams (``streams.StreamRegistry``) and GraphQL subscription connections
(``subscribers.Subscribers``) both keep an index of what they hold per session and end it the
same way, so the rule lives here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from gateway.live.stream import REVOKED


class Endable(Protocol):
    """A live connection: ``end(reason)`` closes it with that reason (idempotent)."""

    def end(self, reason: str) -> None: ...


def ending_revoked(by_session: Mapping[str, Iterable[Endable]]) -> Callable[[str, dict[str, Any] | None], None]:
    """A revocation listener that ends everything ``by_session`` holds for the revoked session
    (a tombstone's removal, ``value`` None, changes nothing)."""

    def on_revoked(token_hash: str, value: dict[str, Any] | None) -> None:
        if value is None:
            return
        for held in list(by_session.get(token_hash, ())):  # ending one edits the index
            held.end(REVOKED)

    return on_revoked
