"""The gateway's GraphQL schema: SDL in ``schema.graphql``, resolvers in ``resolvers.py``."""

from __future__ import annotations

from importlib.resources import files

from graphql import GraphQLObjectType, GraphQLScalarType, GraphQLSchema, assert_valid_schema, build_schema

from schema.resolvers import RESOLVERS
from schema.scalars import attach_json_scalar
from schema.subscriptions import SOURCES


def load_sdl() -> str:
    """The SDL text shipped with the package."""
    return files("schema").joinpath("schema.graphql").read_text(encoding="utf-8")


def build_gateway_schema(sdl: str | None = None) -> GraphQLSchema:
    """Build from SDL, attach the JSON scalar and every resolver, and assert the result is valid."""
    schema = build_schema(sdl if sdl is not None else load_sdl())
    json_type = schema.get_type("JSON")
    if not isinstance(json_type, GraphQLScalarType):
        raise RuntimeError("schema.graphql must declare scalar JSON")
    attach_json_scalar(json_type)
    for type_name, resolvers in RESOLVERS.items():
        object_type = schema.get_type(type_name)
        if not isinstance(object_type, GraphQLObjectType):
            raise RuntimeError(f"schema.graphql has no object type {type_name}")
        for field_name, resolver in resolvers.items():
            if field_name not in object_type.fields:
                raise RuntimeError(f"resolver for unknown field {type_name}.{field_name}")
            object_type.fields[field_name].resolve = resolver
        missing = sorted(set(object_type.fields) - set(resolvers))
        if missing:
            raise RuntimeError(f"{type_name} fields without a resolver: {', '.join(missing)}")
    subscription = schema.subscription_type
    for field_name, source in SOURCES.items():
        if subscription is None or field_name not in subscription.fields:
            raise RuntimeError(f"source stream for unknown field Subscription.{field_name}")
        subscription.fields[field_name].subscribe = source
    assert_valid_schema(schema)
    return schema
