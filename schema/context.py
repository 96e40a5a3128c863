"""What every GraphQL resolver receives as ``info.context``: the caller and the services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.auth.sessions import Session

if TYPE_CHECKING:
    from gateway.services import Services


@dataclass(frozen=True, slots=True)
class RequestContext:
    """One GraphQL request: who asks (session and its token) and through which services."""

    services: Services
    session: Session
    token: str
    request_id: str
    # The live client id of a graphql-ws connection: executePlaybook's default clientId over it.
    live_client_id: str | None = None
