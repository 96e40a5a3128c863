"""Request bodies of the REST endpoints, validated by pydantic (CONTRACT §3, §6).

Unknown fields are ignored (older and newer clients send extras); wrong types and
missing fields become a 400 that names the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class LoginRequest(_Body):
    auth0_token: str = Field(min_length=1, max_length=16384)
    auth0_refresh_token: str | None = Field(None, max_length=16384)
    auth0_domain: str | None = Field(None, max_length=255)
    session_duration_hours: int = Field(8, ge=1, le=24 * 30)
    client_ip: str | None = Field(None, max_length=255)
    client_user_agent: str | None = Field(None, max_length=1024)


class ValidateRequest(_Body):
    session_token: str


class CheckAccessRequest(_Body):
    session_token: str
    playbook_path: str = Field(min_length=1, max_length=1024)
    permission_type: Literal["execute", "view", "edit"] = "execute"


class LogoutRequest(_Body):
    session_token: str | None = None


class CallbackRequest(_Body):
    request_id: str = Field(min_length=1, max_length=128)
    execution_id: str | int | None = None
    step: str | None = None
    status: str = "success"
    data: Any = Field(default_factory=dict)
    callback_token: str | None = None


class CallbackErrorBody(_Body):
    code: int = -32000
    message: str = "Playbook failed"
    data: Any = None


class AsyncCallbackRequest(_Body):
    request_id: str = Field(min_length=1, max_length=128)
    execution_id: str | int | None = None
    status: str = "COMPLETED"
    data: Any = None
    error: CallbackErrorBody | None = None
    callback_token: str | None = None


class ProgressRequest(_Body):
    request_id: str = Field(min_length=1, max_length=128)
    execution_id: str | int | None = None
    step: str | None = None
    message: str | None = None
    progress: float | None = None
    callback_token: str | None = None


def describe_validation_error(exc: ValidationError) -> str:
    """One human sentence naming the first offending field."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    if first["type"] == "missing":
        return f"Missing required field '{field}'"
    return f"Invalid field '{field}': {first['msg']}"
