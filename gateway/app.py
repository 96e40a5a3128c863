"""The Tornado Application: routes, the services and the GraphQL engine, injected through settings.

The one place that wires handlers and the schema to the services: services never import either.
"""

from __future__ import annotations

from typing import Any

from tornado.web import Application

from gateway.config import GatewayConfig
from gateway.services import Services
from handlers import all_handlers
from handlers.base import log_request
from handlers.fallback import NotFoundHandler
from schema.engine import GraphQLEngine


def make_app(config: GatewayConfig, services: Services, **overrides: Any) -> Application:
    """Build the application; tests call this with their own config and services."""
    settings: dict[str, Any] = {
        "services": services,
        "config": config,
        "graphql": GraphQLEngine(config, services.metrics),
        "log_function": log_request,
        "default_handler_class": NotFoundHandler,
        "xsrf_cookies": False,  # bearer tokens; cookie-authenticated writes check Origin instead
        "compress_response": False,  # SSE and proxied bodies must not be buffered for gzip
        "serve_traceback": False,
        **overrides,
    }
    return Application(all_handlers(), **settings)
