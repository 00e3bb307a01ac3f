"""The ready GraphQL view: this package's schema, its limits, CSRF kept, no request-wide transaction.

``aa_stripe_graphql.urls`` maps ``""`` to :func:`graphql_view`; a host with its own schema builds
one with ``graphql_view(schema=my_schema)`` or passes :func:`aa_stripe_graphql.validation_rules`
to its own ``GraphQLView``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connections, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.http.request import RawPostDataException
from graphene_django.views import GraphQLView, HttpError
from graphql import ExecutionResult, GraphQLError

from .errors import internal_error, logger
from .limits import limit, limit_error, operations_limit, too_many_operations, validation_rules
from .schema import schema as stripe_schema

# Built once; the limits themselves are read from settings at each validation.
DEFAULT_RULES = validation_rules()


class LimitExceeded(HttpError):
    """A limit checked before GraphQL parsing; answered as ``{"errors": [<the GraphQL error>]}``."""

    def __init__(self, error: GraphQLError, status: int = 400) -> None:
        self.error = error
        super().__init__(HttpResponse(status=status), error.message)


def body_too_large(size: int) -> LimitExceeded:
    allowed = limit("STRIPE_GRAPHQL_MAX_BODY_BYTES")
    message = f"The request has {size} bytes; the limit is {allowed} (STRIPE_GRAPHQL_MAX_BODY_BYTES)."
    error = limit_error(message, "MAX_BODY_BYTES_EXCEEDED", "STRIPE_GRAPHQL_MAX_BODY_BYTES", allowed)
    return LimitExceeded(error, status=413)


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def check_body_size(request: HttpRequest) -> None:
    """The declared length and the query string first, then the body actually read (when it can
    still be read: a form body was already parsed by Django, within its own upload limits)."""
    allowed = limit("STRIPE_GRAPHQL_MAX_BODY_BYTES")
    declared = max(_declared_length(request), len(request.META.get("QUERY_STRING", "")))
    if declared > allowed:
        raise body_too_large(declared)
    try:
        size = len(request.body)
    except RequestDataTooBig:
        raise body_too_large(_declared_length(request)) from None
    except RawPostDataException:
        return
    if size > allowed:
        raise body_too_large(size)


class StripeGraphQLView(GraphQLView):
    """graphene-django's ``GraphQLView`` with this package's schema and limits.

    GraphiQL is served when ``settings.DEBUG`` is on (read per request). Unexpected failures
    outside resolvers (parsing, validation) are logged and answered as ``INTERNAL_ERROR``.
    """

    def __init__(self, schema: Any = None, graphiql: bool | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("validation_rules", DEFAULT_RULES)
        super().__init__(schema=schema or stripe_schema, **kwargs)
        self.graphiql = bool(settings.DEBUG if graphiql is None else graphiql) and not self.batch

    def parse_body(self, request: HttpRequest) -> Any:
        """Refuse a body (or GET query string) above ``STRIPE_GRAPHQL_MAX_BODY_BYTES`` before parsing."""
        check_body_size(request)
        data = super().parse_body(request)
        if self.batch and isinstance(data, list) and len(data) > operations_limit():
            raise LimitExceeded(too_many_operations(len(data), operations_limit()))
        return data

    def execute_graphql_request(self, request: HttpRequest, data: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_graphql_request(request, data, *args, **kwargs)
        except HttpError:
            raise
        except Exception:
            logger.exception("Unexpected error while parsing or validating a GraphQL request")
            return ExecutionResult(data=None, errors=[internal_error()])

    @staticmethod
    def format_error(error: Any) -> dict[str, Any]:
        if isinstance(error, LimitExceeded):
            return error.error.formatted
        if isinstance(error, HttpError) and isinstance(error.response, HttpResponseBadRequest):
            return {"message": error.message, "extensions": {"code": "BAD_REQUEST"}}
        return GraphQLView.format_error(error)


def graphql_view(**initkwargs: Any) -> Callable[..., HttpResponse]:
    """``StripeGraphQLView.as_view(**initkwargs)`` marked ``non_atomic_requests`` on every database:
    a rollback after Stripe acted would lose this project's record of it."""
    view = StripeGraphQLView.as_view(**initkwargs)
    for alias in connections:
        view = transaction.non_atomic_requests(using=alias)(view)
    return view
