"""``StripeQuery`` and ``StripeMutation`` for a host's schema, and a ready ``schema`` of them alone.

class Query(StripeQuery, graphene.ObjectType): ...
class Mutation(StripeMutation, graphene.ObjectType): ...
"""

from __future__ import annotations

import graphene

from .mutations.catalog import CreateStripePrice, CreateStripeProduct
from .mutations.charges import CreateStripeCharge, PayStripeCharge, RefreshStripeCharge, RefundStripeCharge
from .mutations.coupons import CreateStripeCoupon, DeleteStripeCoupon, UpdateStripeCoupon
from .mutations.customers import AddStripeCustomerSource, CreateStripeCustomer
from .mutations.payment_methods import (
    CompleteStripeSetupIntent,
    CreateStripeSetupIntent,
    DetachStripePaymentMethod,
    SetDefaultStripePaymentMethod,
)
from .mutations.plans import CreateStripeSubscriptionPlan
from .mutations.subscriptions import CancelStripeSubscription, CreateStripeSubscription
from .queries import StripeQuery


class StripeMutation(graphene.ObjectType):
    """Stripe mutations; mix into your own ``Mutation`` class."""

    create_stripe_customer = CreateStripeCustomer.Field(description=CreateStripeCustomer.__doc__)
    add_stripe_customer_source = AddStripeCustomerSource.Field(description=AddStripeCustomerSource.__doc__)
    create_stripe_subscription = CreateStripeSubscription.Field(description=CreateStripeSubscription.__doc__)
    cancel_stripe_subscription = CancelStripeSubscription.Field(description=CancelStripeSubscription.__doc__)
    create_stripe_charge = CreateStripeCharge.Field(description=CreateStripeCharge.__doc__)
    refund_stripe_charge = RefundStripeCharge.Field(description=RefundStripeCharge.__doc__)
    create_stripe_subscription_plan = CreateStripeSubscriptionPlan.Field(
        description=CreateStripeSubscriptionPlan.__doc__
    )
    create_stripe_coupon = CreateStripeCoupon.Field(description=CreateStripeCoupon.__doc__)
    update_stripe_coupon = UpdateStripeCoupon.Field(description=UpdateStripeCoupon.__doc__)
    delete_stripe_coupon = DeleteStripeCoupon.Field(description=DeleteStripeCoupon.__doc__)
    create_stripe_product = CreateStripeProduct.Field(description=CreateStripeProduct.__doc__)
    create_stripe_price = CreateStripePrice.Field(description=CreateStripePrice.__doc__)
    create_stripe_setup_intent = CreateStripeSetupIntent.Field(description=CreateStripeSetupIntent.__doc__)
    complete_stripe_setup_intent = CompleteStripeSetupIntent.Field(
        description=CompleteStripeSetupIntent.__doc__
    )
    set_default_stripe_payment_method = SetDefaultStripePaymentMethod.Field(
        description=SetDefaultStripePaymentMethod.__doc__
    )
    detach_stripe_payment_method = DetachStripePaymentMethod.Field(
        description=DetachStripePaymentMethod.__doc__
    )
    pay_stripe_charge = PayStripeCharge.Field(description=PayStripeCharge.__doc__)
    refresh_stripe_charge = RefreshStripeCharge.Field(description=RefreshStripeCharge.__doc__)


schema = graphene.Schema(query=StripeQuery, mutation=StripeMutation)

__all__ = ["StripeMutation", "StripeQuery", "schema"]
