"""Subscriptions: subscribe the signed-in user to a plan, cancel a subscription.

The retry policy is the domain's (``StripeSubscription.subscribe``): an unknown outcome at Stripe
(network error, timeout, 5xx) keeps the new row and returns it with ``STRIPE_API_ERROR``; asking
again with the same plan, coupon and metadata finishes that row's frozen request instead of
subscribing twice, and an identical request still being sent is answered with the in-progress
error. A refusal of the first attempt leaves no row; a row Stripe may have acted on is never
deleted.
"""

from __future__ import annotations

from typing import Any

import graphene

from aa_stripe.exceptions import (
    AaStripeError,
    StripeInvalidRequestError,
    StripeMethodNotAllowed,
    StripeNoActiveCustomer,
)
from aa_stripe.models import StripeCoupon, StripeSubscription, StripeSubscriptionPlan

from ..errors import StripeErrorCode, error_from_exception
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


def _plan(info: Any, global_id: str) -> StripeSubscriptionPlan:
    plan = object_from_global_id(
        global_id, StripeSubscriptionPlanType, StripeSubscriptionPlan.objects, "plan", info
    )
    if not plan.is_created_at_stripe:
        raise UserError(StripeErrorCode.NOT_ALLOWED, "This plan is not created at Stripe yet.", "plan")
    return plan


def _coupon(coupon_id: str | None) -> StripeCoupon | None:
    if not coupon_id:
        return None
    coupon = StripeCoupon.objects.filter(coupon_id=coupon_id).first()  # live coupons only
    if coupon is None:
        raise UserError(StripeErrorCode.NOT_FOUND, "No such coupon.", "coupon")
    return coupon


def _error_field(error: AaStripeError) -> str | None:
    if isinstance(error, StripeInvalidRequestError) and error.param:
        return "coupon" if error.param.startswith(("coupon", "discounts")) else None
    return None


class CreateStripeSubscription(StripeMutation):
    """Subscribe the signed-in user (who needs an active customer, i.e. a card) to a plan at Stripe."""

    class Input:
        plan = graphene.ID(required=True, description="Global id of the StripeSubscriptionPlan.")
        coupon = graphene.String(description="A coupon code (couponId) to apply, if any.")
        metadata = graphene.JSONString(description="A flat JSON object of strings, kept at Stripe.")

    subscription = graphene.Field(
        StripeSubscriptionType, description="The new subscription (also when Stripe did not answer)."
    )

    @classmethod
    def perform(
        cls, info: Any, plan: str, coupon: str | None = None, metadata: Any = None, **data: Any
    ) -> dict[str, Any]:
        user = require_stripe_user(info)
        found_plan = _plan(info, plan)
        found_coupon = _coupon(coupon)
        values = metadata_object(metadata)
        try:
            row = StripeSubscription.subscribe(user, found_plan, coupon=found_coupon, metadata=values)
        except StripeNoActiveCustomer:
            raise UserError(
                StripeErrorCode.NO_ACTIVE_CUSTOMER, "Add a card first: you have no active customer."
            ) from None
        except AaStripeError as err:
            kept = getattr(err, "subscription", None)  # a row Stripe may have acted on, kept
            if kept is None:
                return {"errors": [error_from_exception(err, _error_field(err))]}
            return with_error("subscription", kept, err, _error_field(err))
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
