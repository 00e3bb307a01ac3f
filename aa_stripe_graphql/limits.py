"""Limits on what one GraphQL request may ask for, read from settings when a request is validated.

=============================== ======= ==========================================================
setting                         default what it limits (``extensions.code`` of the error)
=============================== ======= ==========================================================
``STRIPE_GRAPHQL_MAX_DEPTH``    10      nesting of fields below the operation (MAX_DEPTH_EXCEEDED);
                                        introspection (``__schema``, ``__type``) is not counted
``STRIPE_GRAPHQL_MAX_ALIASES``  30      aliased fields in the document, each fragment counted at
                                        every spread (MAX_ALIASES_EXCEEDED)
``STRIPE_GRAPHQL_MAX_OPERATIONS`` 5     operations in the document, and entries of a batch
                                        (MAX_OPERATIONS_EXCEEDED)
``STRIPE_GRAPHQL_MAX_BODY_BYTES`` 102400 request body (or GET query string), checked before
                                        parsing (MAX_BODY_BYTES_EXCEEDED, HTTP 413)
``STRIPE_GRAPHQL_PAGE_SIZE``    100     ``first``/``last`` of every connection, also the default
                                        page size (PAGE_SIZE_EXCEEDED)
=============================== ======= ==========================================================

The depth rule is ours rather than graphene's ``depth_limit_validator``: graphene's walks every
fragment again at each spread, so a document of under 1 KiB with fragments spreading fragments
kept one worker busy for seconds. Ours measures each fragment once. The alias rule, likewise,
counts each fragment once but adds that count at every spread, so it bounds the document as if
the fragments were written out: ten aliased lists spreading a fragment of ten aliased fields
spreading another of ten make 1110 aliases, not 30.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from graphql import GraphQLError, ValidationRule, specified_rules
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

DEFAULTS = {
    "STRIPE_GRAPHQL_MAX_DEPTH": 10,
    "STRIPE_GRAPHQL_MAX_ALIASES": 30,
    "STRIPE_GRAPHQL_MAX_OPERATIONS": 5,
    "STRIPE_GRAPHQL_MAX_BODY_BYTES": 100 * 1024,
    "STRIPE_GRAPHQL_PAGE_SIZE": 100,
}


def limit(setting: str) -> int:
    """The value of one of the limit settings, or its default."""
    return int(getattr(settings, setting, DEFAULTS[setting]))


def page_size() -> int:
    """The largest page a connection returns (``STRIPE_GRAPHQL_PAGE_SIZE``, default 100)."""
    return limit("STRIPE_GRAPHQL_PAGE_SIZE")


def limit_error(message: str, code: str, setting: str, value: int, nodes: Any = None) -> GraphQLError:
    """A top-level error naming the limit: ``extensions = {code, setting, limit}``."""
    return GraphQLError(message, nodes, extensions={"code": code, "setting": setting, "limit": value})


class _FragmentWalker:
    """Walks a document's selection sets, measuring each fragment once however often it is spread."""

    def __init__(self, document: DocumentNode, cap: int) -> None:
        self.cap = cap
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.known: dict[str, int] = {}
        self.visiting: set[str] = set()

    def selection_set(self, selection_set: SelectionSetNode | None) -> int:
        raise NotImplementedError

    def fragment(self, name: str) -> int:
        if name in self.known:
            return self.known[name]
        if name in self.visiting or name not in self.fragments:
            return 0  # cycles and unknown fragments are reported by graphql-core's own rules
        self.visiting.add(name)
        count = self.selection_set(self.fragments[name].selection_set)
        self.visiting.discard(name)
        self.known[name] = count
        return count


class _DepthMeasure(_FragmentWalker):
    """Depth of selection sets, each fragment measured once; stops counting past ``cap``."""

    def selection_set(self, selection_set: SelectionSetNode | None, level: int = 0) -> int:
        if selection_set is None or level > self.cap:
            return 0
        deepest = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value.startswith("__") or selection.selection_set is None:
                    continue  # introspection and leaves
                depth = 1 + self.selection_set(selection.selection_set, level + 1)
            elif isinstance(selection, InlineFragmentNode):
                depth = self.selection_set(selection.selection_set, level)
            elif isinstance(selection, FragmentSpreadNode):
                depth = self.fragment(selection.name.value)
            else:  # pragma: no cover - the three kinds above are all GraphQL has
                depth = 0
            deepest = max(deepest, depth)
        return min(deepest, self.cap + 1)


