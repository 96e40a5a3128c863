"""Who counts as an admin: one definition for the route policy and the credential redaction."""

from __future__ import annotations

from collections.abc import Iterable


def is_admin(roles: Iterable[str], admin_roles: Iterable[str]) -> bool:
    """True when the user holds any of the configured admin roles (``GATEWAY_ADMIN_ROLES``)."""
    return not set(roles).isdisjoint(admin_roles)
