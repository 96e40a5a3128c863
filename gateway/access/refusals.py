"""What an authorization refusal looks like to the caller: status, GraphQL code, public text."""

from __future__ import annotations

from gateway.errors import BAD_USER_INPUT, FORBIDDEN, PublicError


class AccessRefusal(PublicError):
    """A refusal the caller may see; ``rule`` names the policy rule that said no (for the metric)."""

    status = 403
    code = FORBIDDEN

    def __init__(self, public: str, rule: str | None = None) -> None:
        super().__init__(self.status, self.code, public)
        self.rule = rule


class AccessDenied(AccessRefusal):
    """The route policy or the playbook access check said no (403)."""


class StartNotCheckable(AccessRefusal):
    """A playbook start whose target the gateway cannot read from the request (400)."""

    status = 400
    code = BAD_USER_INPUT
