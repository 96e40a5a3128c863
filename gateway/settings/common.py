"""What several settings groups share: list values written as comma-separated text (``CsvList``), loopback binds."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


class SettingsGroup(BaseModel):
    """Base of every group: frozen, and a name the model does not know is an error, not ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def split_csv(value: Any) -> Any:
    """``"a, b"`` → ``["a", "b"]`` (lists pass through): how an environment variable writes a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list setting: a JSON list in a config file, or comma-separated text in the environment.
CsvList = Annotated[list[str], BeforeValidator(split_csv)]


def is_loopback(bind: str) -> bool:
    """True for an address only this host can reach (``""`` and ``0.0.0.0`` mean every interface)."""
    if bind.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False
