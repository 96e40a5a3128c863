"""How one GraphQL request ended: the response body plus what decides its HTTP status.

HTTP-agnostic: ``handlers/graphql.py`` maps each :class:`Outcome` to a status once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Outcome(enum.Enum):
    """How the request ended, which decides the HTTP status."""

    EXECUTED = "executed"  # data present (maybe with field errors)
    REQUEST_ERROR = "request_error"  # parse/validation/limits/variables: nothing executed
    BAD_REQUEST = "bad_request"  # the operation to run cannot be chosen, or a malformed persisted query
    METHOD_NOT_ALLOWED = "method_not_allowed"  # a mutation over GET
    PERSISTED_QUERY_NOT_FOUND = "persisted_query_not_found"  # APQ: hash unknown, the client resends the text
    NOT_ALLOWED = "not_allowed"  # safelist mode: the operation is not in the manifest


@dataclass(frozen=True, slots=True)
class GraphQLOutcome:
    """The response body plus the outcome."""

    outcome: Outcome
    body: dict[str, Any]

    @property
    def message(self) -> str:
        """The first error's message (for HTTP-level error bodies)."""
        errors = self.body.get("errors") or [{}]
        return str(errors[0].get("message") or "")
