"""The Tornado Application: routes, the services and the GraphQL engine, injected through settings.

The one place that wires handlers and the schema to the services: services never import either.
"""

from __future__ import annotations

from typing import Any

from tornado.httpserver import HTTPServer
from tornado.web import Application

from gateway.config import GatewayConfig
from gateway.services import Services
from handlers import all_handlers
from handlers.access_log import log_request
from handlers.application import GatewayApplication
from handlers.bodies import body_read_ceiling
from handlers.deadlines import ConnectionDeadlines, DeadlineHTTPServer
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
        # Kept by DeadlineHTTPServer, extended by the proxy (handlers/deadlines.py).
        "connection_deadlines": ConnectionDeadlines(
            config.gateway_idle_connection_timeout_secs, config.gateway_body_timeout_secs
        ),
        **overrides,
    }
    return GatewayApplication(all_handlers(), **settings)


def make_server(app: Application, config: GatewayConfig) -> HTTPServer:
    """The HTTP server with the gateway's limits at the edge (docs/configuration.md, "Abuse limits").

    Every handler streams its body and enforces its own route's limit before reading it, so
    Tornado's ``max_body_size`` is only the ceiling for routes that never raise it: the JSON
    limit plus what a refused body may be read and dropped for. The proxy raises it per request,
    once the session is valid. Headers must arrive within the idle timeout and a body within the
    body timeout (a slow-loris client is closed): ``DeadlineHTTPServer``'s connection deadlines
    keep both, so Tornado's own timer per read is off (handlers/deadlines.py says why).
    """
    return DeadlineHTTPServer(app, xheaders=False, max_body_size=body_read_ceiling(config))
