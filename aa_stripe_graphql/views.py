"""The ready GraphQL view: this package's schema, its limits, CSRF kept, no request-wide transaction.

``aa_stripe_graphql.urls`` maps ``""`` to :func:`graphql_view`; a host with its own schema builds
one with ``graphql_view(schema=my_schema)`` or passes :func:`aa_stripe_graphql.validation_rules`
to its own ``GraphQLView``.

CSRF: the view is ``csrf_exempt`` for Django's middleware and runs the check of the CSRF
middleware that ``MIDDLEWARE`` lists itself (``CsrfViewMiddleware`` or a subclass; none listed,
none run, as before), so that a refusal is answered as GraphQL JSON (403, ``CSRF_FAILED``) rather
than Django's HTML page. What is refused is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connections, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotAllowed
from django.http.request import HttpHeaders, RawPostDataException
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.decorators import method_decorator
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt
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


class CsrfFailed(Exception):
    """The host's CSRF middleware refused the request; ``reason`` is Django's ("CSRF cookie not set.")."""

    def __init__(self, reason: str, refusal: HttpResponse) -> None:
        self.reason = reason
        self.refusal = refusal
        super().__init__(reason)


@cache
def _json_refusing(middleware_class: type[CsrfViewMiddleware]) -> type[CsrfViewMiddleware]:
    """``middleware_class`` whose refusal is raised as :class:`CsrfFailed` instead of answered."""

    class JsonRefusing(middleware_class):
        def _reject(self, request: HttpRequest, reason: str) -> HttpResponse | None:
            # The host's own _reject first: it logs to django.security.csrf as before, and a
            # subclass that only reports (returns None) still lets the request through.
            refusal = super()._reject(request, reason)
            if refusal is None:
                return None
            raise CsrfFailed(reason, refusal)

    return JsonRefusing


@cache
def _csrf_middleware(middleware: tuple[str, ...]) -> tuple[type[CsrfViewMiddleware], ...]:
    classes = []
    for dotted_path in middleware:
        candidate = import_string(dotted_path)
        if isinstance(candidate, type) and issubclass(candidate, CsrfViewMiddleware):
            classes.append(_json_refusing(candidate))
    return tuple(classes)


def _not_exempt(request: HttpRequest) -> None:
    """The callback the CSRF check is told about: the real view is marked ``csrf_exempt``."""


def check_csrf(request: HttpRequest) -> HttpResponse | None:
    """Run the CSRF middleware of ``settings.MIDDLEWARE`` on ``request`` as it would have run before
    this view; raise :class:`CsrfFailed` on a refusal, or return another response it answered."""

    def no_response(request: HttpRequest) -> None:  # pragma: no cover - process_view never calls it
        return None

    for middleware_class in _csrf_middleware(tuple(settings.MIDDLEWARE)):
        answer = middleware_class(no_response).process_view(request, _not_exempt, (), {})
        if answer is not None:
            return answer
    return None


def csrf_failed_message() -> str:
    """What a client must send, in the names this project's settings use."""
    if settings.CSRF_HEADER_NAME == "HTTP_X_CSRFTOKEN":
        header = "X-CSRFToken"
    else:
        header = HttpHeaders.parse_header_name(settings.CSRF_HEADER_NAME) or settings.CSRF_HEADER_NAME
    if settings.CSRF_USE_SESSIONS:
        token = "the CSRF token of your session (django.middleware.csrf.get_token in a page of this site)"
    else:
        token = f"the value of the {settings.CSRF_COOKIE_NAME!r} cookie (any GET of this URL sets it)"
    return (
        "CSRF verification failed. This view authenticates with the session cookie, so a POST must "
        f"also send {token} in an {header!r} header, along with the cookies; a page on another origin "
        "must also be listed in CSRF_TRUSTED_ORIGINS. A client without a session (curl, a mobile app) "
        "should call a token-authenticated view of the host instead, built with "
        "GraphQLView(validation_rules=aa_stripe_graphql.validation_rules())."
    )


FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def missing_query_hint(request: HttpRequest, content_type: str) -> str | None:
    """Why a POST that found no query probably has one after all, or None."""
    if request.method != "POST" or content_type in ("application/json", "application/graphql"):
        return None
    send_json = 'send it as JSON, {"query": "..."}, with the header "Content-Type: application/json".'
    if content_type in FORM_CONTENT_TYPES:
        keys = list(request.POST)
        if len(keys) == 1 and keys[0].lstrip().startswith(("{", "[")):
            # curl -d '{"query": ...}' sends JSON as a form body whose only key is the JSON text.
            return (
                f"The body looks like JSON but came as {content_type} (curl -d sends that unless "
                f"told otherwise): {send_json}"
            )
        return f"A form body needs a field named query; or {send_json}"
    shown = content_type or "no Content-Type"
    return f"The body came with {shown}: {send_json}"


class StripeGraphQLView(GraphQLView):
    """graphene-django's ``GraphQLView`` with this package's schema and limits.

    GraphiQL is served when ``settings.DEBUG`` is on (read per request). Unexpected failures
    outside resolvers (parsing, validation) are logged and answered as ``INTERNAL_ERROR``.
    """

    def __init__(self, schema: Any = None, graphiql: bool | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("validation_rules", DEFAULT_RULES)
        super().__init__(schema=schema or stripe_schema, **kwargs)
        self.graphiql = bool(settings.DEBUG if graphiql is None else graphiql) and not self.batch

    @method_decorator(csrf_exempt)
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # csrf_exempt only moves the CSRF check here, where a refusal can be answered as GraphQL.
        try:
            answer = check_csrf(request)
        except CsrfFailed as failure:
            return self.csrf_failure(request, failure)
        if answer is not None:
            return answer
        return super().dispatch(request, *args, **kwargs)

    def csrf_failure(self, request: HttpRequest, failure: CsrfFailed) -> HttpResponse:
        """403 ``{"errors": [{"message", "extensions": {"code": "CSRF_FAILED"}}]}``; Django's reason
        is added as ``extensions.reason`` in DEBUG only, as Django's own page shows it."""
        extensions: dict[str, Any] = {"code": "CSRF_FAILED"}
        if settings.DEBUG:
            extensions["reason"] = failure.reason
        error = {"message": csrf_failed_message(), "extensions": extensions}
        response = HttpResponse(
            self.json_encode(request, {"errors": [error]}), status=403, content_type="application/json"
        )
        # Django logged the refusal already (django.security.csrf); its handler would log this
        # answer a second time as django.request's "Forbidden".
        response._has_been_logged = getattr(failure.refusal, "_has_been_logged", False)
        return response

    def parse_body(self, request: HttpRequest) -> Any:
        """Refuse a body (or GET query string) above ``STRIPE_GRAPHQL_MAX_BODY_BYTES`` before parsing."""
        check_body_size(request)
        data = super().parse_body(request)
        if self.batch and isinstance(data, list) and len(data) > operations_limit():
            raise LimitExceeded(too_many_operations(len(data), operations_limit()))
        return data

    def execute_graphql_request(
        self,
        request: HttpRequest,
        data: Any,
        query: str | None,
        variables: Any,
        operation_name: str | None,
        show_graphiql: bool = False,
    ) -> Any:
        if not query and not show_graphiql:
            hint = missing_query_hint(request, self.get_content_type(request))
            if hint:
                raise HttpError(HttpResponseBadRequest(f"Must provide query string. {hint}"))
        try:
            return super().execute_graphql_request(
                request, data, query, variables, operation_name, show_graphiql
            )
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
        if isinstance(error, HttpError) and isinstance(error.response, HttpResponseNotAllowed):
            # e.g. a mutation sent over GET: coded like every other error of this view
            return {"message": error.message, "extensions": {"code": "METHOD_NOT_ALLOWED"}}
        return GraphQLView.format_error(error)


def graphql_view(**initkwargs: Any) -> Callable[..., HttpResponse]:
    """``StripeGraphQLView.as_view(**initkwargs)`` marked ``non_atomic_requests`` on every database:
    a rollback after Stripe acted would lose this project's record of it."""
    view = StripeGraphQLView.as_view(**initkwargs)
    for alias in connections:
        view = transaction.non_atomic_requests(using=alias)(view)
    return view
