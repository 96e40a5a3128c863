"""Settings of the process itself: where it listens, how it logs and audits, how it stops."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from gateway.settings.common import SettingsGroup


class ProcessSettings(SettingsGroup):
    """Listening, workers, logs, the audit stream, graceful stop, and the proxies in front."""

    router_port: int = Field(8090, ge=0, le=65535)
    gateway_bind: str = "0.0.0.0"
    gateway_public_url: str = ""
    gateway_processes: int = Field(1, ge=0, le=256)
    gateway_log_format: Literal["text", "json"] = "text"
    gateway_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    gateway_shutdown_grace_secs: float = Field(10.0, ge=0)
    gateway_trusted_proxy_hops: int = Field(1, ge=0, le=10)
    gateway_audit_log: str = "off"

    @field_validator("gateway_audit_log")
    @classmethod
    def _audit_destination(cls, value: str) -> str:
        value = value.strip() or "off"
        if value.lower() in ("off", "stdout"):
            return value.lower()
        if not Path(value).parent.is_dir():
            raise ValueError("must be off, stdout, or a file in an existing directory")
        return value

    @field_validator("gateway_public_url")
    @classmethod
    def _public_url_without_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def public_url(self) -> str:
        """The URL workers use to reach this gateway (``gateway_url`` in playbooks)."""
        return self.gateway_public_url or f"http://localhost:{self.router_port}"
