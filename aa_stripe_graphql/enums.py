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


class StripePaymentStatus(graphene.Enum):
    """Where a charge's payment stands: its PaymentIntent's status, plus PENDING and FAILED of ours."""

    PENDING = "pending"
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    FAILED = "failed"

    @property
    def description(self) -> str:
        return {
            "pending": "Not sent to Stripe yet (or sent and its answer not known yet).",
            "requires_payment_method": "Waits for the customer to pay on-session (payStripeCharge): the bank "
            "asked for authentication off-session (failureCode authentication_required), or another "
            "payment method is needed.",
            "requires_confirmation": "Waits for the customer to confirm the payment on-session (stripe.js).",
            "requires_action": "Waits for the customer to authenticate (3-D Secure) on-session (stripe.js).",
            "processing": "Stripe is processing the payment; the outcome comes later.",
            "requires_capture": "Authorized; the money is taken once the payment is captured.",
            "succeeded": "Paid: Stripe took the money.",
            "canceled": "Canceled; it can no longer be paid.",
            "failed": "The last attempt was declined (failureCode and declineCode say why); nothing is "
            "retried off-session, the owner may pay it on-session (payStripeCharge).",
        }[self.value]


class StripeInvoiceStatus(graphene.Enum):
    """Stripe's status of an invoice."""

    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOID = "void"

    @property
    def description(self) -> str:
        return {
            "draft": "Not finalized yet: Stripe may still change it, and it has no number.",
            "open": "Finalized and waiting for payment (a renewal whose payment failed or waits for "
            "authentication stays open: its owner may pay it with clientSecret).",
            "paid": "Paid.",
            "uncollectible": "Stripe gave up collecting it (it may still be paid).",
            "void": "Canceled; it can no longer be paid.",
        }[self.value]
