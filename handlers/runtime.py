"""``GET /api/runtime/contract``: the reference gateway's runtime contract document, generated.

The reference serves a fixed document (routes, the ``/noetl/*`` proxy contract, how the ``noetl``
CLI maps its operations, the execution and agent contracts, and an ``auth0`` block for
``noetl context init --from-gateway``). Ours has the same shape but is built from what this
process really serves: the Application's route table (each handler's methods, and who may call
it, by its ``route_name``), the proxy's header rules, the route policy in force (which NoETL
operations a plain signed-in user may call), the GraphQL schema and the config. So it cannot
drift from the code.

Public, like the reference's: the CLI reads it before it has a session. It holds nothing secret —
no NoETL address, no role names, no callback settings; the Auth0 values in it are the public
metadata a browser sees anyway.
"""

from __future__ import annotations

import re
from typing import Any, cast

import orjson
from graphql import GraphQLSchema
from tornado.web import Application, RequestHandler

from gateway.access.routes import ADMIN, ANY_SIGNED_IN, RoutePolicy
from gateway.config import GatewayConfig
from gateway.version import __version__
from handlers.base import BaseHandler

# The reference's contract version: our document keeps its shape (extra keys are additions).
CONTRACT_VERSION = "2026-04-26"
PUBLIC, SESSION, CALLBACK, LISTENER = "public", "session", "callback token", "listener verification"
# Who may call each handler, by its ``route_name`` (tests/test_runtime_contract.py fails for a
# route whose name is missing here). Callback routes need no session: "public" in the reference.
ACCESS_BY_ROUTE_NAME: dict[str, str] = {
    "health": PUBLIC,
    "metrics": PUBLIC,
    "openapi": PUBLIC,
    "runtime_contract": PUBLIC,
    "graphiql": PUBLIC,  # the GraphiQL page's vendored files (no data)
    "sharding": PUBLIC,  # arithmetic only: no URL, only the shard count (docs/sharding.md)
    "ingress": LISTENER,  # no session: each listener verifies its sender (docs/ingress.md)
    "auth_login": PUBLIC,
    "auth_validate": PUBLIC,
    "auth_check_access": PUBLIC,
    "auth_logout": PUBLIC,
    "callback": CALLBACK,
    "callback_async": CALLBACK,
    "progress": CALLBACK,
    "graphql": SESSION,
    "graphql_ws": SESSION,  # the WebSocket upgrade of /graphql (same path, same GET: listed once)
    "graphql_stream": SESSION,
    "events": SESSION,
    "proxy": SESSION,
}
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# NoETL operations the ``noetl`` CLI runs through the proxy (the reference's mapping): name → (method, API path).
CLI_OPERATIONS: dict[str, tuple[str, str]] = {
    "exec": ("POST", "execute"),
    "status": ("GET", "executions/{id}/status"),
    "detail": ("GET", "executions/{id}"),
    "events": ("GET", "executions/{id}/events"),
    "cancel": ("POST", "executions/{id}/cancel"),
    "catalog_list": ("POST", "catalog/list"),
    "agent_catalog_list": ("POST", "catalog/agents/list"),
    "catalog_register": ("POST", "catalog/register"),
    "query": ("POST", "postgres/execute"),
}
_EXECUTION_OPERATIONS = {
    "start": "exec",
    "status": "status",
    "detail": "detail",
    "events": "events",
    "cancel": "cancel",
}


def handler_methods(handler: type[RequestHandler]) -> list[str]:
    """The HTTP methods a handler class answers (OPTIONS, the CORS preflight every route has, left out)."""
    return [m for m in _METHODS if getattr(handler, m.lower()) is not getattr(RequestHandler, m.lower())]


def route_template(pattern: str) -> str:
    """A Tornado route regex as the reference writes routes: ``/noetl/(.*)`` → ``/noetl/{*path}``."""
    template = pattern.removesuffix("$").removesuffix("/?")
    template = template.replace("(.*)", "{*path}")
    template = re.sub(r"\([^)]*\)", "{param}", template)
    return template.replace("\\", "")


def served_routes(app: Application) -> list[tuple[str, str, type[RequestHandler]]]:
    """(pattern, template, handler class) of every route the Application serves, in match order."""
    routes = []
    for rule in app.wildcard_router.rules:
        pattern = getattr(rule.matcher, "regex", None)
        handler = rule.target
        if pattern is not None and isinstance(handler, type) and issubclass(handler, RequestHandler):
            routes.append((pattern.pattern, route_template(pattern.pattern), handler))
    return routes


def _route_lists(app: Application) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {"public": [], "protected": []}
    for _pattern, template, handler in served_routes(app):
        access = ACCESS_BY_ROUTE_NAME.get(getattr(handler, "route_name", ""), SESSION)  # unknown: say protected
        methods = handler_methods(handler)
        shown = ["ANY"] if len(methods) == len(_METHODS) else [m for m in methods if m != "HEAD"]
        group = "protected" if access == SESSION else "public"
        lists[group].extend(f"{method} {template}" for method in shown if f"{method} {template}" not in lists[group])
    return lists


