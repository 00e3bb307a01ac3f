"""Admin for saved payment methods and the SetupIntents that saved them: read-only mirrors of
Stripe (cards are saved by the customer through stripe.js, never typed in here). Client secrets are
never stored, so never shown."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from aa_stripe.models import StripePaymentMethod, StripeSetupIntent

from .base import StripeModelAdmin, user_search_fields
from .operations import operations_link


class ReadOnlyMirrorAdmin(StripeModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StripePaymentMethod)
class StripePaymentMethodAdmin(ReadOnlyMirrorAdmin):
    list_display = ("__str__", "customer", "type", "expiry", "default", "created")
    list_filter = ("type", "card_brand")
    list_select_related = ("customer", "customer__user")
    search_fields = (
        "=stripe_payment_method_id",
        "=customer__stripe_customer_id",
        *user_search_fields("customer__user"),
    )
    date_hierarchy = "created"
    exclude = ("stripe_response",)
    readonly_fields = (
        "customer stripe_payment_method_id type card_brand card_last4 card_exp_month card_exp_year "
        "card_country card_funding default stripe_created last_event_at created updated "
        "stripe_response_display operations_link"
    ).split()
    actions = ("refresh_from_stripe",)

    @admin.display(description="expires")
    def expiry(self, obj: StripePaymentMethod) -> str:
        if obj.card_exp_month is None:
            return "-"
        return f"{obj.card_exp_month}/{obj.card_exp_year}" + (" (expired)" if obj.is_expired else "")

    @admin.display(description="default", boolean=True)
    def default(self, obj: StripePaymentMethod) -> bool:
        return obj.is_default

    @admin.display(description="operations")
    def operations_link(self, obj: StripePaymentMethod) -> str:
        return operations_link(obj)

    @admin.action(description="Refresh selected payment methods from Stripe")
    def refresh_from_stripe(self, request: HttpRequest, queryset: QuerySet[StripePaymentMethod]) -> None:
        self.run_per_row(request, queryset, "refresh_from_stripe", doing="refresh", done="Refreshed")


@admin.register(StripeSetupIntent)
class StripeSetupIntentAdmin(ReadOnlyMirrorAdmin):
    list_display = ("__str__", "customer", "status", "payment_method", "failure_code", "created")
    list_filter = ("status",)
    list_select_related = ("customer", "customer__user")
    search_fields = (
        "=stripe_setup_intent_id",
        "=customer__stripe_customer_id",
        *user_search_fields("customer__user"),
    )
    date_hierarchy = "created"
    exclude = ("stripe_response",)
    readonly_fields = (
        "customer stripe_setup_intent_id status usage payment_method failure_code failure_message "
        "last_event_at created updated stripe_response_display operations_link"
    ).split()
    actions = ("refresh_from_stripe",)

    @admin.display(description="operations")
    def operations_link(self, obj: StripeSetupIntent) -> str:
        return operations_link(obj)

    @admin.action(description="Refresh selected SetupIntents from Stripe")
    def refresh_from_stripe(self, request: HttpRequest, queryset: QuerySet[StripeSetupIntent]) -> None:
        self.run_per_row(request, queryset, "refresh_from_stripe", doing="refresh", done="Refreshed")
