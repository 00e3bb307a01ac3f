"""Enums declared here, not generated from model choices: generated names change with a host's
GRAPHENE settings, and clients are written against these."""

from __future__ import annotations

import graphene


class StripeSubscriptionStatus(graphene.Enum):
    """Stripe's status of a subscription."""

    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    PAUSED = "paused"

    @property
    def description(self) -> str:
        return f"The subscription is {self.value.replace('_', ' ')}."


class StripePlanInterval(graphene.Enum):
    """How often a plan bills."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"

    @property
    def description(self) -> str:
        return f"Billed every {self.value} (times the plan's intervalCount)."


class StripeCouponDuration(graphene.Enum):
    """How long a coupon's discount lasts."""

    FOREVER = "forever"
    ONCE = "once"
    REPEATING = "repeating"

    @property
    def description(self) -> str:
        return {
            "forever": "Every invoice is discounted.",
            "once": "The first invoice is discounted.",
            "repeating": "Invoices of durationInMonths months are discounted.",
        }[self.value]
