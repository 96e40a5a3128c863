"""Who makes a call on behalf of a user, as the execution services see it.

A structural type, so that services need not import the GraphQL layer: ``schema.context.RequestContext``
(what every resolver receives) is one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from gateway.auth.sessions import Session

if TYPE_CHECKING:
    from gateway.services import Services


class Caller(Protocol):
    """The caller (session and its token), the request id, and the services to call through."""

    @property
    def services(self) -> Services: ...

    @property
    def session(self) -> Session: ...

    @property
    def token(self) -> str: ...

    @property
    def request_id(self) -> str: ...
