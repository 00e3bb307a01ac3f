"""Machine-readable codes for what went wrong, shared by every front door (GraphQL, admin, ...)."""

from __future__ import annotations

import enum

from aa_stripe import exceptions


class ErrorCode(enum.Enum):
    INVALID = "invalid"
    REQUIRED = "required"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    NOT_ALLOWED = "not_allowed"
    NO_ACTIVE_CUSTOMER = "no_active_customer"
    CARD_DECLINED = "card_declined"
    STRIPE_API_ERROR = "stripe_api_error"


def error_code_for(error: exceptions.AaStripeError) -> ErrorCode:
    """The code a person using a front-end can act on, for one of the library's exceptions."""
    if isinstance(error, exceptions.StripeCardError):
        return ErrorCode.CARD_DECLINED
    if isinstance(error, exceptions.StripeNoActiveCustomer):
        return ErrorCode.NO_ACTIVE_CUSTOMER
    if isinstance(error, exceptions.StripeCouponAlreadyExists):
        return ErrorCode.ALREADY_EXISTS
    if isinstance(error, exceptions.StripeInvalidRequestError):
        return ErrorCode.NOT_FOUND if error.code == "resource_missing" else ErrorCode.INVALID
    if isinstance(error, exceptions.StripeAPIError):
        return ErrorCode.STRIPE_API_ERROR
    if isinstance(error, exceptions.StripeMethodNotAllowed):
        return ErrorCode.NOT_ALLOWED
    return ErrorCode.INVALID
