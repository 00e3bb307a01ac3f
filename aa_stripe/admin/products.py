"""Admin for products and prices: find them, see what Stripe said, create them at Stripe.

As for plans, saving the form saves the row only; the action "Create selected ... at Stripe" calls
``create_at_stripe()`` row by row, outside Django's transaction (only the add/change/delete views
are atomic), and also finishes a creation whose outcome was unknown.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from aa_stripe.models import StripePrice, StripeProduct

from .base import CURRENCY_FILTER, StripeModelAdmin, format_amount
from .operations import operations_link

_READ_ONLY = "is_created_at_stripe is_deleted created updated stripe_response_display operations".split()


class StripeCatalogAdmin(StripeModelAdmin):
    readonly_fields = _READ_ONLY
    operations = admin.display(description="operations")(lambda self, obj: operations_link(obj))
    actions = ("create_at_stripe",)

    def is_locked(self, obj: Any) -> bool:
        # The library pushes no edits, and a creation being finished sends the request it froze.
        return obj.is_created_at_stripe or obj.creation_unfinished

    @admin.action(description="Create selected rows at Stripe (or finish an unfinished creation)")
    def create_at_stripe(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.run_per_row(request, queryset, "create_at_stripe", doing="create", done="Created at Stripe:")


@admin.register(StripeProduct)
class StripeProductAdmin(StripeCatalogAdmin):
    list_display = ("name", "stripe_product_id", "active", "is_created_at_stripe", "is_deleted", "created")
    list_filter = ("active", "is_created_at_stripe", "is_deleted")
    search_fields = ("name", "=stripe_product_id")
    locked_fields = ("stripe_product_id", "name", "description", "active", "metadata")


@admin.register(StripePrice)
class StripePriceAdmin(StripeCatalogAdmin):
    list_display = (
        "__str__ stripe_price_id product_name amount_display billed active is_created_at_stripe is_deleted"
    ).split()
    list_filter = ("active", "recurring_interval", CURRENCY_FILTER, "is_created_at_stripe", "is_deleted")
    list_select_related = ("product",)
    search_fields = ("=stripe_price_id", "nickname", "=lookup_key", "=product__stripe_product_id")
    search_fields += ("product__name",)
    raw_id_fields = ("product",)
    locked_fields = (
        "product unit_amount currency recurring_interval recurring_interval_count nickname lookup_key "
        "active metadata"
    ).split()

    @admin.display(description="product", ordering="product__name")
    def product_name(self, obj: StripePrice) -> str:
        # The product row may not be here yet (its events come later): show its Stripe id then.
        try:
            product = obj.product
        except StripeProduct.DoesNotExist:
            product = None
        return product.name if product is not None else (obj.product_id or "-")

    @admin.display(description="amount", ordering="unit_amount")
    def amount_display(self, obj: StripePrice) -> str:
        return format_amount(obj.unit_amount, obj.currency)

    @admin.display(description="billed", ordering="recurring_interval")
    def billed(self, obj: StripePrice) -> str:
        if not obj.recurring_interval:
            return "once"
        count = obj.recurring_interval_count or 1
        return f"every {obj.recurring_interval}" if count == 1 else f"every {count} {obj.recurring_interval}s"