def _proxy_contract(app: Application) -> dict[str, Any]:
    proxies = [(t, h) for _, t, h in served_routes(app) if getattr(h, "route_name", "") == "proxy"]
    template, handler = proxies[0]
    return {
        "incoming_prefix": template.removesuffix("{*path}"),
        "upstream_prefix": "/api/",
        "supported_methods": [*handler_methods(handler), "OPTIONS"],
        "authentication": {
            "required": True,
            "accepted_headers": [
                "Authorization: Bearer <session_token>",
                "X-Session-Token: <session_token>",
                "Cookie: session_token=<session_token>",
            ],
            "middleware": "session",
        },
        "forwarded_request_headers": ["Content-Type", "Accept", "every other end-to-end header"],
        "dropped_request_headers": [
            "hop-by-hop headers",
            "Host",
            "Authorization",
            "Cookie",
            "X-Session-Token",
            "X-User-*",
            "X-Noetl-User-*",
        ],
        "added_request_headers": [
            "X-Noetl-User-Id",
            "X-Noetl-User-Email",
            "X-Request-Id",
            "X-Forwarded-For",
            "X-Forwarded-Proto",
            "X-Forwarded-Host",
        ],
        "forwarded_response_headers": ["Content-Type", "Content-Length", "every other end-to-end header"],
        "dropped_response_headers": ["hop-by-hop headers", "Set-Cookie", "Access-Control-*"],
    }


def _who_may(policy: RoutePolicy, method: str, api_path: str) -> str:
    """Who the route policy lets call a NoETL route, in words that name no role."""
    rule = policy.rule_for(method, api_path.replace("{id}", "0").lower())
    if ANY_SIGNED_IN in rule.roles:
        return "any signed-in user"
    if not rule.roles:
        return "nobody"
    return "admin roles" if rule.roles == {ADMIN} else "some roles"


def _auth0_block(config: GatewayConfig) -> dict[str, str] | None:
    """The reference's optional ``auth0`` block: present only with a domain, empty fields left out."""
    domain = (config.auth0_domain or "").strip()
    if not domain:
        return None
    block = {"domain": domain}
    for key, value in (
        ("client_id", config.auth0_client_id),
        ("redirect_uri", config.auth0_redirect_uri),
        ("audience", config.auth0_audience),
    ):
        if value and value.strip():
            block[key] = value.strip()
    return block


def _graphql_operations(schema: GraphQLSchema) -> dict[str, str]:
    """Each GraphQL root field with its arguments, e.g. ``rerunExecution(executionId, variables, clientId)``."""
    operations: dict[str, str] = {}
    for root in (schema.query_type, schema.mutation_type):
        for name, field in (root.fields if root is not None else {}).items():
            operations[name] = f"{name}({', '.join(field.args)})" if field.args else name
    return operations


def build_contract(
    app: Application, config: GatewayConfig, policy: RoutePolicy, schema: GraphQLSchema
) -> dict[str, Any]:
    """The document ``GET /api/runtime/contract`` serves."""
    proxy = _proxy_contract(app)
    prefix = proxy["incoming_prefix"]
    cli = {name: f"{prefix}{path}" for name, (_method, path) in CLI_OPERATIONS.items()}
    execution: dict[str, Any] = {}
    for key, operation in _EXECUTION_OPERATIONS.items():
        method, path = CLI_OPERATIONS[operation]
        execution[key] = {"method": method, "path": f"{prefix}{path}", "access": _who_may(policy, method, path)}
    execution["start"]["body"] = '{ path|catalog_id, workload, resource_kind: "playbook"|"agent" }'
    graphql = _graphql_operations(schema)
    execution["graphql"] = {
        key: graphql[name]
        for key, name in (("start", "executePlaybook"), ("rerun", "rerunExecution"), ("detail", "execution"))
        if name in graphql
    }
    body: dict[str, Any] = {
        "gateway_version": __version__,
        "contract_version": CONTRACT_VERSION,
        "summary": "Gateway authenticates clients and forwards canonical NoETL API calls. Agent and MCP activity "
        "is executed by NoETL playbooks/workers, not by Gateway.",
        "routes": _route_lists(app),
        "proxy_contract": proxy,
        "cli_operation_mapping": cli,
        "operation_access": {name: _who_may(policy, m, p) for name, (m, p) in CLI_OPERATIONS.items()},
        "execution_contract": execution,
        "agent_contract": {
            "model": "agent-as-playbook",
            "discovery": cli["agent_catalog_list"],
            "invocation": cli["exec"],
            "state": cli["detail"],
            "graphql": "executePlaybook(name, variables, clientId, resourceKind: AGENT)",
            "mcp": "MCP servers are reached by NoETL worker tool execution, so activity is captured in NoETL "
            "command/event/execution state.",
        },
    }
    auth0 = _auth0_block(config)
    if auth0 is not None:
        body["auth0"] = auth0
    return body


class RuntimeContractHandler(BaseHandler):
    """The runtime contract (public: the CLI reads it before signing in; nothing secret in it)."""

    route_name = "runtime_contract"

    def get(self) -> None:
        settings = self.application.settings
        document = settings.get("runtime_contract")
        if document is None:  # the routes, the policy and the config are fixed for the process
            schema = cast(GraphQLSchema, settings["graphql"].schema)
            contract = build_contract(self.application, self.config, self.services.access.routes, schema)
            document = settings["runtime_contract"] = orjson.dumps(contract)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-cache")
        self.finish(document)


default_handlers = [(r"/api/runtime/contract", RuntimeContractHandler)]
