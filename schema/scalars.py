"""The ``JSON`` scalar: any JSON value in, any JSON value out.

Variables arrive already decoded, so input coercion passes them through. Inline literals
(objects, lists, strings, numbers, booleans, null, enum-looking names as strings) are
turned into Python values; graphql-core replaces variables nested inside a literal
before ``coerce_input_literal`` sees it, so ``{ query: $q }`` works too.
"""

from __future__ import annotations

from typing import Any

from graphql import ConstValueNode, GraphQLScalarType, ValueNode
from graphql.utilities import value_from_ast_untyped


def coerce_json_value(value: Any) -> Any:
    """Variables and resolver results are JSON already."""
    return value


def coerce_json_literal(node: ConstValueNode) -> Any:
    """An inline literal (variables already replaced) as a Python value."""
    return value_from_ast_untyped(node)


def parse_json_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Any:
    """Legacy hook (graphql-core < 3.3 style): literal with variables looked up."""
    return value_from_ast_untyped(node, variables)


def attach_json_scalar(scalar: GraphQLScalarType) -> None:
    """Give the SDL's ``scalar JSON`` its coercion functions."""
    scalar.coerce_output_value = coerce_json_value
    scalar.coerce_input_value = coerce_json_value
    scalar.coerce_input_literal = coerce_json_literal
    scalar.serialize = coerce_json_value  # type: ignore[method-assign]
    scalar.parse_value = coerce_json_value  # type: ignore[method-assign]
    scalar.parse_literal = parse_json_literal  # type: ignore[method-assign]
