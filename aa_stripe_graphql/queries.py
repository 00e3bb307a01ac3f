"""``StripeQuery``: the list and lookup fields of GRAPHQL.md, mixed into a host's ``Query``."""

from __future__ import annotations

from copy import copy
from typing import Any

import graphene
from graphene import relay
from graphene.relay.node import NodeField
from graphene_django import DjangoConnectionField
from graphql import GraphQLError
from graphql_relay import cursor_to_offset, from_global_id

from aa_stripe.models import (
    StripeCharge,
    StripeCoupon,
    StripeCustomer,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    StripeSubscriptionPlan,
)
from aa_stripe.models.products import SELLABLE

from .catalog import StripePriceType, StripeProductType
from .enums import StripeInvoiceStatus, StripeSubscriptionStatus
from .errors import masked
from .filters import StripeChargeFilter, StripeCouponFilter, StripeCustomerFilter, StripeSubscriptionFilter
from .invoices import StripeInvoiceType, invoices
from .limits import page_size
from .permissions import require_perm, require_signed_in
from .types import (
    StripeChargeType,
    StripeCouponType,
    StripeCustomerType,
    StripeSubscriptionPlanType,
    StripeSubscriptionType,
)

PAGE_ARGUMENTS = {
    "first": graphene.Int(description="The first n objects (0 to STRIPE_GRAPHQL_PAGE_SIZE, default 100)."),
    "last": graphene.Int(description="The last n objects (0 to STRIPE_GRAPHQL_PAGE_SIZE, default 100)."),
    "after": graphene.String(description="Objects after this cursor (an edge's cursor)."),
    "before": graphene.String(description="Objects before this cursor (an edge's cursor)."),
    "offset": graphene.Int(
        description="Skip this many objects (from the start or from after); not with before."
    ),
}


def page_error(message: str, code: str = "PAGE_SIZE_EXCEEDED") -> GraphQLError:
    extensions = {"code": code, "setting": "STRIPE_GRAPHQL_PAGE_SIZE", "limit": page_size()}
    return GraphQLError(message, extensions=extensions)


def check_page_arguments(field_name: str, arguments: dict[str, Any]) -> None:
    """Clean GraphQL errors instead of graphene-django's assertions (which ``python -O`` drops)."""
    cap = page_size()
    for name in ("first", "last"):
        value = arguments.get(name)
        if value is not None and value < 0:
            raise page_error(f"{name} must not be negative.", code="INVALID_PAGINATION")
        if value is not None and value > cap:
            raise page_error(
                f"{name}: {value} on {field_name} is more than the page size limit of {cap} "
                "(STRIPE_GRAPHQL_PAGE_SIZE)."
            )
    offset = arguments.get("offset")
    if offset is not None and (offset < 0 or arguments.get("before") is not None):
        raise page_error("offset must not be negative nor used with before.", code="INVALID_PAGINATION")
    for name in ("after", "before"):
        # graphene-django adds an undecodable `after` to `offset` (TypeError) or ignores it silently.
        cursor = arguments.get(name)
        position = cursor_to_offset(cursor) if cursor is not None else 0
        if position is None or position < 0:
            raise page_error(f"{name} is not a cursor of this connection.", code="INVALID_PAGINATION")


