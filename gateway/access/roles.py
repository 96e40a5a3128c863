"""Who counts as an administrator: one rule for every entry point (CONTRACT §4, ``GATEWAY_ADMIN_ROLES``)."""

from __future__ import annotations

from collections.abc import Iterable


def is_admin(roles: Iterable[str], admin_roles: Iterable[str]) -> bool:
    """True if any of the user's roles is one of the configured admin roles."""
    return not set(roles).isdisjoint(admin_roles)
