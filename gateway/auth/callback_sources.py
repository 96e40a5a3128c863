"""Who may post a callback without a ``callback_token`` (CONTRACT §6, ``GATEWAY_CALLBACK_AUTH``).

Playbooks written for the reference gateway post their callbacks unsigned. Whether such a
callback gets as far as the request-id lookup is decided here, once, for every callback
endpoint (login/check-access, async results, progress): ``required`` refuses it, ``network``
admits it only from ``GATEWAY_CALLBACK_TRUSTED_NETWORKS`` (the workers' pod network), ``legacy``
admits it from anywhere. An admitted unsigned callback still needs a pending request id (the
handlers' 404); a signed one is accepted from anywhere.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from gateway.auth.tokens import CallbackTokenError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CallbackSources:
    """The ``GATEWAY_CALLBACK_AUTH`` mode and its trusted networks, parsed once at start."""

    def __init__(self, mode: str, networks: Iterable[str]) -> None:
        self.mode = mode
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def is_trusted(self, address: str) -> bool:
        """True if ``address`` lies in a trusted network (an IPv4-mapped IPv6 address counts as IPv4)."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])  # no IPv6 zone index
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)

    def admit_unsigned(self, client_address: str) -> None:
        """Raise CallbackTokenError unless an unsigned callback from ``client_address`` may be looked up.

        ``client_address`` is the caller as the trusted-hops rule sees it (the X-Forwarded-For
        entry the nearest trusted proxy added, else the peer).
        """
        if self.mode == "legacy":
            return
        if self.mode == "network":
            if self.is_trusted(client_address):
                return
            raise CallbackTokenError(403, "Unsigned callbacks are not accepted from this address")
        raise CallbackTokenError(401, "Missing callback token")
