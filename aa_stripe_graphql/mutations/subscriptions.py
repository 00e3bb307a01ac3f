"""Subscriptions: subscribe the signed-in user to a recurring price (or a legacy plan), cancel one.

The retry policy is the domain's (``StripeSubscription.subscribe``): an unknown outcome at Stripe
(network error, timeout, 5xx) keeps the new row and returns it with ``STRIPE_API_ERROR``; asking
again with the same price (or plan), coupon, payment method and metadata finishes that row's frozen
request instead of subscribing twice, and an identical request still being sent is answered with
the in-progress error. A refusal of the first attempt leaves no row; a row Stripe may have acted on
is never deleted.

How the first payment goes is the domain's too: with the PaymentIntents API (the default) a card
that needs the customer (3-D Secure) or is declined leaves the subscription INCOMPLETE, returned
with ``clientSecret`` for stripe.js and, since a card was charged, ``AUTHENTICATION_REQUIRED``; with
no card at all the subscription waits for stripe.js to collect one (INCOMPLETE, ``clientSecret``,
no error). The secret is read from Stripe when the payload is resolved, never stored (an
``idempotencyKey`` replay reads it again).
"""

from __future__ import annotations

from typing import Any

import graphene
from graphene.utils.str_converters import to_camel_case

from aa_stripe.exceptions import (
    AaStripeError,
    StripeInvalidInput,
    StripeInvalidRequestError,
    StripeMethodNotAllowed,
    StripeNoActiveCustomer,
    StripePaymentMethodExpired,
    StripeSubscriptionIncomplete,
)
from aa_stripe.models import (
    StripeCoupon,
    StripePaymentMethod,
    StripePrice,
    StripeSubscription,
    StripeSubscriptionPlan,
)

from ..catalog import StripePriceType
from ..errors import StripeErrorCode, error_from_exception, stripe_error
from ..permissions import has_perm, require_signed_in
from ..types import StripeSubscriptionPlanType, StripeSubscriptionType
from .base import (
    StripeMutation,
    UserError,
    metadata_object,
    object_from_global_id,
    require_stripe_user,
    with_error,
)
from .payment_methods import own_payment_method

_PAYMENT_METHOD = "paymentMethod"
_CLIENT_SECRET = (
    "For stripe.js, to the subscription's owner: the first invoice's confirmation secret while the first "
    "payment waits for the customer (subscription.status is INCOMPLETE: authentication, another card, "
    "or no card given yet; confirmCardPayment), or the trial's SetupIntent secret when there is no card "
    "to charge yet (confirmCardSetup); null otherwise. Never stored: read from Stripe, also on a replay."
)
_CARD_NEEDED_MESSAGE = "The first payment needs a card: confirm it with clientSecret and the customer's card."
_WAITS_MESSAGE = (
    "The first payment waits for the customer (authentication, or another card): "
    "confirm it with clientSecret."
)


def _plan(info: Any, global_id: str) -> StripeSubscriptionPlan:
    plan = object_from_global_id(
        global_id, StripeSubscriptionPlanType, StripeSubscriptionPlan.objects, "plan", info
    )
    if not plan.is_created_at_stripe:
        raise UserError(StripeErrorCode.NOT_ALLOWED, "This plan is not created at Stripe yet.", "plan")
    return plan


def _price(info: Any, global_id: str) -> StripePrice:
    """Any price row, archived ones too: the domain says why one cannot be subscribed to (INVALID)."""
    queryset = StripePrice.objects.select_related("product")
    return object_from_global_id(global_id, StripePriceType, queryset, "price", info, visible_only=False)


def _payment_method(info: Any, user: Any, global_id: str) -> StripePaymentMethod:
    """One of the user's saved payment methods, on a customer still in use (a replaced customer's
    methods cannot pay: Stripe would be asked to charge them for another customer)."""
    method = own_payment_method(info, user, global_id)
    if not (method.customer.is_active and method.customer.is_created_at_stripe):
        raise UserError(
            StripeErrorCode.INVALID,
            "This payment method belongs to a customer that is no longer in use; save the card again.",
            _PAYMENT_METHOD,
        )
    return method


def _coupon(coupon_id: str | None) -> StripeCoupon | None:
    if not coupon_id:
        return None
    coupon = StripeCoupon.objects.filter(coupon_id=coupon_id).first()  # live coupons only
    if coupon is None:
        raise UserError(StripeErrorCode.NOT_FOUND, "No such coupon.", "coupon")
    return coupon


def _offer(
    info: Any, plan: str | None, price: str | None
) -> tuple[StripeSubscriptionPlan | None, StripePrice | None]:
    """The plan or the price asked for: exactly one of them."""
    if plan is None and price is None:
        raise UserError(StripeErrorCode.REQUIRED, "Give the price to subscribe to.", "price")
    if plan is not None and price is not None:
        raise UserError(StripeErrorCode.INVALID, "Give a price or a plan, not both.", "price")
    if price is not None:
        return None, _price(info, price)
    return _plan(info, plan or ""), None


def _error_field(error: AaStripeError, method: StripePaymentMethod | None) -> str | None:
    if isinstance(error, StripeInvalidInput):
        return to_camel_case(error.field) if error.field else None
    if isinstance(error, StripePaymentMethodExpired):
        return _PAYMENT_METHOD
    if isinstance(error, StripeInvalidRequestError) and error.param:
        if error.param.startswith(("coupon", "discounts")):
            return "coupon"
        if method is not None and error.param.startswith(("default_payment_method", "payment_method")):
            return _PAYMENT_METHOD
    return None


