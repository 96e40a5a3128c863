"""OpenAPI 3.1 description of the REST endpoints, generated from the pydantic models.

The request models are the ones the handlers validate with, so the document cannot drift
from what the gateway accepts; response models below mirror CONTRACT.md §3, §6.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from gateway.version import __version__
from handlers.models import (
    AsyncCallbackRequest,
    CallbackRequest,
    CheckAccessRequest,
    LoginRequest,
    LogoutRequest,
    ProgressRequest,
    ValidateRequest,
)
from handlers.openapi_graphql import graphql_stream_operations
from handlers.openapi_ingress import IngressAccepted, IngressRefusal, ingress_operation


class ErrorResponse(BaseModel):
    error: str
    details: Any = None


class UserInfo(BaseModel):
    user_id: int
    email: str
    display_name: str
    roles: list[str]


class LoginResponse(BaseModel):
    status: Literal["authenticated"]
    session_token: str
    user: UserInfo
    expires_at: str | None
    message: str


class ValidateResponse(BaseModel):
    valid: bool
    user: UserInfo | None
    expires_at: str | None
    message: str


class CheckAccessResponse(BaseModel):
    allowed: bool
    user: UserInfo | None
    playbook_path: str
    permission_type: str
    message: str


class LogoutResponse(BaseModel):
    status: Literal["logged_out"]


class CallbackResponse(BaseModel):
    delivered: bool
    message: str


class AsyncCallbackResponse(BaseModel):
    status: Literal["delivered", "queued"]
    clientDisconnected: bool | None = Field(None)  # the wire name (CONTRACT §6)


class ReadyResponse(BaseModel):
    status: Literal["ready", "degraded", "unavailable"]
    nats: str
    noetl: str
    version: str


class Auth0Metadata(BaseModel):
    domain: str
    client_id: str | None = None
    redirect_uri: str | None = None
    audience: str | None = None


class RuntimeContract(BaseModel):
    """The reference gateway's runtime contract (handlers/runtime.py builds it from the route table)."""

    gateway_version: str
    contract_version: str
    summary: str
    routes: dict[str, list[str]]
    proxy_contract: dict[str, Any]
    cli_operation_mapping: dict[str, str]
    operation_access: dict[str, str]
    execution_contract: dict[str, Any]
    agent_contract: dict[str, Any]
    auth0: Auth0Metadata | None = None


_MODELS: list[type[BaseModel]] = [
    ErrorResponse,
    UserInfo,
    LoginResponse,
    ValidateResponse,
    CheckAccessResponse,
    LogoutResponse,
    CallbackResponse,
    AsyncCallbackResponse,
    ReadyResponse,
    RuntimeContract,
    IngressAccepted,
    IngressRefusal,
    LoginRequest,
    ValidateRequest,
    CheckAccessRequest,
    LogoutRequest,
    CallbackRequest,
    AsyncCallbackRequest,
    ProgressRequest,
]

_ERROR_TEXT = {
    400: "Malformed JSON, a missing field or a wrong type (the message names the field)",
    401: "Missing or invalid token",
    403: "Token valid but not for this request",
    404: "Unknown request id",
    413: "Body too large",
    415: "Content-Type is not application/json",
    429: "Rate limited (see Retry-After)",
    502: "NoETL unreachable or answered with an error",
    503: "A dependency (NoETL, Auth0 keys) is unavailable",
    504: "NoETL or the playbook did not answer in time",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(model)}}}


def _operation(
    summary: str,
    request: type[BaseModel] | None,
    ok: Mapping[int, tuple[str, type[BaseModel]]],
    errors: list[int],
    security: list[dict[str, list[str]]] | None = None,
    request_required: bool = True,
) -> dict[str, Any]:
    responses: dict[str, Any] = {str(code): {"description": text, **_json(model)} for code, (text, model) in ok.items()}
    for code in errors:
        responses[str(code)] = {"description": _ERROR_TEXT[code], **_json(ErrorResponse)}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if request is not None:
        operation["requestBody"] = {"required": request_required, **_json(request)}
    if security is not None:
        operation["security"] = security
    return operation


