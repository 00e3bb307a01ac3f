"""The ``stripePrices`` workload of graphql_pages.py: a page of 100 prices for sale with their
products, as the four variants answer it (a helper module, not a benchmark of its own).

Imported after ``django.setup()``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from graphql_relay import to_global_id

from aa_stripe.models import StripePrice
from aa_stripe.models.products import SELLABLE

PAGE = 100

PRICES_QUERY = """
query Prices {
  stripePrices(first: 100) {
    edges { node {
      id stripePriceId unitAmount currency lookupKey active
      recurring { interval intervalCount }
      product { stripeProductId name }
    } }
  }
}
"""

# Added to graphql_pages.SDL for the bare graphql-core variant.
PRICES_SDL = """
type StripePriceRecurring { interval: StripePlanInterval! intervalCount: Int! }
type StripeProduct { stripeProductId: String! name: String! }
type StripePrice {
  id: ID! stripePriceId: String unitAmount: Int currency: String! lookupKey: String active: Boolean!
  recurring: StripePriceRecurring product: StripeProduct
}
type StripePriceEdge { node: StripePrice }
type StripePriceConnection { edges: [StripePriceEdge]! }
extend type Query { stripePrices(first: Int): StripePriceConnection }
"""

ATTRIBUTES = {
    "stripePriceId": "stripe_price_id",
    "unitAmount": "unit_amount",
    "lookupKey": "lookup_key",
    "stripeProductId": "stripe_product_id",
}


def prices(request: HttpRequest) -> Any:
    """The page as the GraphQL type filters it: what is for sale, unless staff may see all."""
    queryset = StripePrice.objects.order_by("-created", "-pk").select_related("product")
    user = request.user
    if not (user.is_authenticated and user.is_active and user.has_perm("aa_stripe.view_stripeprice")):
        queryset = queryset.filter(SELLABLE)
    return queryset[:PAGE]


def recurring(price: StripePrice) -> dict[str, Any] | None:
    if not price.recurring_interval:
        return None
    return {"interval": price.recurring_interval, "intervalCount": price.recurring_interval_count or 1}


def hand_prices(request: HttpRequest) -> dict[str, Any]:
    """The hand-written view's answer."""
    edges = []
    for price in prices(request):
        product = price.product
        node = {
            "id": to_global_id("StripePrice", price.pk),
            "stripePriceId": price.stripe_price_id or None,
            "unitAmount": price.unit_amount,
            "currency": price.currency,
            "lookupKey": price.lookup_key or None,
            "active": price.active,
            "recurring": _upper(recurring(price)),
            "product": {"stripeProductId": product.stripe_product_id, "name": product.name}
            if product
            else None,
        }
        edges.append({"node": node})
    return {"stripePrices": {"edges": edges}}


def _upper(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return {**value, "interval": value["interval"].upper()} if value else None


def core_root(request: HttpRequest) -> dict[str, Any]:
    """The root value of the bare graphql-core variant."""
    return {"stripePrices": {"edges": [{"node": price} for price in prices(request)]}}


def seed() -> None:
    """100 prices for sale, each of its own product, and 10 archived ones the page leaves out."""
    from tests.graphql_helpers import make_prices, make_products

    make_prices(make_products(PAGE))
    make_prices(make_products(10), active=False)
