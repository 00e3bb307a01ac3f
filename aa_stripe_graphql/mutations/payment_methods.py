"""Saved payment methods the modern way (GRAPHQL.md, "Payments with authentication"): a SetupIntent
that stripe.js confirms (3-D Secure included), then the saved PaymentMethod; the default; detaching.

What a retry does is the domain's (``StripeCustomer.get_or_create_for_user()``,
``StripeSetupIntent.create_for_customer()`` / ``complete()``, ``StripePaymentMethod.set_as_default()`` /
``detach()``, the operations journal). Only the owner acts on its payment methods and SetupIntents:
another user's (staff included) looks exactly like an unknown one.
"""

from __future__ import annotations

from typing import Any

import graphene

from aa_stripe.exceptions import (
    StripeInvalidRequestError,
    StripePaymentMethodExpired,
    StripeSetupIntentNotSucceeded,
)
from aa_stripe.models import StripeCustomer, StripePaymentMethod, StripeSetupIntent

from ..errors import StripeErrorCode, error_from_exception, stripe_error
from ..types import StripeCustomerType, StripePaymentMethodType, StripeSetupIntentType
from .base import StripeMutation, UserError, object_from_global_id, require_stripe_user

_PAYMENT_METHOD = "paymentMethod"
_SETUP_INTENT = "setupIntent"


def own_payment_method(info: Any, owner: Any, global_id: str) -> StripePaymentMethod:
    """The owner's payment method behind ``global_id``, else NOT_FOUND on ``paymentMethod`` (staff
    who may see others' do not act on them)."""
    queryset = StripePaymentMethod.objects.select_related("customer")
    method = object_from_global_id(global_id, StripePaymentMethodType, queryset, _PAYMENT_METHOD, info)
    if method.customer.user_id != owner.pk:
        raise UserError(StripeErrorCode.NOT_FOUND, "No StripePaymentMethod with this id.", _PAYMENT_METHOD)
    return method


def _customer_of(row: StripePaymentMethod | StripeSetupIntent) -> StripeCustomer:
    """The customer as it is now (the domain may have changed its default through another instance)."""
    return StripeCustomer.objects.get(pk=row.customer_id)


class CreateStripeSetupIntent(StripeMutation):
    """Start saving a card: a SetupIntent for stripe.js (and your Stripe customer, if you have none)."""

    # Without a customer one is created at Stripe with no card. stripe.js confirms the SetupIntent with
    # its clientSecret (confirmCardSetup/confirmSetup); completeStripeSetupIntent then saves the method.

    setup_intent = graphene.Field(
        StripeSetupIntentType, description="The new SetupIntent, with its clientSecret for stripe.js."
    )
    customer = graphene.Field(StripeCustomerType, description="Your customer the SetupIntent saves to.")

    @classmethod
    def perform(cls, info: Any, **data: Any) -> dict[str, Any]:
        owner = require_stripe_user(info)
        customer = StripeCustomer.get_or_create_for_user(owner)
        intent = StripeSetupIntent.create_for_customer(customer)
        return {"setup_intent": intent, "customer": customer}


class CompleteStripeSetupIntent(StripeMutation):
    """Save the payment method of your confirmed SetupIntent (the default when you have none)."""

    # Mirrored now (the webhook does the same later). A SetupIntent that failed or still waits for the
    # customer (3-D Secure) is INVALID on setupIntent, and nothing is saved.

    class Input:
        setup_intent = graphene.String(
            required=True, description="Stripe's id of your SetupIntent (seti_...), as stripe.js returned it."
        )

    customer = graphene.Field(StripeCustomerType, description="Your customer with the saved payment method.")
    payment_method = graphene.Field(StripePaymentMethodType, description="The saved payment method.")

    @classmethod
    def perform(cls, info: Any, setup_intent: str, **data: Any) -> dict[str, Any]:
        owner = require_stripe_user(info)
        intent = None
        if setup_intent:
            intent = (
                StripeSetupIntent.objects.select_related("customer")
                .filter(stripe_setup_intent_id=setup_intent, customer__user_id=owner.pk)
                .first()
            )
        if intent is None:
            raise UserError(StripeErrorCode.NOT_FOUND, "No SetupIntent of yours with this id.", _SETUP_INTENT)
        try:
            method = intent.complete()
        except StripeSetupIntentNotSucceeded as err:
            message = err.message
            if err.status and err.status not in message:
                message = f"{message} (status {err.status})"
            raise UserError(StripeErrorCode.INVALID, message, _SETUP_INTENT) from None
        except StripeInvalidRequestError as err:
            return {"errors": [error_from_exception(err, _SETUP_INTENT)]}
        customer = _customer_of(method)
        method.customer = customer
        return {"customer": customer, "payment_method": method}


class SetDefaultStripePaymentMethod(StripeMutation):
    """Make one of your payment methods the default, for invoices and off-session payments."""

    # An expired card, or one no longer attached at Stripe (its row goes), is INVALID on paymentMethod.

    class Input:
        payment_method = graphene.ID(required=True, description="Global id of your StripePaymentMethod.")

    customer = graphene.Field(StripeCustomerType, description="Your customer with its new default.")
    payment_method = graphene.Field(StripePaymentMethodType, description="The new default payment method.")

    @classmethod
    def perform(cls, info: Any, payment_method: str, **data: Any) -> dict[str, Any]:
        owner = require_stripe_user(info)
        method = own_payment_method(info, owner, payment_method)
        try:
            customer = method.set_as_default()
        except StripePaymentMethodExpired as err:
            raise UserError(StripeErrorCode.INVALID, err.message, _PAYMENT_METHOD) from None
        except StripeInvalidRequestError as err:
            if not StripePaymentMethod.objects.filter(pk=method.pk).exists():
                message = "This payment method is no longer attached to your customer at Stripe."
                return {"errors": [stripe_error(StripeErrorCode.INVALID, message, _PAYMENT_METHOD)]}
            if "payment_method" in (err.param or ""):
                return {"errors": [stripe_error(StripeErrorCode.INVALID, err.message, _PAYMENT_METHOD)]}
            raise
        method.customer = customer
        return {"customer": customer, "payment_method": method}


class DetachStripePaymentMethod(StripeMutation):
    """Remove one of your payment methods: detached at Stripe, deleted here (the default too)."""

    # Detaching is final at Stripe. A removed default leaves the customer without one.

    class Input:
        payment_method = graphene.ID(required=True, description="Global id of your StripePaymentMethod.")

    customer = graphene.Field(StripeCustomerType, description="Your customer without the payment method.")

    @classmethod
    def perform(cls, info: Any, payment_method: str, **data: Any) -> dict[str, Any]:
        owner = require_stripe_user(info)
        method = own_payment_method(info, owner, payment_method)
        method.detach()
        return {"customer": _customer_of(method)}
