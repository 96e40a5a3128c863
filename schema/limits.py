"""Query limits: size, depth, aliases, tokens, and the introspection switch (CONTRACT §5).

Size is checked on the text, tokens by the parser (``max_tokens``), the rest here on
the parsed document before the (costlier) spec validation runs. Every violation is an
ordinary GraphQL request error naming the limit, never a hang or a crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from gateway.config import GatewayConfig

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """The limits of one gateway, from its configuration."""

    max_bytes: int = 64 * 1024
    max_depth: int = 15
    max_aliases: int = 30
    max_tokens: int = 10_000
    introspection: bool = True

    @classmethod
    def from_config(cls, config: GatewayConfig) -> QueryLimits:
        """Read the ``GATEWAY_GRAPHQL_*`` settings."""
        return cls(
            max_bytes=config.gateway_graphql_max_query_bytes,
            max_depth=config.gateway_graphql_max_depth,
            max_aliases=config.gateway_graphql_max_aliases,
            max_tokens=config.gateway_graphql_max_tokens,
            introspection=config.gateway_graphql_introspection,
        )

    def too_large(self, query: str) -> bool:
        """True if the query's UTF-8 size exceeds ``max_bytes`` (encodes only when it must)."""
        if len(query) > self.max_bytes:
            return True
        if len(query) * 4 <= self.max_bytes:
            return False
        return len(query.encode("utf-8")) > self.max_bytes


def limit_errors(document: DocumentNode, limits: QueryLimits) -> list[GraphQLError]:
    """Errors for every limit the document breaks (empty when within limits)."""
    errors: list[GraphQLError] = []
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    aliases: list[FieldNode] = []
    introspection: list[FieldNode] = []
    for definition in document.definitions:
        selection_set = getattr(definition, "selection_set", None)
        if isinstance(selection_set, SelectionSetNode):
            _scan(selection_set, aliases, introspection)
    if len(aliases) > limits.max_aliases:
        errors.append(
            _error(
                f"Query uses {len(aliases)} aliases; the limit is {limits.max_aliases}.",
                "aliases",
                aliases[limits.max_aliases],
            )
        )
    if introspection and not limits.introspection:
        errors.append(_error("GraphQL introspection is disabled on this gateway.", "introspection", introspection[0]))
    memo: dict[str, int] = {}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            depth = _depth(definition.selection_set, fragments, memo, set())
            if depth > limits.max_depth:
                name = f" '{definition.name.value}'" if definition.name else ""
                errors.append(
                    _error(
                        f"Operation{name} is nested {depth} levels deep; the limit is {limits.max_depth}.",
                        "depth",
                        definition,
                    )
                )
    return errors


def _scan(selection_set: SelectionSetNode, aliases: list[FieldNode], introspection: list[FieldNode]) -> None:
    """Collect aliased and introspection fields (iterative: no recursion on hostile input)."""
    stack = [selection_set]
    while stack:
        current = stack.pop()
        for selection in current.selections:
            if isinstance(selection, FieldNode):
                if selection.alias is not None:
                    aliases.append(selection)
                if selection.name.value in INTROSPECTION_FIELDS:
                    introspection.append(selection)
            if isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set is not None:
                stack.append(selection.selection_set)


def _depth(
    selection_set: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    memo: dict[str, int],
    visiting: set[str],
) -> int:
    """Field nesting depth (a leaf field at the root is 1), fragments expanded once each."""
    deepest = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            depth = 1 + (_depth(selection.selection_set, fragments, memo, visiting) if selection.selection_set else 0)
        elif isinstance(selection, InlineFragmentNode):
            depth = _depth(selection.selection_set, fragments, memo, visiting)
        elif isinstance(selection, FragmentSpreadNode):
            depth = _fragment_depth(selection.name.value, fragments, memo, visiting)
        else:  # pragma: no cover - no other selection kinds exist
            depth = 0
        deepest = max(deepest, depth)
    return deepest


def _fragment_depth(
    name: str, fragments: dict[str, FragmentDefinitionNode], memo: dict[str, int], visiting: set[str]
) -> int:
    if name in memo:
        return memo[name]
    fragment = fragments.get(name)
    if fragment is None or name in visiting:  # unknown or cyclic: spec validation reports it
        return 0
    visiting.add(name)
    depth = _depth(fragment.selection_set, fragments, memo, visiting)
    visiting.discard(name)
    memo[name] = depth
    return depth


def _error(message: str, limit: str, node: FieldNode | OperationDefinitionNode) -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": "GRAPHQL_VALIDATION_FAILED", "limit": limit})
