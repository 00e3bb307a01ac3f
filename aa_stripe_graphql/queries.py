"""``StripeQuery``: the list and lookup fields of GRAPHQL.md, mixed into a host's ``Query``."""

from __future__ import annotations

from typing import Any

import graphene
from django.conf import settings
from graphene import relay
from graphene_django import DjangoConnectionField

from aa_stripe.models import (
    StripeCharge,
    StripeCoupon,
    StripeCustomer,
    StripeSubscription,
    StripeSubscriptionPlan,
)

from .enums import StripeSubscriptionStatus
from .errors import masked
from .filters import StripeChargeFilter, StripeCouponFilter, StripeCustomerFilter, StripeSubscriptionFilter
from .permissions import require_perm, require_signed_in
from .types import (
    StripeChargeType,
    StripeCouponType,
    StripeCustomerType,
    StripeSubscriptionPlanType,
    StripeSubscriptionType,
)


def page_size() -> int:
    """The largest page a connection returns (``STRIPE_GRAPHQL_PAGE_SIZE``, default 100)."""
    return int(getattr(settings, "STRIPE_GRAPHQL_PAGE_SIZE", 100))


def connection(node_type: type, description: str, **arguments: Any) -> DjangoConnectionField:
    return DjangoConnectionField(node_type, description=description, max_limit=page_size(), **arguments)


def filtered(filterset_class: type, queryset: Any, arguments: dict[str, Any]) -> Any:
    data = {name: value for name, value in arguments.items() if value is not None}
    filterset = filterset_class(data=data, queryset=queryset)
    return filterset.qs


class StripeQuery(graphene.ObjectType):
    """Stripe queries; mix into your own ``Query`` class."""

    node = relay.Node.Field(description="Any Stripe object by its global id (same rules as the lists).")
    stripe_customers = connection(
        StripeCustomerType,
        "Your customers; all with aa_stripe.view_stripecustomer.",
        is_active=graphene.Boolean(description="Only active (true) or inactive (false) customers."),
    )
    stripe_charges = connection(
        StripeChargeType,
        "Your charges, newest first; all with aa_stripe.view_stripecharge.",
        is_charged=graphene.Boolean(description="Only charged (true) or not charged (false) ones."),
        is_refunded=graphene.Boolean(description="Only refunded (true) or not refunded (false) ones."),
        charge_attempt_failed=graphene.Boolean(description="Only declined (true) or not declined ones."),
        created_gte=graphene.DateTime(description="Created at or after this moment."),
        created_lte=graphene.DateTime(description="Created at or before this moment."),
    )
    stripe_subscriptions = connection(
        StripeSubscriptionType,
        "Your subscriptions; all with aa_stripe.view_stripesubscription.",
        status=graphene.Argument(StripeSubscriptionStatus, description="Only subscriptions in this status."),
    )
    stripe_subscription_plans = connection(StripeSubscriptionPlanType, "Plans one can subscribe to.")
    stripe_coupon = graphene.Field(
        StripeCouponType,
        coupon_id=graphene.String(required=True, description="The code the customer entered."),
        description="A live coupon by its code (signed-in users); null when missing or deleted.",
    )
    stripe_coupons = connection(
        StripeCouponType,
        "All coupons (aa_stripe.view_stripecoupon).",
        is_deleted=graphene.Boolean(description="Only deleted (true) or live (false) coupons."),
    )

    @staticmethod
    @masked
    def resolve_stripe_customers(root: Any, info: Any, **kwargs: Any) -> Any:
        require_signed_in(info)
        return filtered(StripeCustomerFilter, StripeCustomer.objects.order_by("-pk"), kwargs)

    @staticmethod
    @masked
    def resolve_stripe_charges(root: Any, info: Any, **kwargs: Any) -> Any:
        require_signed_in(info)
        queryset = StripeCharge.objects.order_by("-created", "-pk")
        return filtered(StripeChargeFilter, queryset, kwargs)

    @staticmethod
    @masked
    def resolve_stripe_subscriptions(root: Any, info: Any, status: Any = None, **kwargs: Any) -> Any:
        require_signed_in(info)
        arguments = {"status": getattr(status, "value", status)}
        return filtered(StripeSubscriptionFilter, StripeSubscription.objects.order_by("-pk"), arguments)

    @staticmethod
    @masked
    def resolve_stripe_subscription_plans(root: Any, info: Any, **kwargs: Any) -> Any:
        return StripeSubscriptionPlan.objects.filter(is_created_at_stripe=True).order_by("amount", "pk")

    @staticmethod
    @masked
    def resolve_stripe_coupon(root: Any, info: Any, coupon_id: str) -> StripeCoupon | None:
        require_signed_in(info)
        return StripeCoupon.objects.filter(coupon_id=coupon_id).first()

    @staticmethod
    @masked
    def resolve_stripe_coupons(root: Any, info: Any, **kwargs: Any) -> Any:
        require_perm(info, "view_stripecoupon")
        queryset = StripeCoupon.objects.all_with_deleted().order_by("-pk")
        return filtered(StripeCouponFilter, queryset, kwargs)
