"""``IngressRejected``: a delivery refused, with the low-cardinality ``reason`` the metric and the answer carry."""

from __future__ import annotations

from gateway.errors import PublicError, code_for_status


class IngressRejected(PublicError):
    """No execution was started; ``reason`` labels ``noetl_ingress_rejected_total`` (reference names)."""

    def __init__(self, status: int, reason: str, public: str, *, retry_after: float | None = None) -> None:
        super().__init__(status, code_for_status(status), public)
        self.reason = reason
        self.retry_after = retry_after


def unauthorized(reason: str, public: str) -> IngressRejected:
    """The delivery did not prove where it comes from (the source may fix its signing)."""
    return IngressRejected(401, reason, public)


def forbidden(reason: str, public: str) -> IngressRejected:
    """The proof is genuine but not for this listener (another audience, another service account)."""
    return IngressRejected(403, reason, public)