class CreateStripeSubscription(StripeMutation):
    """Subscribe the signed-in user to a recurring price (or a legacy plan) at Stripe."""

    # With a card (paymentMethod, or the customer's default) the first invoice is charged at once:
    # paid, the subscription is ACTIVE; when the bank wants the customer or declines, it is INCOMPLETE
    # with clientSecret and AUTHENTICATION_REQUIRED. Without any card (a user without a customer gets
    # one), it is INCOMPLETE with clientSecret and no error: stripe.js collects the card. A trial
    # without a card hands over its SetupIntent's secret. With STRIPE_CHARGE_API = "charges" a first
    # payment that fails is CARD_DECLINED and no subscription is made, and a user without a customer
    # is NO_ACTIVE_CUSTOMER.

    class Input:
        price = graphene.ID(
            description="Global id of the recurring StripePrice to subscribe to (give price or plan)."
        )
        plan = graphene.ID(
            description="Global id of a legacy StripeSubscriptionPlan; "
            "give price instead for new subscriptions."
        )
        payment_method = graphene.ID(
            description="Global id of your StripePaymentMethod to pay with (it becomes the subscription's "
            "default); by default the customer's default payment method, and without any, stripe.js "
            "collects a card with clientSecret."
        )
        coupon = graphene.String(description="A coupon code (couponId) to apply, if any.")
        metadata = graphene.JSONString(description="A flat JSON object of strings, kept at Stripe.")

    subscription = graphene.Field(
        StripeSubscriptionType, description="The new subscription (also when Stripe did not answer)."
    )
    client_secret = graphene.String(description=_CLIENT_SECRET)

    @staticmethod
    def resolve_client_secret(root: Any, info: Any) -> str | None:
        subscription = getattr(root, "subscription", None)
        if subscription is None:
            return None
        return StripeSubscriptionType.resolve_client_secret(subscription, info)

    @classmethod
    def perform(
        cls,
        info: Any,
        plan: str | None = None,
        price: str | None = None,
        payment_method: str | None = None,
        coupon: str | None = None,
        metadata: Any = None,
        **data: Any,
    ) -> dict[str, Any]:
        user = require_stripe_user(info)
        found_plan, found_price = _offer(info, plan, price)
        method = _payment_method(info, user, payment_method) if payment_method is not None else None
        found_coupon = _coupon(coupon)
        values = metadata_object(metadata)
        try:
            row = StripeSubscription.subscribe(
                user,
                found_plan,
                price=found_price,
                coupon=found_coupon,
                metadata=values,
                payment_method=method,
            )
        except StripeNoActiveCustomer:
            raise UserError(
                StripeErrorCode.NO_ACTIVE_CUSTOMER, "Add a card first: you have no active customer."
            ) from None
        except StripeSubscriptionIncomplete as err:
            # Made, not paid: a card was charged and the bank wants the customer (or declined), or
            # there is no card yet and stripe.js collects one. Always an error, so that a client
            # written before clientSecret existed never shows an unpaid subscription as done.
            message = _WAITS_MESSAGE if err.payment_attempted else _CARD_NEEDED_MESSAGE
            errors = [stripe_error(StripeErrorCode.AUTHENTICATION_REQUIRED, message)]
            return {"subscription": err.subscription, "errors": errors}
        except AaStripeError as err:
            kept = getattr(err, "subscription", None)  # a row Stripe may have acted on, kept
            if kept is None:
                return {"errors": [error_from_exception(err, _error_field(err, method))]}
            return with_error("subscription", kept, err, _error_field(err, method))
        return {"subscription": row}


class CancelStripeSubscription(StripeMutation):
    """Cancel a subscription at Stripe: yours, or anyone's with aa_stripe.change_stripesubscription."""

    class Input:
        subscription = graphene.ID(required=True, description="Global id of the StripeSubscription.")
        at_period_end = graphene.Boolean(
            default_value=True,
            description="True (default): it ends at the end of the paid period; false: it ends now.",
        )

    subscription = graphene.Field(StripeSubscriptionType, description="The subscription, as it is now.")

    @classmethod
    def perform(
        cls, info: Any, subscription: str, at_period_end: bool | None = True, **data: Any
    ) -> dict[str, Any]:
        require_signed_in(info)
        at_period_end = at_period_end is not False  # an explicit null keeps the safe default
        queryset = StripeSubscription.objects.select_related("plan", "coupon")
        if not has_perm(info.context, "change_stripesubscription"):
            queryset = queryset.filter(user_id=require_stripe_user(info).pk)
        found = object_from_global_id(
            subscription, StripeSubscriptionType, queryset, "subscription", info, visible_only=False
        )
        if found.status == StripeSubscription.STATUS_CANCELED or (at_period_end and found.at_period_end):
            raise UserError(
                StripeErrorCode.NOT_ALLOWED, "The subscription is already canceled.", "subscription"
            )
        try:
            found.cancel(at_period_end=at_period_end)
        except AaStripeError as err:
            found.refresh_from_db()
            field = "subscription" if isinstance(err, StripeMethodNotAllowed) else None
            return with_error("subscription", found, err, field)
        return {"subscription": found}
