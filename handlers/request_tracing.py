"""What a request's span is named and records (the span itself: gateway/tracing).

The name is the route template (``POST /noetl/{path}``), never the raw path: a raw path holds ids
without bound and sometimes a token. No URL path or query is recorded either; the user is an id.
"""

from __future__ import annotations

import weakref
from typing import Any

from tornado.web import Application, RequestHandler

from gateway.auth.sessions import User
from gateway.tracing.names import route_template

_TEMPLATES: weakref.WeakKeyDictionary[Any, dict[type[Any], str]] = weakref.WeakKeyDictionary()


def route_of(application: Application, handler_class: type[Any]) -> str:
    """The template of the route that serves ``handler_class`` ("" for the fallback handler)."""
    routes = _TEMPLATES.get(application)
    if routes is None:
        routes = {}
        for rule in reversed(application.wildcard_router.rules):  # the first rule wins, as in routing
            regex = getattr(rule.matcher, "regex", None)
            if regex is not None and isinstance(rule.target, type):
                routes[rule.target] = route_template(regex.pattern)
        _TEMPLATES[application] = routes
    return routes.get(handler_class, "")


def span_start(handler: RequestHandler, client_ip: str, request_id: str) -> tuple[str, str, dict[str, Any]]:
    """Method, route template and the attributes known when the request starts."""
    facts = {"url.scheme": handler.request.protocol, "client.address": client_ip, "gateway.request_id": request_id}
    return handler.request.method or "GET", route_of(handler.application, type(handler)), facts


def user_id_of(user: Any) -> str | None:
    """The signed-in user's id for the span (never a token); None before or without a session."""
    return str(user.user_id) if isinstance(user, User) else None
