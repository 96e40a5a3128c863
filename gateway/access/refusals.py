"""What an authorization refusal looks like to the caller: status, GraphQL code, public text."""

from __future__ import annotations


class AccessRefusal(Exception):
    """A refusal the caller may see; the REST proxy answers ``status``, GraphQL uses ``code``."""

    status = 403
    code = "FORBIDDEN"

    def __init__(self, public: str, rule: str | None = None) -> None:
        super().__init__(public)
        self.public = public
        self.rule = rule


class AccessDenied(AccessRefusal):
    """The route policy or the playbook access check said no (403); ``rule`` names the rule."""


class StartNotCheckable(AccessRefusal):
    """A playbook start whose target the gateway cannot read from the request (400)."""

    status = 400
    code = "BAD_USER_INPUT"
