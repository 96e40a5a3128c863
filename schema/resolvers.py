"""Resolvers of ``schema.graphql``, attached to ``build_schema``'s result by ``schema.build``.

Each resolver is a thin async function: the logic lives in ``gateway.executions``
(``services.executions`` and ``services.api_calls``); resolvers return dicts keyed by GraphQL field names, which
graphql-core's default resolver reads for the nested types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from graphql import GraphQLResolveInfo

from gateway.executions.service import StartedExecution
from gateway.version import __version__
from schema.context import RequestContext
from schema.subscriptions import resolve_event


def _context(info: GraphQLResolveInfo) -> RequestContext:
    return cast(RequestContext, info.context)


# -- Query -------------------------------------------------------------------------------


def resolve_health(_root: Any, _info: GraphQLResolveInfo) -> str:
    """Liveness as a GraphQL field."""
    return "ok"


def resolve_version(_root: Any, _info: GraphQLResolveInfo) -> str:
    """The package version."""
    return __version__


def resolve_me(_root: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    """The session's user (the request is authenticated before execution starts)."""
    user = _context(info).session.user
    return {
        "userId": str(user.user_id),
        "email": user.email,
        "displayName": user.display_name,
        "roles": list(user.roles),
    }


async def resolve_execution(_root: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any] | None:
    """NoETL's view of one execution; null when unknown. Credentials in it only for admins."""
    context = _context(info)
    return await context.services.executions.get(id, context.session.user.roles)


# -- Mutation ----------------------------------------------------------------------------


async def resolve_execute_playbook(
    _root: Any,
    info: GraphQLResolveInfo,
    name: str,
    variables: Any = None,
    clientId: str | None = None,
    resourceKind: str | None = "PLAYBOOK",
) -> dict[str, Any]:
    """Start a playbook or agent (access check and live-results seam in gateway.executions)."""
    context = _context(info)
    executions = context.services.executions
    # ExecutableResourceKind values are their names (PLAYBOOK, or the reference's "playbook");
    # an explicit null means the default.
    kind = (resourceKind or "PLAYBOOK").lower()
    client_id = clientId if clientId is not None else context.live_client_id  # over graphql-ws: the socket's
    started = await executions.start(context.session, context.token, name, variables, client_id, resource_kind=kind)
    return _execution(started)


async def resolve_rerun_execution(
    _root: Any,
    info: GraphQLResolveInfo,
    executionId: str,
    variables: Any = None,
    clientId: str | None = None,
) -> dict[str, Any]:
    """Run an execution again (gateway.executions.rerun)."""
    context = _context(info)
    client_id = clientId if clientId is not None else context.live_client_id
    started = await context.services.executions.rerun(context.session, context.token, executionId, variables, client_id)
    return _execution(started)


def _execution(started: StartedExecution) -> dict[str, Any]:
    return {
        "id": started.execution_id,
        "executionId": started.execution_id,
        "requestId": started.request_id,
        "name": started.name,
        "status": started.status,
        "textOutput": None,
    }


async def resolve_proxy_request(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    """One NoETL API call as the signed-in user."""
    context = _context(info)
    return await context.services.api_calls.call(
        context.session, context.token, context.request_id, input["method"], input["endpoint"], input.get("body")
    )


Resolver = Callable[..., Any]

RESOLVERS: dict[str, dict[str, Resolver]] = {
    "Query": {
        "health": resolve_health,
        "version": resolve_version,
        "me": resolve_me,
        "execution": resolve_execution,
    },
    "Mutation": {
        "executePlaybook": resolve_execute_playbook,
        "rerunExecution": resolve_rerun_execution,
        "proxyRequest": resolve_proxy_request,
    },
    # Each field's source stream is schema/subscriptions.py's SOURCES (attached by schema.build).
    "Subscription": {
        "playbookEvents": resolve_event,
        "executionUpdates": resolve_event,
    },
}
