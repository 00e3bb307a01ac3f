"""GraphQL types of the catalog: ``StripeProduct`` and ``StripePrice`` (GRAPHQL.md, "Prices,
products and invoices").

Anyone sees what is for sale: products and prices created at Stripe, active and not deleted. Staff
with ``aa_stripe.view_stripeproduct`` / ``view_stripeprice`` see every row (``node(id)``, and the
lists' ``active: false`` or ``active: null``). A page resolves in a constant number of SQL queries:
a price's product is joined, and the products' prices are fetched in one query per page, only when
the query asks for them.
"""

from __future__ import annotations

from typing import Any

import graphene
from django.db.models import Prefetch, QuerySet
from graphene import relay
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode

from aa_stripe.models import StripePrice, StripeProduct
from aa_stripe.models.products import SELLABLE

from .enums import StripePlanInterval
from .errors import masked
from .permissions import has_perm
from .types import StripeConnection, StripeNode


def selects(info: Any, *path: str) -> bool:
    """Whether the query asks for ``path`` (field names, e.g. ``"product", "prices"``) under the
    field being resolved, through fragments too."""

    def walk(selection_set: SelectionSetNode | None, names: tuple[str, ...]) -> bool:
        if not names:
            return True
        if selection_set is None:
            return False
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value == names[0] and walk(selection.selection_set, names[1:]):
                    return True
            elif isinstance(selection, InlineFragmentNode):
                if walk(selection.selection_set, names):
                    return True
            elif isinstance(selection, FragmentSpreadNode):
                fragment = info.fragments.get(selection.name.value)
                if fragment is not None and walk(fragment.selection_set, names):
                    return True
        return False

    return any(walk(node.selection_set, path) for node in info.field_nodes)


def _asked(info: Any, *path: str) -> bool:
    """``path`` under a list's ``edges { node }`` or under ``node(id)`` itself."""
    return selects(info, "edges", "node", *path) or selects(info, *path)


def visible_prices(info: Any, queryset: QuerySet[StripePrice]) -> QuerySet[StripePrice]:
    return queryset if has_perm(info.context, "view_stripeprice") else queryset.filter(SELLABLE)


class StripePriceRecurring(graphene.ObjectType):
    """How often a recurring price bills."""

    interval = graphene.Field(StripePlanInterval, required=True, description="Billing period unit.")
    interval_count = graphene.Int(required=True, description="Billing period length, in intervals.")


class StripeProductType(StripeNode):
    node_access = None

    stripe_product_id = graphene.String(required=True, description="Stripe's id of the product (prod_...).")
    name = graphene.String(required=True, description="Shown to customers.")
    description = graphene.String(description="A longer text for customers; null when there is none.")
    active = graphene.Boolean(required=True, description="Whether Stripe sells it now (false: archived).")
    prices = graphene.List(
        graphene.NonNull(lambda: StripePriceType),
        required=True,
        description="Its prices, as stripePrices shows them to you (active ones, unless you are staff "
        "with aa_stripe.view_stripeprice), newest first.",
    )

    class Meta:
        model = StripeProduct
        name = "StripeProduct"
        description = "What is sold (Stripe's Product); its prices say for how much."
        interfaces = (relay.Node,)
        connection_class = StripeConnection
        fields = ("id",)

    @staticmethod
    def resolve_description(root: StripeProduct, info: Any) -> str | None:
        return root.description or None

    @staticmethod
    @masked
    def resolve_prices(root: StripeProduct, info: Any) -> list[StripePrice]:
        if "prices" in getattr(root, "_prefetched_objects_cache", {}):
            return list(root.prices.all())  # fetched for the whole page
        return list(visible_prices(info, root.prices.all()).order_by("-created", "-pk"))

    @classmethod
    @masked
    def get_queryset(cls, queryset: Any, info: Any) -> Any:
        if not has_perm(info.context, "view_stripeproduct"):
            queryset = queryset.filter(SELLABLE)
        if _asked(info, "prices"):
            prices = visible_prices(info, StripePrice.objects.order_by("-created", "-pk"))
            queryset = queryset.prefetch_related(Prefetch("prices", queryset=prices))
        return queryset


class StripePriceType(StripeNode):
    node_access = None

    stripe_price_id = graphene.String(description="Stripe's id of the price (price_...); null until created.")
    product = graphene.Field(
        StripeProductType,
        description="The product priced; null while its product is not mirrored here yet (a price made "
        "in the dashboard whose product's events have not arrived).",
    )
    nickname = graphene.String(description="Hidden from customers; null when there is none.")
    lookup_key = graphene.String(description="Your own name for the price, to find it by.")
    unit_amount = graphene.Int(
        description="In the currency's minor unit (cents for USD); null for prices Stripe computes "
        "otherwise (tiers), made in the dashboard."
    )
    currency = graphene.String(required=True, description="Lower-case ISO currency code.")
    recurring = graphene.Field(
        StripePriceRecurring, description="The billing period of a recurring price; null when paid once."
    )
    active = graphene.Boolean(required=True, description="Whether Stripe sells it now (false: archived).")

    class Meta:
        model = StripePrice
        name = "StripePrice"
        description = "How much a product costs, once or per billing period (Stripe's Price)."
        interfaces = (relay.Node,)
        connection_class = StripeConnection
        fields = ("id",)

    @staticmethod
    def resolve_stripe_price_id(root: StripePrice, info: Any) -> str | None:
        return root.stripe_price_id or None

    @staticmethod
    @masked
    def resolve_product(root: StripePrice, info: Any) -> StripeProduct | None:
        try:
            return root.product  # joined for a page; absent while the product row is not here
        except StripeProduct.DoesNotExist:
            return None

    @staticmethod
    def resolve_nickname(root: StripePrice, info: Any) -> str | None:
        return root.nickname or None

    @staticmethod
    def resolve_lookup_key(root: StripePrice, info: Any) -> str | None:
        return root.lookup_key or None

    @staticmethod
    def resolve_recurring(root: StripePrice, info: Any) -> StripePriceRecurring | None:
        if not root.recurring_interval:
            return None
        return StripePriceRecurring(
            interval=root.recurring_interval, interval_count=root.recurring_interval_count or 1
        )

    @classmethod
    @masked
    def get_queryset(cls, queryset: Any, info: Any) -> Any:
        queryset = visible_prices(info, queryset).select_related("product")
        if _asked(info, "product", "prices"):
            prices = visible_prices(info, StripePrice.objects.order_by("-created", "-pk"))
            queryset = queryset.prefetch_related(Prefetch("product__prices", queryset=prices))
        return queryset
