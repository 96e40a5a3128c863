"""Literal paths routed by one dict lookup (handlers/exact_routes.py) pick what Tornado's rules pick."""

from __future__ import annotations

from typing import Any

import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.routing import AnyMatches, Rule
from tornado.web import Application, RequestHandler

from handlers import all_handlers
from handlers.application import GatewayApplication
from handlers.exact_routes import exact_routes
from handlers.graphql_ws import WebSocketUpgrade


def gateway_app(handlers: list[Any] | None = None) -> GatewayApplication:
    return GatewayApplication(all_handlers() if handlers is None else handlers)


def request(path: str, upgrade: bool = False) -> HTTPServerRequest:
    headers = HTTPHeaders({"Host": "gateway.test"})
    if upgrade:
        headers["Upgrade"] = "websocket"
    return HTTPServerRequest(start_line=RequestStartLine("GET", path, "HTTP/1.1"), headers=headers)


def picked(app: Application, found: Any) -> tuple[Any, ...]:
    return (found.handler_class, found.handler_kwargs, found.path_args, found.path_kwargs)


def paths_to_try(app: GatewayApplication) -> list[str]:
    """Every literal, every rule's pattern made into a path, and their near misses."""
    paths = {"/", "/unknown", "/noetl/health", "/noetl/api/internal/callback/async", "/graphql", "/graphql/"}
    for rule in app.wildcard_router.rules:
        pattern = rule.matcher.regex.pattern.rstrip("$")
        for text in (pattern, pattern.replace("(.*)", "x/y").replace("/?", ""), pattern.replace("\\", "")):
            paths |= {text, text + "/", text + "x", text.upper(), "/noetl" + text}
    return sorted(path for path in paths if path.startswith("/"))


def test_the_gateway_routes_its_literal_paths_by_lookup_and_the_callbacks_among_them() -> None:
    app = gateway_app()
    for path in ("/health", "/api/internal/callback/async", "/api/internal/progress", "/events"):
        assert path in app.exact
    assert "/graphql" not in app.exact  # graphql-ws's upgrade rule comes first: Tornado decides
    assert not any("(" in path for path in app.exact)


@pytest.mark.parametrize("upgrade", [False, True])
def test_every_path_gets_the_handler_tornado_would_give_it(upgrade: bool) -> None:
    app = gateway_app()
    tried = 0
    for path in paths_to_try(app):
        shortcut = picked(app, app.find_handler(request(path, upgrade)))
        tornado = picked(app, Application.find_handler(app, request(path, upgrade)))
        assert shortcut == tornado, path
        tried += 1
    assert tried > 50


class First(RequestHandler):
    pass


class Second(RequestHandler):
    pass


def test_a_literal_an_earlier_rule_could_take_is_left_to_tornado() -> None:
    app = gateway_app([(r"/a/(.*)", First), (r"/a/b", Second), (r"/c", Second, {"k": 1}), (r"/c", First)])
    assert app.exact == {"/c": (Second, {"k": 1})}  # the first /c rule wins, as in Tornado
    assert picked(app, app.find_handler(request("/a/b")))[0] is First


def test_an_upgrade_rule_blocks_only_its_own_path_and_any_other_matcher_blocks_all_after_it() -> None:
    def table(*handlers: Any) -> dict[str, Any]:
        return exact_routes(gateway_app(list(handlers)).wildcard_router.rules)

    assert table((WebSocketUpgrade(r"/x"), First), (r"/y", Second)) == {"/y": (Second, None)}
    assert table((WebSocketUpgrade(r"/y"), First), (r"/y", Second)) == {}
    assert table(Rule(AnyMatches(), First), (r"/y", Second)) == {}