class MaxDepthRule(ValidationRule):
    """Fields nested deeper than ``STRIPE_GRAPHQL_MAX_DEPTH`` below the operation are refused."""

    max_depth: int | None = None

    def enter_document(self, node: DocumentNode, *_args: Any) -> None:
        allowed = self.max_depth if self.max_depth is not None else limit("STRIPE_GRAPHQL_MAX_DEPTH")
        measure = _DepthMeasure(node, allowed)
        for definition in node.definitions:
            if not isinstance(definition, OperationDefinitionNode):
                continue
            if measure.selection_set(definition.selection_set) > allowed:
                name = definition.name.value if definition.name else "anonymous"
                message = (
                    f"Operation '{name}' is nested deeper than the limit of {allowed} levels "
                    "(STRIPE_GRAPHQL_MAX_DEPTH)."
                )
                code, setting = "MAX_DEPTH_EXCEEDED", "STRIPE_GRAPHQL_MAX_DEPTH"
                self.report_error(limit_error(message, code, setting, allowed, definition))


_ALIAS_COUNT_CEILING = 1_000_000  # counts stop here; the message then says "more than"


class _AliasCount(_FragmentWalker):
    """Aliases of a selection set as if every fragment were written out at each of its spreads.

    Each fragment is counted once and its count reused at every spread, so a fragment spread under
    ten aliased fields counts ten times, as the response repeats it ten times. Counts stop growing
    past ``cap``: that much is over any limit already, and the numbers stay small.
    """

    def selection_set(self, selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return 0
        count = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                count += (selection.alias is not None) + self.selection_set(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                count += self.selection_set(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                count += self.fragment(selection.name.value)
            count = min(count, self.cap)
        return count


class MaxAliasesRule(ValidationRule):
    """More than ``STRIPE_GRAPHQL_MAX_ALIASES`` aliased fields in one document are refused.

    Fragments count at every spread, as if written out there: a fragment of ten aliases spread under
    ten aliased fields is a hundred aliases. (Fragments never spread are refused by graphql-core.)
    """

    max_aliases: int | None = None

    def enter_document(self, node: DocumentNode, *_args: Any) -> None:
        allowed = self.max_aliases if self.max_aliases is not None else limit("STRIPE_GRAPHQL_MAX_ALIASES")
        ceiling = _ALIAS_COUNT_CEILING
        counter = _AliasCount(node, ceiling + 1)
        aliases = 0
        for definition in node.definitions:
            if isinstance(definition, OperationDefinitionNode):
                aliases += counter.selection_set(definition.selection_set)
            aliases = min(aliases, ceiling + 1)
        if aliases > allowed:
            amount = f"more than {ceiling}" if aliases > ceiling else str(aliases)
            message = (
                f"The document has {amount} aliases; the limit is {allowed} (STRIPE_GRAPHQL_MAX_ALIASES)."
            )
            self.report_error(
                limit_error(message, "MAX_ALIASES_EXCEEDED", "STRIPE_GRAPHQL_MAX_ALIASES", allowed)
            )


class MaxOperationsRule(ValidationRule):
    """More than ``STRIPE_GRAPHQL_MAX_OPERATIONS`` operations in one document are refused."""

    max_operations: int | None = None

    def enter_document(self, node: DocumentNode, *_args: Any) -> None:
        allowed = self.max_operations if self.max_operations is not None else operations_limit()
        count = sum(isinstance(d, OperationDefinitionNode) for d in node.definitions)
        if count > allowed:
            self.report_error(too_many_operations(count, allowed))


def operations_limit() -> int:
    """``STRIPE_GRAPHQL_MAX_OPERATIONS`` (default 5)."""
    return limit("STRIPE_GRAPHQL_MAX_OPERATIONS")


def too_many_operations(count: int, allowed: int) -> GraphQLError:
    message = f"The request has {count} operations; the limit is {allowed} (STRIPE_GRAPHQL_MAX_OPERATIONS)."
    return limit_error(message, "MAX_OPERATIONS_EXCEEDED", "STRIPE_GRAPHQL_MAX_OPERATIONS", allowed)


def limit_rules(
    max_depth: int | None = None, max_aliases: int | None = None, max_operations: int | None = None
) -> tuple[type[ValidationRule], ...]:
    """The three limit rules alone. Limits left as None are read from settings at each validation."""
    return (
        type("MaxDepthRule", (MaxDepthRule,), {"max_depth": max_depth}),
        type("MaxAliasesRule", (MaxAliasesRule,), {"max_aliases": max_aliases}),
        type("MaxOperationsRule", (MaxOperationsRule,), {"max_operations": max_operations}),
    )


def validation_rules(
    max_depth: int | None = None, max_aliases: int | None = None, max_operations: int | None = None
) -> tuple[type[ValidationRule], ...]:
    """graphql-core's standard rules followed by the limit rules, for ``GraphQLView(validation_rules=...)``.

    graphene-django hands ``validation_rules`` to graphql-core's ``validate`` in place of the
    standard rules, so they are included here. Limits left as None follow the settings.
    """
    return (*specified_rules, *limit_rules(max_depth, max_aliases, max_operations))
