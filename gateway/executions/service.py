"""Starting and reading playbook executions, shared by GraphQL and the REST proxy.

The access check is the authorization module's (gateway/access/); here are the live-results
seam (``clientId``: :class:`LiveResults`), the call to NoETL, and what a caller may read back
(credentials the gateway put into workloads only for admins). Refusals are ``gateway.errors``;
NoETL failures stay ``UpstreamFailure``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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
from gateway.noetl.client import NoetlClient, UpstreamError

log = logging.getLogger("gateway.executions")


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


def _execution_id_of(answer: dict[str, Any]) -> Any:
    execution_id = answer.get("execution_id") or answer.get("executionId") or answer.get("id")
    if execution_id is None or isinstance(execution_id, bool | dict | list):
        raise UpstreamError("NoETL answered the execute call without an execution id", 502, answer)
    return execution_id


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

    async def start(
        self, session: Session, token: str, name: str, variables: Any = None, client_id: str | None = None
    ) -> StartedExecution:
        """Check, start, and (with ``client_id``) register a playbook execution."""
        name = check_playbook_path(name.strip())  # the one rule for a playbook name (gateway.access)
        if variables is None:
            variables = {}
        if not isinstance(variables, dict):
            raise BadExecutionInput("variables must be a JSON object")
        request_id: str | None = None
        if client_id is not None:
            if not client_id.strip():
                raise BadExecutionInput("clientId must not be empty")
            request_id = await self.live.prepare_request(session, client_id)
        try:
            answer = await self._start(token, name, variables, request_id)
            execution_id = _execution_id_of(answer)
        except BaseException:
            if request_id is not None:
                await self.live.release_request(session, request_id)
            raise
        started = StartedExecution(
            execution_id=str(execution_id),
            name=str(answer.get("name") or name),
            status=None if answer.get("status") is None else str(answer.get("status")),
            request_id=request_id,
            answer=answer,
        )
        if request_id is not None and client_id is not None:
            await self.live.record_pending(request_id, client_id, session, started.execution_id, name)
        log.info("playbook %s started (execution %s)", name, started.execution_id)
        return started

    async def _start(self, token: str, name: str, variables: dict[str, Any], request_id: str | None) -> dict[str, Any]:
        """Access check, then NoETL's execute call (with the live-results variables); NoETL's answer."""
        await self.access.check_playbook(token, name)
        if request_id is not None:
            variables = {
                **variables,
                "request_id": request_id,
                "gateway_url": self.public_url,
                "callback_token": self.signer.issue(request_id),
            }
        try:
            return await self.noetl.execute(name, variables)
        except orjson.JSONEncodeError:
            raise BadExecutionInput("variables cannot be sent as JSON (nested too deeply?)") from None

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
