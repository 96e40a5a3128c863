"""Routes with a literal path, found with one dict lookup instead of every rule's regex in turn.

Tornado tries the rules in order, a regex each, until one matches: about 10 µs on a route listed
late (the callbacks are, behind the proxy, health and auth). A literal path (``/health``,
``/api/internal/callback/async``) can go straight to its handler when Tornado would pick the same
rule: no earlier rule's regex matches it, and every earlier rule is judged by its path alone, or
at least needs its path to match (a ``PathMatches`` subclass such as graphql-ws's upgrade rule).
Anything else (a path with groups, ``/graphql/?``, an unknown path) goes through Tornado's routing
as before; ``tests/test_exact_routes.py`` checks both give the same answer.
"""

from __future__ import annotations

import re
from inspect import isclass
from typing import Any

from tornado.routing import PathMatches, Rule
from tornado.web import RequestHandler

LITERAL = re.compile(r"/[^.^$*+?{}\[\]\\|()]*")

ExactRoute = tuple[type[RequestHandler], dict[str, Any] | None]


def exact_routes(rules: list[Rule]) -> dict[str, ExactRoute]:
    """Each literal path → the handler class and keyword arguments of the rule Tornado picks for it."""
    table: dict[str, ExactRoute] = {}
    earlier: list[PathMatches] = []
    for rule in rules:
        matcher, target = rule.matcher, rule.target
        if not isinstance(matcher, PathMatches) or not (isclass(target) and issubclass(target, RequestHandler)):
            break  # a rule that is not judged by its path: nothing after it can be decided here
        pattern = matcher.regex.pattern
        path = pattern[:-1] if pattern.endswith("$") else ""
        if (
            type(matcher) is PathMatches
            and LITERAL.fullmatch(path)
            and path not in table
            and not any(other.regex.match(path) for other in earlier)
        ):
            table[path] = (target, rule.target_kwargs or None)
        earlier.append(matcher)
    return table