def build_openapi() -> dict[str, Any]:
    """The document served at ``/openapi.json``."""
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas[model.__name__] = schema
    body_errors = [400, 413, 415]
    session: list[dict[str, list[str]]] = [{"sessionBearer": []}, {"sessionHeader": []}, {"sessionCookie": []}]
    callback: list[dict[str, list[str]]] = [{"callbackBearer": []}, {"callbackHeader": []}, {}]
    delivered = {
        200: ("Delivered", AsyncCallbackResponse),
        202: ("Owner not connected; kept and delivered on reconnect", AsyncCallbackResponse),
    }
    paths: dict[str, Any] = {
        "/health": {
            "get": {
                "summary": "Liveness: 200 ok while the process runs",
                "responses": {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }
        },
        "/health/ready": {
            "get": {
                "summary": "Readiness: NATS and NoETL state",
                "responses": {
                    "200": {"description": "ready or degraded (NATS missing)", **_json(ReadyResponse)},
                    "503": {"description": "NoETL unreachable", **_json(ReadyResponse)},
                },
            }
        },
        "/api/runtime/contract": {
            "get": {
                "summary": "The runtime contract (routes, proxy, execution and agent contracts, Auth0 metadata); "
                "public, nothing secret in it",
                "responses": {"200": {"description": "The contract", **_json(RuntimeContract)}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    auth_errors = [*body_errors, 429, 502, 503, 504]
    callback_errors = [*body_errors, 401, 403, 404]
    # path: summary, request model, answers, error statuses, extra _operation arguments
    posts: dict[
        str, tuple[str, type[BaseModel], Mapping[int, tuple[str, type[BaseModel]]], list[int], dict[str, Any]]
    ] = {
        "/api/auth/login": (
            "Exchange an Auth0 token for a gateway session (runs the login playbook)",
            LoginRequest,
            {200: ("Authenticated", LoginResponse)},
            [*body_errors, 401, 429, 502, 503, 504],
            {},
        ),
        "/api/auth/validate": (
            "Is this session token valid?",
            ValidateRequest,
            {200: ("Validity (invalid and malformed tokens are 200 with valid=false)", ValidateResponse)},
            auth_errors,
            {},
        ),
        "/api/auth/check-access": (
            "May this session execute/view/edit the playbook?",
            CheckAccessRequest,
            {200: ("The decision", CheckAccessResponse)},
            auth_errors,
            {},
        ),
        "/api/auth/logout": (
            "Revoke the session on every replica (only a valid session: 401 and nothing written otherwise)",
            LogoutRequest,
            {200: ("Logged out (also when it already was)", LogoutResponse)},
            [*body_errors, 401, 403, 429, 502, 503, 504],
            {"security": [*session, {}], "request_required": False},
        ),
        "/api/internal/callback": (
            "Answer of an auth playbook to the request waiting for it",
            CallbackRequest,
            {200: ("Accepted (delivered=false when nothing waits for the id)", CallbackResponse)},
            callback_errors,
            {"security": callback},
        ),
        "/api/internal/callback/async": (
            "Result of an asynchronous playbook, sent to the owning SSE client",
            AsyncCallbackRequest,
            delivered,
            callback_errors,
            {"security": callback},
        ),
        "/api/internal/progress": (
            "Progress of an asynchronous playbook",
            ProgressRequest,
            delivered,
            callback_errors,
            {"security": callback},
        ),
    }
    for path, (summary, request, ok, errors, extra) in posts.items():
        paths[path] = {"post": _operation(summary, request, ok, errors, **extra)}
    paths["/ingress/{listener}"] = {"post": ingress_operation(_ref(ErrorResponse))}
    paths["/graphql/stream"] = graphql_stream_operations(_ref(ErrorResponse), session)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "noetl-gateway",
            "version": __version__,
            "description": "REST endpoints of the NoETL API gateway. GraphQL is at /graphql (also graphql-ws, "
            "a WebSocket on the same path), graphql-sse at /graphql/stream, SSE at /events, "
            "and /noetl/* proxies to NoETL's /api/*.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "sessionBearer": {"type": "http", "scheme": "bearer"},
                "sessionHeader": {"type": "apiKey", "in": "header", "name": "X-Session-Token"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "session_token"},
                "callbackBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "callbackHeader": {"type": "apiKey", "in": "header", "name": "X-Callback-Token"},
            },
        },
    }