class StripeConnectionField(DjangoConnectionField):
    """A connection capped at ``STRIPE_GRAPHQL_PAGE_SIZE`` (read per request), also its default page size.

    Host GRAPHENE settings (RELAY_CONNECTION_MAX_LIMIT, ..._ENFORCE_FIRST_OR_LAST) do not apply.
    """

    def __init__(self, node_type: type, description: str, **arguments: Any) -> None:
        for name, argument in PAGE_ARGUMENTS.items():
            arguments.setdefault(name, copy(argument))
        super().__init__(node_type, description=description, enforce_first_or_last=False, **arguments)

    @classmethod
    @masked
    def connection_resolver(cls, resolver: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
        default_manager, queryset_resolver, _max_limit, _enforce, root, info = args
        check_page_arguments(info.field_name, kwargs)
        return super().connection_resolver(
            resolver, connection, default_manager, queryset_resolver, page_size(), False, root, info, **kwargs
        )


@masked
def resolve_node(root: Any, info: Any, id: str) -> Any:
    """graphene's ``Node.node_resolver`` without its exceptions: an id that does not parse, or names
    an unknown type or one that is no Node, is null like an unknown row (GRAPHQL.md). A Node type's
    own ``get_node`` still decides the rest (PERMISSION_DENIED first for sign-in-only types)."""
    try:
        type_name, pk = relay.Node.resolve_global_id(info, id)
    except Exception:
        return None
    graphene_type = getattr(info.schema.get_type(type_name), "graphene_type", None)
    if not (
        isinstance(graphene_type, type)
        and issubclass(graphene_type, graphene.ObjectType)
        and relay.Node in graphene_type._meta.interfaces
    ):
        return None
    get_node = getattr(graphene_type, "get_node", None)
    return get_node(info, pk) if get_node else None


class StripeNodeField(NodeField):
    """``relay.Node.Field()`` (same schema) answering null for ids of nothing that is a Node."""

    def __init__(self, description: str) -> None:
        super().__init__(relay.Node, description=description)

    def wrap_resolve(self, parent_resolver: Any) -> Any:
        return resolve_node


def connection(node_type: type, description: str, **arguments: Any) -> StripeConnectionField:
    return StripeConnectionField(node_type, description, **arguments)


def filtered(filterset_class: type, queryset: Any, arguments: dict[str, Any]) -> Any:
    data = {name: value for name, value in arguments.items() if value is not None}
    filterset = filterset_class(data=data, queryset=queryset)
    return filterset.qs


_ACTIVE = (
    "true (the default): only what is for sale (created at Stripe, active, not deleted); false: only "
    "the others; null: all. Who is not staff with the view permission sees only what is for sale."
)


def for_sale(queryset: Any, active: bool | None) -> Any:
    """``active`` as the lists take it; the types' ``get_queryset`` then applies who sees what."""
    if active is None:
        return queryset
    return queryset.filter(SELLABLE) if active else queryset.exclude(SELLABLE)


def _product_pk(global_id: str) -> int | None:
    """The primary key a StripeProduct global id names; None (nothing matches) for any other id."""
    try:
        type_name, pk = from_global_id(global_id)
    except Exception:
        return None
    if type_name != "StripeProduct" or not pk.isdigit() or len(pk) > 19:
        return None
    return int(pk)


class StripeQuery(graphene.ObjectType):
    """Stripe queries; mix into your own ``Query`` class."""

    class Meta:
        description = (
            "Stripe customers, charges, subscriptions, invoices, plans, coupons, products and prices "
            "(aa_stripe_graphql)."
        )

    node = StripeNodeField(
        "Any Stripe object by its global id (same rules as the lists); null for unknown ids."
    )
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
    stripe_invoices = connection(
        StripeInvoiceType,
        "The invoices of your customers, newest first; all with aa_stripe.view_stripeinvoice.",
        subscription=graphene.ID(
            description="Only the invoices of this subscription (a StripeSubscription's global id); "
            "none for a subscription you may not see."
        ),
        status=graphene.Argument(StripeInvoiceStatus, description="Only invoices in this status."),
    )
    stripe_subscription_plans = connection(
        StripeSubscriptionPlanType,
        "Plans one can subscribe to, cheapest first: only plans created at Stripe and neither archived "
        "nor deleted there. A plan saved here but not created at Stripe (create_at_stripe() not called "
        "yet, or it failed) is left out for everyone, staff too; staff with "
        "aa_stripe.view_stripesubscriptionplan can fetch it with node(id).",
    )
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

    stripe_products = connection(
        StripeProductType,
        "Products, newest first: those for sale (created at Stripe, active, not deleted) for anyone; "
        "staff with aa_stripe.view_stripeproduct may ask for the others (active: false or null).",
        active=graphene.Boolean(default_value=True, description=_ACTIVE),
    )
    stripe_prices = connection(
        StripePriceType,
        "Prices, newest first: those for sale (created at Stripe, active, not deleted) for anyone; "
        "staff with aa_stripe.view_stripeprice may ask for the others (active: false or null).",
        active=graphene.Boolean(default_value=True, description=_ACTIVE),
        product=graphene.ID(description="Only the prices of this product (a StripeProduct's global id)."),
        lookup_key=graphene.String(description="Only the price with this lookup key."),
    )

    @staticmethod
    @masked
    def resolve_stripe_products(root: Any, info: Any, active: bool | None = True, **kwargs: Any) -> Any:
        return for_sale(StripeProduct.objects.order_by("-created", "-pk"), active)

    @staticmethod
    @masked
    def resolve_stripe_prices(
        root: Any,
        info: Any,
        active: bool | None = True,
        product: str | None = None,
        lookup_key: str | None = None,
        **kwargs: Any,
    ) -> Any:
        queryset = for_sale(StripePrice.objects.order_by("-created", "-pk"), active)
        if product is not None:
            pk = _product_pk(product)
            queryset = queryset.filter(product__pk=pk) if pk is not None else queryset.none()
        if lookup_key is not None:
            queryset = queryset.filter(lookup_key=lookup_key)
        return queryset

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
    def resolve_stripe_invoices(
        root: Any, info: Any, subscription: str | None = None, status: Any = None, **kwargs: Any
    ) -> Any:
        require_signed_in(info)
        return invoices(info, subscription, status)

    @staticmethod
    @masked
    def resolve_stripe_subscription_plans(root: Any, info: Any, **kwargs: Any) -> Any:
        plans = StripeSubscriptionPlan.objects.filter(
            is_created_at_stripe=True, active=True, is_deleted=False
        )
        return plans.order_by("amount", "pk")

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
