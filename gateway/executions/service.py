"""Starting and reading playbook executions, shared by GraphQL and the REST proxy.

The access check is the authorization module's (gateway/access/); here are the live-results
seam (``clientId``: :class:`LiveResults`), the call to NoETL, and what a caller may read back
(credentials the gateway put into workloads only for admins). Refusals are ``gateway.errors``;
NoETL failures stay ``UpstreamFailure``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from gateway.access.guard import AccessGuard
from gateway.access.redaction import visible_json
from gateway.access.starts import check_playbook_path
from gateway.auth.sessions import Session
from gateway.auth.tokens import CallbackSigner
from gateway.errors import BadExecutionInput
from gateway.executions.describe import check_execution_id, describe_execution
from gateway.executions.rerun import Reruns
from gateway.noetl.client import NoetlClient, UpstreamError

log = logging.getLogger("gateway.executions")

# NoETL's executable catalog kinds (its ``resource_kind``): GraphQL's ExecutableResourceKind.
RESOURCE_KINDS = frozenset({"playbook", "agent"})
# Sends the start to NoETL given the live-results variables ({} without clientId); NoETL's answer.
StartCall = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class LiveResults(Protocol):
    """What the SSE module provides as ``services.live`` for ``clientId`` executions."""

    async def prepare_request(self, session: Session, client_id: str) -> str:
        """Check the client belongs to the session (else ClientNotOwned), take a pending slot (else
        TooManyPending), store the request provisionally; return its new request_id."""
        ...

    async def release_request(self, session: Session, request_id: str) -> None:
        """The start failed after ``prepare_request``: forget the request and free its slot."""
        ...

    async def record_pending(
        self, request_id: str, client_id: str, session: Session, execution_id: str, playbook_path: str
    ) -> None:
        """Store the pending request so the playbook's callback reaches the client."""
        ...


@dataclass(frozen=True, slots=True)
class StartedExecution:
    """What NoETL answered to an execute, plus our request id (live results only)."""

    execution_id: str
    name: str
    status: str | None
    request_id: str | None
    answer: dict[str, Any]


def execution_id_of(answer: dict[str, Any]) -> Any:
    execution_id = answer.get("execution_id") or answer.get("executionId") or answer.get("id")
    if execution_id is None or isinstance(execution_id, bool | dict | list):
        raise UpstreamError("NoETL answered the execute call without an execution id", 502, answer)
    return execution_id


def _variables(variables: Any) -> dict[str, Any]:
    """Playbook variables: a JSON object (absent means empty)."""
    if variables is None:
        return {}
    if not isinstance(variables, dict):
        raise BadExecutionInput("variables must be a JSON object")
    return variables


class Executions:
    """``executePlaybook`` and ``execution(id)``: each call with the collaborators it needs, nothing more."""

    def __init__(
        self,
        noetl: NoetlClient,
        access: AccessGuard,
        live: LiveResults,
        signer: CallbackSigner,
        *,
        public_url: str,
        admin_roles: Iterable[str],
    ) -> None:
        self.noetl = noetl
        self.access = access
        self.live = live
        self.signer = signer
        self.public_url = public_url
        self.admin_roles = tuple(admin_roles)
        self.reruns = Reruns(noetl)

    async def start(
        self,
        session: Session,
        token: str,
        name: str,
        variables: Any = None,
        client_id: str | None = None,
        resource_kind: str = "playbook",
    ) -> StartedExecution:
        """Check, start, and (with ``client_id``) register a playbook (or agent) execution."""
        name = check_playbook_path(name.strip())  # the one rule for a playbook name (gateway.access)
        if resource_kind not in RESOURCE_KINDS:
            raise BadExecutionInput(f"resourceKind must be one of {', '.join(sorted(RESOURCE_KINDS))}")
        variables = _variables(variables)

        async def send(live: dict[str, Any]) -> dict[str, Any]:
            return await self.noetl.execute(name, {**variables, **live}, resource_kind=resource_kind)

        started = await self._launch(session, token, name, client_id, send)
        log.info("%s %s started (execution %s)", resource_kind, name, started.execution_id)
        return started

    async def rerun(
        self, session: Session, token: str, execution_id: str, variables: Any = None, client_id: str | None = None
    ) -> StartedExecution:
        """Start an execution again (gateway.executions.rerun), checked like ``start`` on its playbook.

        Reading the original on the caller's behalf passes the route policy for reading it first."""
        execution_id = check_execution_id(execution_id)
        overrides = _variables(variables)
        self.access.check_route("GET", f"executions/{execution_id}", session.user.roles)
        original = await self.reruns.read(execution_id)

        async def send(live: dict[str, Any]) -> dict[str, Any]:
            return await self.reruns.run_again(original, overrides, live)

        started = await self._launch(session, token, original.path, client_id, send)
        log.info("execution %s of %s rerun as %s", execution_id, original.path, started.execution_id)
        return started

    async def _launch(
        self, session: Session, token: str, path: str, client_id: str | None, send: StartCall
    ) -> StartedExecution:
        """Live-results slot (with ``client_id``), access check on ``path``, the start, the pending request."""
        request_id: str | None = None
        if client_id is not None:
            if not client_id.strip():
                raise BadExecutionInput("clientId must not be empty")
            request_id = await self.live.prepare_request(session, client_id)
        try:
            await self.access.check_playbook(token, path)
            try:
                answer = await send(self._live_variables(request_id))
            except orjson.JSONEncodeError:
                raise BadExecutionInput("variables cannot be sent as JSON (nested too deeply?)") from None
            execution_id = execution_id_of(answer)
        except BaseException:
            if request_id is not None:
                await self.live.release_request(session, request_id)
            raise
        started = StartedExecution(
            execution_id=str(execution_id),
            name=str(answer.get("name") or path),
            status=None if answer.get("status") is None else str(answer.get("status")),
            request_id=request_id,
            answer=answer,
        )
        if request_id is not None and client_id is not None:
            await self.live.record_pending(request_id, client_id, session, started.execution_id, path)
        return started

    def _live_variables(self, request_id: str | None) -> dict[str, Any]:
        """What a playbook needs to post its result to this request (nothing without one)."""
        if request_id is None:
            return {}
        return {
            "request_id": request_id,
            "gateway_url": self.public_url,
            "callback_token": self.signer.issue(request_id),
        }

    async def get(self, execution_id: str, viewer_roles: Iterable[str]) -> dict[str, Any] | None:
        """NoETL's view of one execution, normalised (None when unknown); credentials for admins only."""
        execution_id = check_execution_id(execution_id)
        try:
            answer = await self.noetl.get_execution(execution_id)
        except UpstreamError as exc:
            if exc.upstream_status == 404:
                return None
            raise
        described = describe_execution(execution_id, answer)
        if described["finished"] and await self._completion_only_inferred(execution_id):
            # NoETL's summary says done too early; its /status knows the completion is only inferred.
            described["finished"] = False
            described["state"] = "RUNNING"
        visible: dict[str, Any] = visible_json(described, viewer_roles, self.admin_roles)
        return visible

    async def _completion_only_inferred(self, execution_id: str) -> bool:
        """True when ``/api/executions/{id}/status`` says ``completion_inferred`` (not finished yet)."""
        status, answer = await self.noetl.request_json("GET", f"executions/{execution_id}/status")
        return status == 200 and isinstance(answer, dict) and answer.get("completion_inferred") is True
