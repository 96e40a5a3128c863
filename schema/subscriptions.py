"""Resolvers of the ``Subscription`` root: source streams from ``services.subscriptions``, run by
graphql-core's own ``subscribe()`` (the graphql-ws and graphql-sse transports in handlers/).

Each source stream yields ``PlaybookEvent`` fields; the field's resolver hands the event through.
Over plain ``POST /graphql`` (``execute()``, no source stream) the resolver gets no event and
answers with an error naming the transports that serve subscriptions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

from graphql import GraphQLResolveInfo

from gateway.errors import BAD_REQUEST, PublicError
from schema.context import RequestContext

TRANSPORTS = (
    "Subscriptions are served over WebSocket (graphql-transport-ws) on /graphql and over SSE on /graphql/stream"
)


class SubscriptionOverHttp(PublicError):
    """A subscription operation sent to plain ``POST /graphql``."""

    def __init__(self) -> None:
        super().__init__(400, BAD_REQUEST, TRANSPORTS)


def _context(info: GraphQLResolveInfo) -> RequestContext:
    return cast(RequestContext, info.context)


async def subscribe_playbook_events(
    _root: Any, info: GraphQLResolveInfo, requestId: str | None = None, executionId: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Progress, state and the result of one request or execution of this session."""
    context = _context(info)
    roles = context.session.user.roles
    return await context.services.subscriptions.playbook_events(
        context.session, roles, requestId, executionId, context.live_client_id
    )


async def subscribe_execution_updates(
    _root: Any, info: GraphQLResolveInfo, executionId: str
) -> AsyncIterator[dict[str, Any]]:
    """NoETL's playbook/state frames of an execution the caller may view."""
    context = _context(info)
    return await context.services.subscriptions.execution_updates(
        context.session, context.session.user.roles, executionId
    )


def resolve_event(event: Any, _info: GraphQLResolveInfo, **_args: Any) -> dict[str, Any]:
    """The event the source stream yielded (fields by GraphQL name)."""
    if not isinstance(event, dict) or "kind" not in event:
        raise SubscriptionOverHttp()
    return event


SOURCES = {
    "playbookEvents": subscribe_playbook_events,
    "executionUpdates": subscribe_execution_updates,
}
