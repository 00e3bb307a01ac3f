"""User-fixable errors (``errors`` in payloads) and the top-level errors of this package."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import graphene
from graphql import GraphQLError

from aa_stripe.error_codes import ErrorCode, error_code_for
from aa_stripe.exceptions import AaStripeError, StripeAPIError, StripeInternalError

logger = logging.getLogger("aa_stripe_graphql")

_CODE_DESCRIPTIONS = {
    ErrorCode.INVALID: "The value is not valid.",
    ErrorCode.REQUIRED: "The value is missing.",
    ErrorCode.NOT_FOUND: "No such object that you may see.",
    ErrorCode.ALREADY_EXISTS: "An object with this identifier exists already.",
    ErrorCode.NOT_ALLOWED: "The object is not in a state that allows this (e.g. already canceled).",
    ErrorCode.NO_ACTIVE_CUSTOMER: "The user has no card on file (no active Stripe customer).",
    ErrorCode.CARD_DECLINED: "The card was declined; declineCode says why.",
    ErrorCode.STRIPE_API_ERROR: "Stripe could not be reached or failed; the outcome may be unknown.",
}


def _describe_code(self: graphene.Enum) -> str:
    return _CODE_DESCRIPTIONS[ErrorCode(self.value)]


# Mirrors aa_stripe.error_codes.ErrorCode, value for value.
StripeErrorCode = type(
    "StripeErrorCode",
    (graphene.Enum,),
    {
        **{code.name: code.value for code in ErrorCode},
        "__doc__": "What went wrong, in a form a front-end can act on.",
        "description": property(_describe_code),
    },
)


class StripeError(graphene.ObjectType):
    """Something the person using the front-end can fix; nothing was half-saved."""

    field = graphene.String(description="camelCase name of the input field, or null when not tied to one.")
    message = graphene.String(required=True, description="What went wrong, for people.")
    code = graphene.Field(StripeErrorCode, required=True, description="What went wrong, for programs.")
    decline_code = graphene.String(description="Stripe's decline code, when a card was declined.")

    class Meta:
        name = "StripeError"


def stripe_error(
    code: ErrorCode, message: str, field: str | None = None, decline_code: str | None = None
) -> dict[str, Any]:
    return {"field": field, "message": message, "code": code.value, "decline_code": decline_code}


# Shown instead of Stripe's text for STRIPE_API_ERROR: that text is for developers (stripe-python's
# network errors, a masked API key on a 401) and is logged instead.
UNREACHABLE_MESSAGE = "Stripe could not be reached; nothing was done twice. Please try again."
SERVICE_ERROR_MESSAGE = "Payment service error."


def error_from_exception(error: AaStripeError, field: str | None = None) -> dict:
    """A payload error for one of the library's exceptions.

    A declined card keeps Stripe's message (it is written for the customer), and so do refused
    requests (they name the parameter, never a key). Other Stripe failures (network, 5xx, rate
    limits, a bad API key, a reused idempotency key) get a fixed message; the detail goes to the
    ``aa_stripe_graphql`` logger.
    """
    code = error_code_for(error)
    decline_code = getattr(error, "decline_code", None) or (
        error.code if isinstance(error, StripeAPIError) and error.code else None
    )
    if code is not ErrorCode.CARD_DECLINED:
        decline_code = None
    message = error.message
    if code is ErrorCode.STRIPE_API_ERROR:
        transient = isinstance(error, StripeInternalError)
        message = UNREACHABLE_MESSAGE if transient else SERVICE_ERROR_MESSAGE
        logger.log(
            logging.WARNING if transient else logging.ERROR,
            "Stripe failure shown as %r: %s: %s (HTTP %s, request %s)",
            message,
            type(error).__name__,
            error.message,
            getattr(error, "http_status", None),
            getattr(error, "request_id", None),
        )
    return stripe_error(code, message, field, decline_code)


def permission_denied(message: str = "You do not have permission to do this.") -> GraphQLError:
    return GraphQLError(message, extensions={"code": "PERMISSION_DENIED"})


def internal_error() -> GraphQLError:
    return GraphQLError("Internal error.", extensions={"code": "INTERNAL_ERROR"})


F = TypeVar("F", bound=Callable[..., Any])


def masked(resolver: F) -> F:
    """Let GraphQL errors through; log anything else in full and raise ``INTERNAL_ERROR`` instead,
    so no exception text, SQL or key reaches a client, also in a host's own GraphQL view."""

    @functools.wraps(resolver)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return resolver(*args, **kwargs)
        except GraphQLError:
            raise
        except Exception as err:
            logger.exception("Unexpected error in %s", getattr(resolver, "__qualname__", resolver))
            raise internal_error() from err

    return wrapper  # type: ignore[return-value]
