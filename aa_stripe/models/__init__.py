"""The library's models, one module per Stripe area, re-exported here (aa-stripe's import path)."""

from aa_stripe.signals import webhook_pre_parse

from .base import StripeBasicModel
from .charges import StripeCharge, StripeRefund
from .coupons import StripeCoupon, StripeCouponManager, StripeCouponQuerySet
from .customers import StripeCustomer
from .plans import StripeSubscriptionPlan
from .subscriptions import StripeSubscription
from .tombstones import StripeTombstone
from .webhooks import StripeWebhook

__all__ = [
    "StripeBasicModel",
    "StripeCharge",
    "StripeCoupon",
    "StripeCouponManager",
    "StripeCouponQuerySet",
    "StripeCustomer",
    "StripeRefund",
    "StripeSubscription",
    "StripeSubscriptionPlan",
    "StripeTombstone",
    "StripeWebhook",
    "webhook_pre_parse",
]
