"""What a listener is, as an operator writes it (``GATEWAY_INGRESS_CONFIG``) or NoETL serves it.

The field names follow the reference gateway's ingress config (``verify``, ``dispatch``,
``catalog_path``, ``source``), so NoETL's ``GET /api/internal/ingress/{listener}`` answer validates
with the same models. Two differences by origin: a file names its secrets (``secret_env`` or
``secret_file``) and never holds one; NoETL's answer holds the resolved ``secret`` and may never
point the gateway at its own environment or files.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.access.starts import check_playbook_path
from gateway.errors import PublicError

LISTENER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Never copied into a workload, whatever a listener allows: credentials of any kind.
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-session-token", "x-callback-token"}
)
WORKLOAD_KEY = "ingress"  # the gateway's own block in every workload
SECRET_FIELDS = ("secret", "secret_env", "secret_file")


def _header_name(value: str) -> str:
    if not _HEADER.fullmatch(value):
        raise ValueError(f"{value!r} is not an HTTP header name")
    return value


class VerifySpec(BaseModel):
    """How a delivery proves where it comes from (checked before anything else is read)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    SECRET_SOURCES: ClassVar[tuple[str, ...]] = SECRET_FIELDS

    type: Literal["hmac_sha256", "bearer", "pubsub_oidc"]
    header: str | None = None
    secret: str | None = Field(None, repr=False)
    secret_env: str | None = None
    secret_file: str | None = None
    timestamp_header: str | None = None
    tolerance_secs: int = Field(300, gt=0, le=86400)
    audience: str | None = None
    service_account: str | None = None

    @field_validator("header", "timestamp_header")
    @classmethod
    def _headers(cls, value: str | None) -> str | None:
        return None if value is None else _header_name(value)

    @model_validator(mode="after")
    def _fits_its_type(self) -> VerifySpec:
        given = [name for name in SECRET_FIELDS if getattr(self, name)]
        foreign = [name for name in given if name not in self.SECRET_SOURCES]
        if foreign:
            raise ValueError(self.foreign_secret_message(foreign[0]))
        if self.type == "pubsub_oidc":
            if not self.audience or not self.service_account:
                raise ValueError("pubsub_oidc needs audience and service_account")
            if given or self.timestamp_header:
                raise ValueError("pubsub_oidc takes no secret and no timestamp_header (Google signs the token)")
            return self
        if len(given) != 1:
            raise ValueError(f"{self.type} needs exactly one of {' or '.join(self.SECRET_SOURCES)}")
        if self.type == "bearer" and self.timestamp_header:
            raise ValueError("bearer takes no timestamp_header (nothing signs the timestamp)")
        return self

    def foreign_secret_message(self, name: str) -> str:
        return f"{name} is not accepted here"

    @property
    def signature_header(self) -> str:
        """Where the proof travels (the defaults are the reference gateway's)."""
        if self.header:
            return self.header
        return "X-Signature" if self.type == "hmac_sha256" else "Authorization"


class FileVerifySpec(VerifySpec):
    """``verify`` in the operator's file: the secret is named, never written."""

    SECRET_SOURCES: ClassVar[tuple[str, ...]] = ("secret_env", "secret_file")

    def foreign_secret_message(self, name: str) -> str:
        return "a secret never goes in the file: name it with secret_env or secret_file"


class NoetlVerifySpec(VerifySpec):
    """``verify`` in NoETL's answer: the resolved secret, never a name of our env or files."""

    SECRET_SOURCES: ClassVar[tuple[str, ...]] = ("secret",)


class DispatchSpec(BaseModel):
    """Which playbook a verified delivery starts, and which part of it becomes the workload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    playbook: str
    # message.json: the JSON body (webhook) or the base64-decoded message data (Pub/Sub);
    # body.json: the request body itself (for Pub/Sub: the whole envelope); message.attributes.
    payload_from: Literal["message.json", "body.json", "message.attributes"] = "message.json"
    execution_pool: str | None = None  # the reference's; NoETL 4.26 has no pools: accepted, not sent

    @field_validator("playbook")
    @classmethod
    def _playbook(cls, value: str) -> str:
        try:
            return check_playbook_path(value)  # the one rule for a playbook name
        except PublicError as exc:
            raise ValueError(exc.public) from None


class ListenerSpec(BaseModel):
    """One listener: the fields the reference's NoETL serves, plus the gateway's own limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listener: str | None = None
    catalog_path: str | None = None
    subscription_id: str | None = None
    source: Literal["webhook", "pubsub"] = "webhook"
    verify: VerifySpec
    dispatch: DispatchSpec
    delivery_id_header: str | None = None
    # Request headers (webhook) or message attributes (Pub/Sub) that may become workload fields:
    # a list of names (field = the name in snake case) or {name: field}.
    directives: dict[str, str] | list[str] = Field(default_factory=dict)
    max_body_bytes: int | None = Field(None, gt=0)
    rate_per_minute: int | None = Field(None, ge=0)

    @field_validator("delivery_id_header")
    @classmethod
    def _delivery_header(cls, value: str | None) -> str | None:
        return None if value is None else _header_name(value)

    @field_validator("directives")
    @classmethod
    def _directives(cls, value: dict[str, str] | list[str]) -> dict[str, str]:
        pairs = value.items() if isinstance(value, dict) else ((name, _snake(name)) for name in value)
        allowed: dict[str, str] = {}
        for name, field in pairs:
            _header_name(name)
            if name.lower() in CREDENTIAL_HEADERS:
                raise ValueError(f"{name} carries credentials and never becomes a workload field")
            if not _FIELD.fullmatch(field) or field == WORKLOAD_KEY:
                raise ValueError(f"{field!r} cannot be a workload field name")
            allowed[name.lower()] = field
        return allowed

    @model_validator(mode="after")
    def _proof_stays_out(self) -> ListenerSpec:
        assert isinstance(self.directives, dict)
        if self.verify.signature_header.lower() in self.directives:
            raise ValueError(f"directives: {self.verify.signature_header} carries the proof and stays out of workloads")
        return self

    @property
    def allowed_directives(self) -> dict[str, str]:
        """Lower-case header (or attribute) name -> workload field."""
        assert isinstance(self.directives, dict)
        return self.directives


class FileListenerSpec(ListenerSpec):
    """A listener in ``GATEWAY_INGRESS_CONFIG``."""

    verify: FileVerifySpec


class NoetlListenerSpec(ListenerSpec):
    """A listener as NoETL's ``GET /api/internal/ingress/{listener}`` serves it."""

    verify: NoetlVerifySpec


class IngressFile(BaseModel):
    """The whole ``GATEWAY_INGRESS_CONFIG`` file: ``listeners: {name: listener}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listeners: dict[str, FileListenerSpec] = Field(default_factory=dict)

    @field_validator("listeners", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name in value:
                if not isinstance(name, str) or not LISTENER_NAME.fullmatch(name):
                    raise ValueError(f"{name!r} is not a listener name (letters, digits, '_', '.', '-'; 128 at most)")
        return value


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "header"
