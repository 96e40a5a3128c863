"""How any handler reaches what ``make_app`` put in the Application settings, typed.

Plain HTTP handlers (handlers/base.py) and the WebSocket one (handlers/graphql_ws.py) derive from
different Tornado classes; both read the process's services the same way through this mixin.
"""

from __future__ import annotations

from typing import cast

from tornado.web import Application

from gateway.config import GatewayConfig
from gateway.metrics import Metrics
from gateway.services import Services
from handlers.deadlines import ConnectionDeadlines


class AppServices:
    """``services``, ``config``, ``metrics`` and the connection deadlines of the Application a handler serves."""

    application: Application  # set by Tornado's RequestHandler

    @property
    def services(self) -> Services:
        return cast(Services, self.application.settings["services"])

    @property
    def config(self) -> GatewayConfig:
        return self.services.config

    @property
    def metrics(self) -> Metrics:
        return self.services.metrics

    @property
    def connection_deadlines(self) -> ConnectionDeadlines:
        return cast(ConnectionDeadlines, self.application.settings["connection_deadlines"])
