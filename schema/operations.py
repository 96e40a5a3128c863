"""One operation for the streaming transports (graphql-ws, graphql-sse): a single result or a stream.

Queries and mutations run through :meth:`GraphQLEngine.run`, the entry point of ``POST /graphql``
(same document cache, limits, errors); a subscription is prepared the same way (the cached,
validated document) and run on graphql-core's own pieces of ``subscribe()``: the source stream
from ``create_source_event_stream``, then ``execute`` once per event with the event as root value.
Unlike ``subscribe()`` this keeps no executor (its sets, error collector and resolve helpers,
≈ 1.5 KB) and no mapping generator alive while a subscription waits, which is what most of them
do (bench/subscriptions_bench.py: memory per idle subscription). Transport-agnostic: the
handlers turn the three outcomes into their messages.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from graphql import DocumentNode, ExecutionResult, Executor, OperationType, create_source_event_stream, execute
from graphql.pyutils import is_awaitable

from gateway.errors import PublicError
from schema.context import RequestContext
from schema.engine import GraphQLEngine, Outcome, field_from_dict, is_awaitable_value
from schema.errors import BAD_REQUEST, BAD_USER_INPUT, INTERNAL, format_execution_error, simple_error

log = logging.getLogger("gateway.graphql")


@dataclass(frozen=True, slots=True)
class Refused:
    """Nothing ran: request errors (parse, validation, limits, variables, no such operation, refusals)."""

    errors: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Single:
    """A query or mutation: its one response body."""

    body: dict[str, Any]


class Stream:
    """A subscription: response bodies, one per source event (close it with ``aclose``)."""

    __slots__ = ("_context", "_document", "_name", "_schema", "_source", "_variables")

    def __init__(
        self,
        source: AsyncIterator[Any],
        engine: GraphQLEngine,
        document: DocumentNode,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        context: RequestContext,
    ) -> None:
        self._source = source
        self._schema = engine.schema
        self._document = document
        self._variables = variables
        self._name = operation_name
        self._context = context

    @property
    def request_id(self) -> str:
        return self._context.request_id

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        event = await self._source.__anext__()
        result: Any = execute(
            self._schema,
            self._document,
            root_value=event,
            context_value=self._context,
            variable_values=self._variables,
            operation_name=self._name,
            field_resolver=field_from_dict,
            is_awaitable=is_awaitable_value,
        )
        if is_awaitable(result):
            result = await result
        return body_of(result, self._context.request_id)

    async def aclose(self) -> None:
        """Stop the subscription (its source stream is closed, its slot given back)."""
        close = getattr(self._source, "aclose", None)
        if close is not None:
            await close()


Started = Refused | Single | Stream


def operation_type(engine: GraphQLEngine, query: str, operation_name: str | None) -> OperationType | Refused:
    """Which operation the document runs, or why it cannot run (the document is cached for the run)."""
    prepared = engine.prepare(query)
    if prepared.document is None:
        return Refused(prepared.errors)
    operations = prepared.operations
    if operation_name is not None:
        chosen = operations.get(operation_name)
        if chosen is None:
            return Refused([simple_error(f"Unknown operation named '{operation_name[:100]}'.", BAD_REQUEST)])
        return chosen
    if len(operations) != 1:
        message = "Must provide operationName if the query contains several operations."
        return Refused([simple_error(message, BAD_REQUEST)])
    return next(iter(operations.values()))


async def start_operation(
    engine: GraphQLEngine,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    context: RequestContext,
) -> Started:
    """Run a query/mutation to its result, or start a subscription's response stream."""
    kind = operation_type(engine, query, operation_name)
    if isinstance(kind, Refused):
        return kind
    if kind is not OperationType.SUBSCRIPTION:
        outcome = await engine.run(query, variables, operation_name, context, allow_mutations=True)
        if outcome.outcome in (Outcome.REQUEST_ERROR, Outcome.BAD_REQUEST):
            return Refused(list(outcome.body["errors"]))
        return Single(outcome.body)
    document = engine.prepare(query).document
    assert document is not None
    async with context.services.subscriptions.starting:  # a burst's transient memory stays bounded
        return await _subscribe(engine, document, variables, operation_name, context)


async def _subscribe(
    engine: GraphQLEngine,
    document: DocumentNode,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    context: RequestContext,
) -> Refused | Stream:
    """The subscription's source stream (its resolver: the access rules, the slot, the watch)."""
    executor = Executor.build(
        engine.schema, document, context_value=context, raw_variable_values=variables, operation_name=operation_name
    )
    if isinstance(executor, list):  # variables that do not coerce
        return Refused([format_execution_error(error, BAD_USER_INPUT, context.request_id) for error in executor])
    source: Any = create_source_event_stream(executor)
    del executor  # only the source stream lives on (module doc)
    if is_awaitable(source):
        source = await source
    if isinstance(source, ExecutionResult):
        # No stream: the source refused (not found, access, limits).
        return Refused(
            [format_execution_error(error, BAD_USER_INPUT, context.request_id) for error in source.errors or ()]
        )
    return Stream(source, engine, document, variables, operation_name, context)


def body_of(result: ExecutionResult, request_id: str) -> dict[str, Any]:
    """A response body of the stream: data, and errors made public (as POST /graphql does)."""
    if not result.errors:
        return {"data": result.data}
    errors = [format_execution_error(error, INTERNAL, request_id) for error in result.errors]
    return {"data": result.data, "errors": errors}


def error_body(error: BaseException, request_id: str) -> dict[str, Any]:
    """The last body of a stream that failed while running (its source ended badly)."""
    if isinstance(error, PublicError):
        return {"errors": [simple_error(error.public, error.code)]}
    log.error("subscription failed (request %s)", request_id, exc_info=(type(error), error, error.__traceback__))
    return {"errors": [simple_error("Internal server error", INTERNAL)]}
