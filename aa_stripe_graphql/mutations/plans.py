"""Subscription plans (staff): create one at Stripe.

An unknown outcome at Stripe keeps the row (its plan id was chosen and its request frozen before
the call) and returns it with ``STRIPE_API_ERROR``. Asking again for the same plan finishes that
row, as do ``create_at_stripe()`` on it (admin action, shell) and ``reconcile_stripe_operations``:
Stripe never gets a second plan. Any other failure leaves no row.
"""

from __future__ import annotations

from typing import Any

import graphene

from aa_stripe.conf import default_currency
from aa_stripe.exceptions import AaStripeError
from aa_stripe.models import StripeSubscriptionPlan

from ..enums import StripePlanInterval
from ..permissions import require_perm
from ..types import StripeSubscriptionPlanType
from .base import StripeMutation, clean, metadata_object, with_error

_PLAN_INPUTS = (
    "name",
    "amount",
    "currency",
    "interval",
    "interval_count",
    "trial_period_days",
    "statement_descriptor",
)


class CreateStripeSubscriptionPlan(StripeMutation):
    """Create a plan (and its product) at Stripe (staff with aa_stripe.add_stripesubscriptionplan)."""

    class Input:
        name = graphene.String(required=True, description="Name shown on invoices and to users.")
        amount = graphene.Int(required=True, description="Price per interval, in the currency's minor unit.")
        currency = graphene.String(
            description="Lower-case ISO currency code; the default currency if omitted."
        )
        interval = graphene.Argument(StripePlanInterval, required=True, description="Billing period unit.")
        interval_count = graphene.Int(default_value=1, description="Billing period length, in intervals.")
        trial_period_days = graphene.Int(default_value=0, description="Free days before the first charge.")
        statement_descriptor = graphene.String(
            description="Text on the card statement (up to 22 characters)."
        )
        metadata = graphene.JSONString(description="A flat JSON object of strings, kept at Stripe.")

    plan = graphene.Field(StripeSubscriptionPlanType, description="The new plan.")

    @classmethod
    def perform(cls, info: Any, name: str, amount: int, interval: Any, **data: Any) -> dict[str, Any]:
        require_perm(info, "add_stripesubscriptionplan")
        plan = StripeSubscriptionPlan(
            name=name,
            amount=amount,
            currency=(data.get("currency") or default_currency()).lower(),
            interval=getattr(interval, "value", interval),
            interval_count=1 if data.get("interval_count") is None else data["interval_count"],
            trial_period_days=data.get("trial_period_days") or 0,
            statement_descriptor=data.get("statement_descriptor") or "",
            metadata=metadata_object(data.get("metadata")),
        )
        clean(plan, _PLAN_INPUTS)  # amount in its currency (0: a free plan), statement descriptor limits
        # The same plan asked for again after an unknown outcome: finish that row, not a second one.
        plan = StripeSubscriptionPlan.unfinished_like(plan) or plan
        made_here = plan.pk is None
        try:
            plan.create_at_stripe()  # commits its plan before Stripe is called: no transaction here
        except AaStripeError as err:
            if plan.creation_unfinished:
                return with_error("plan", plan, err)  # Stripe may have the plan: the row is kept
            if made_here and plan.pk is not None:
                plan.delete()  # refused: nothing at Stripe, nothing kept (the journal keeps the refusal)
            raise
        return {"plan": plan}
