"""The library's models, one module per Stripe area, re-exported here (aa-stripe's import path)."""

from aa_stripe.operations.record import StripeOperation
from aa_stripe.signals import webhook_pre_parse

from . import (
    charge_operations,  # noqa: F401 (registers the journal's charge and refund kinds)
    payment_method_operations,  # noqa: F401 (SetupIntents, detaching)
)
from .base import StripeBasicModel
from .charges import StripeCharge, StripeRefund
from .coupons import StripeCoupon, StripeCouponManager, StripeCouponQuerySet
from .customers import StripeCustomer
from .invoices import StripeInvoice
from .payment_methods import StripePaymentMethod, StripeSetupIntent
from .plans import StripeSubscriptionPlan
from .products import StripePrice, StripeProduct
from .request_keys import StripeRequestKey
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
    "StripeInvoice",
    "StripeOperation",
    "StripePaymentMethod",
    "StripePrice",
    "StripeProduct",
    "StripeRefund",
    "StripeRequestKey",
    "StripeSetupIntent",
    "StripeSubscription",
    "StripeSubscriptionPlan",
    "StripeTombstone",
    "StripeWebhook",
    "webhook_pre_parse",
]
