"""GraphQL execution on graphql-core: schema built once, documents cached, errors made safe.

HTTP-agnostic: the handler turns a :class:`GraphQLOutcome` into a status and a body
(``handlers/graphql.py``, GraphQL over HTTP). Which document runs — the text sent, a persisted
query's hash, or the safelist's — is decided by schema/persisted.py first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, TypeGuard

from graphql import ExecutionResult, GraphQLResolveInfo, GraphQLSchema, OperationType, default_field_resolver, execute
from graphql.pyutils import is_awaitable

from gateway.config import GatewayConfig
from gateway.metrics import Metrics
from gateway.tracing import graphql_operation
from schema import build_gateway_schema
from schema.context import RequestContext
from schema.documents import DocumentCache, PreparedDocument
from schema.errors import (
    BAD_REQUEST,
    BAD_USER_INPUT,
    INTERNAL,
    METHOD_NOT_ALLOWED,
    format_execution_error,
    simple_error,
)
from schema.limits import QueryLimits
from schema.outcome import GraphQLOutcome, Outcome
from schema.persisted import PersistedQueries, SharedDocuments, Source, Unregistered
from schema.safelist import load_safelist

__all__ = ["GraphQLEngine", "GraphQLOutcome", "Outcome"]

log = logging.getLogger("gateway.graphql")

_PLAIN_TYPES = frozenset({str, int, float, bool, type(None), dict, list})


def is_awaitable_value(value: Any) -> TypeGuard[Awaitable[Any]]:
    """graphql-core asks this for every value; plain JSON values answer without attribute lookups."""
    return type(value) not in _PLAIN_TYPES and is_awaitable(value)


def field_from_dict(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    """Resolvers return dicts keyed by field name; a plain lookup skips the Mapping ABC check."""
    if type(source) is dict:
        return source.get(info.field_name)
    return default_field_resolver(source, info, **args)


class GraphQLEngine:
    """The gateway's one schema and document cache; ``run`` executes one request."""

    def __init__(self, config: GatewayConfig, metrics: Metrics, schema: GraphQLSchema | None = None) -> None:
        self.schema = schema if schema is not None else build_gateway_schema()
        self.limits = QueryLimits.from_config(config)
        self.documents = DocumentCache(
            self.schema, self.limits, config.gateway_graphql_document_cache_size, metrics.graphql_documents
        )
        safelist = load_safelist(config.gateway_graphql_safelist) if config.gateway_graphql_safelist else None
        self.persisted = PersistedQueries(self.documents, safelist, metrics.graphql_persisted)

    def prepare(self, query: str) -> PreparedDocument:
        """Parse + limits + validation, cached by query text."""
        return self.documents.prepare(query)

    async def run(
        self,
        query: str | None,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        context: RequestContext,
        *,
        allow_mutations: bool = True,
        extensions: dict[str, Any] | None = None,
    ) -> GraphQLOutcome:
        """Execute one request; never raises for anything a client sent."""
        if query is not None and extensions is None and self.persisted.safelist is None:
            source = Source(query)  # the common case
        else:
            resolved = self.persisted.resolve(query, extensions)
            if isinstance(resolved, Unregistered):
                resolved = await self.persisted.from_shared(resolved.digest, SharedDocuments(context.services))
            if isinstance(resolved, GraphQLOutcome):
                return resolved
            source = resolved
        prepared = self.documents.prepare(source.query)
        if prepared.document is None:
            return GraphQLOutcome(Outcome.REQUEST_ERROR, {"errors": prepared.errors})
        chosen = _choose_operation(prepared, operation_name)
        if isinstance(chosen, GraphQLOutcome):
            return chosen
        if chosen is OperationType.MUTATION and not allow_mutations:
            return GraphQLOutcome(
                Outcome.METHOD_NOT_ALLOWED,
                {"errors": [simple_error("Mutations are not allowed over GET; use POST.", METHOD_NOT_ALLOWED)]},
            )
        if source.digest is not None and self.persisted.remember(source):
            await SharedDocuments(context.services).share(source.digest, source.query)
        named = operation_name or next(iter(prepared.operations), None)
        with graphql_operation(chosen.value, named, source.query):  # a span when tracing is on
            result = execute(
                self.schema,
                prepared.document,
                context_value=context,
                variable_values=variables,
                operation_name=operation_name,
                field_resolver=field_from_dict,
                is_awaitable=is_awaitable_value,
            )
            if is_awaitable(result):
                result = await result
        assert isinstance(result, ExecutionResult)
        return _outcome_of(result, context.request_id)


def _choose_operation(prepared: PreparedDocument, operation_name: str | None) -> OperationType | GraphQLOutcome:
    operations = prepared.operations
    if operation_name is not None:
        chosen = operations.get(operation_name)
        if chosen is None:
            return _bad_request(f"Unknown operation named '{operation_name[:100]}'.")
        return chosen
    if len(operations) != 1:
        return _bad_request("Must provide operationName if the query contains several operations.")
    return next(iter(operations.values()))


def _bad_request(message: str) -> GraphQLOutcome:
    return GraphQLOutcome(Outcome.BAD_REQUEST, {"errors": [simple_error(message, BAD_REQUEST)]})


def _outcome_of(result: ExecutionResult, request_id: str) -> GraphQLOutcome:
    errors = result.errors
    if not errors:
        return GraphQLOutcome(Outcome.EXECUTED, {"data": result.data})
    # Request errors (variable coercion) have no path and no data; field errors always have a path.
    request_error = result.data is None and all(error.path is None for error in errors)
    default_code = BAD_USER_INPUT if request_error else INTERNAL
    formatted = [format_execution_error(error, default_code, request_id) for error in errors]
    if request_error:
        return GraphQLOutcome(Outcome.REQUEST_ERROR, {"errors": formatted})
    return GraphQLOutcome(Outcome.EXECUTED, {"data": result.data, "errors": formatted})
