"""User-fixable errors (``errors`` in payloads) and the top-level errors of this package."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import graphene
from graphql import GraphQLError

from aa_stripe.exceptions import AaStripeError, FailureKind

logger = logging.getLogger("aa_stripe_graphql")


class StripeErrorCode(graphene.Enum):
    """What went wrong, in a form a front-end can act on."""

    INVALID = "invalid"
    REQUIRED = "required"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    NOT_ALLOWED = "not_allowed"
    NO_ACTIVE_CUSTOMER = "no_active_customer"
    CARD_DECLINED = "card_declined"
    STRIPE_API_ERROR = "stripe_api_error"
    IN_PROGRESS = "in_progress"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    AUTHENTICATION_REQUIRED = "authentication_required"

    @property
    def description(self) -> str:
        return {
            "invalid": "The value is not valid.",
            "required": "The value is missing.",
            "not_found": "No such object that you may see.",
            "already_exists": "An object with this identifier exists already.",
            "not_allowed": "The object is not in a state that allows this (e.g. already canceled).",
            "no_active_customer": "The user has no card on file (no active Stripe customer).",
            "card_declined": "The card was declined; declineCode says why.",
            "stripe_api_error": "Stripe could not be reached or failed; the outcome may be unknown.",
            "in_progress": "A write for this object (or with this idempotencyKey) is in flight; try again.",
            "idempotency_key_reused": "This idempotencyKey was used before with another input.",
            "authentication_required": "The payment waits for the customer (3-D Secure, or another card): "
            "the payload still returns the object; its owner pays on-session with its clientSecret.",
        }[self.value]


# REQUIRED has no kind: only this package's own input checks (UserError) report it.
_CODE_OF_KIND: dict[FailureKind, StripeErrorCode] = {
    "invalid": StripeErrorCode.INVALID,
    "not_found": StripeErrorCode.NOT_FOUND,
    "already_exists": StripeErrorCode.ALREADY_EXISTS,
    "not_allowed": StripeErrorCode.NOT_ALLOWED,
    "in_progress": StripeErrorCode.IN_PROGRESS,
    "no_active_customer": StripeErrorCode.NO_ACTIVE_CUSTOMER,
    "card_declined": StripeErrorCode.CARD_DECLINED,
    "authentication_required": StripeErrorCode.AUTHENTICATION_REQUIRED,
    "stripe_unavailable": StripeErrorCode.STRIPE_API_ERROR,
    "stripe_error": StripeErrorCode.STRIPE_API_ERROR,
}


def error_code_for(error: AaStripeError) -> StripeErrorCode:
    """The code for one of the library's exceptions, from its ``kind``; ``INVALID`` for a kind this
    package does not know (a host's own subclass)."""
    return _CODE_OF_KIND.get(error.kind, StripeErrorCode.INVALID)


class StripeError(graphene.ObjectType):
    """Something the person using the front-end can fix; nothing was half-saved."""

    field = graphene.String(description="camelCase name of the input field, or null when not tied to one.")
    message = graphene.String(required=True, description="What went wrong, for people.")
    code = graphene.Field(StripeErrorCode, required=True, description="What went wrong, for programs.")
    decline_code = graphene.String(description="Stripe's decline code, when a card was declined.")

    class Meta:
        name = "StripeError"


def stripe_error(
    code: StripeErrorCode, message: str, field: str | None = None, decline_code: str | None = None
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
    decline_code = None
    if code is StripeErrorCode.CARD_DECLINED:
        decline_code = getattr(error, "decline_code", None) or getattr(error, "code", None) or None
    message = error.message
    if code is StripeErrorCode.STRIPE_API_ERROR:
        transient = error.kind == "stripe_unavailable"
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
