"""Admin for customers, charges and refunds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from aa_stripe.exceptions import StripeCardError
from aa_stripe.models import (
    StripeCharge,
    StripeCustomer,
    StripePaymentMethod,
    StripeRefund,
)

from .base import CURRENCY_FILTER, StripeModelAdmin, format_amount, json_display, user_search_fields
from .operations import operations_link


class StripePaymentMethodInline(admin.TabularInline):
    """The customer's saved payment methods (read-only: saved by the customer through stripe.js)."""

    model = StripePaymentMethod
    extra = 0
    can_delete = False
    show_change_link = True
    fields = readonly_fields = (
        "stripe_payment_method_id",
        "type",
        "card_brand",
        "card_last4",
        "card_exp_month",
        "card_exp_year",
        "created",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StripeCustomer)
class StripeCustomerAdmin(StripeModelAdmin):
    list_display = "id stripe_customer_id user_display card is_active is_created_at_stripe created".split()
    list_display_links = ("id", "stripe_customer_id")
    list_filter = ("is_active", "is_created_at_stripe")
    list_select_related = ("user",)
    search_fields = (*user_search_fields(), "=stripe_customer_id", "=default_source")
    date_hierarchy = "created"
    raw_id_fields = ("user",)
    exclude = ("stripe_response", "sources", "stripe_js_response")
    readonly_fields = (
        "stripe_customer_id is_created_at_stripe default_payment_method default_source card created updated "
        "sources_display "
        "stripe_js_response_display stripe_response_display"
    ).split()
    locked_fields = ("user",)
    actions = ("refresh_from_stripe",)
    inlines = (StripePaymentMethodInline,)

    sources_display = json_display("sources", "sources")
    stripe_js_response_display = json_display("stripe_js_response", "stripe.js token")

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        # The stripe.js token is typed in only when adding a customer by hand.
        return ("stripe_response", "sources") if obj is None else self.exclude

    def is_locked(self, obj: Any) -> bool:
        return obj.pk is not None

    @admin.display(description="default card")
    def card(self, obj: StripeCustomer) -> str:
        if obj.default_payment_method:
            method = obj.payment_methods.filter(stripe_payment_method_id=obj.default_payment_method).first()
            return str(method) if method is not None else obj.default_payment_method
        source = obj.default_source_data
        if not source:
            return obj.default_source or "-"
        card = (source.get("card") if source.get("object") == "source" else source) or {}
        expiry = f"{card.get('exp_month', '?')}/{card.get('exp_year', '?')}"
        return f"{card.get('brand', '?')} •••• {card.get('last4', '????')} (exp. {expiry})"

    @admin.action(description="Refresh selected customers from Stripe")
    def refresh_from_stripe(self, request: HttpRequest, queryset: QuerySet[StripeCustomer]) -> None:
        self.run_per_row(request, queryset, "refresh_from_stripe", doing="refresh", done="Refreshed")


class StripeRefundInline(admin.TabularInline):
    model = StripeRefund
    extra = 0
    can_delete = False
    show_change_link = True
    fields = readonly_fields = ("stripe_refund_id", "status", "failure_code", "amount_display", "created")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="amount")
    def amount_display(self, obj: StripeRefund) -> str:
        return format_amount(obj.amount, obj.currency)


@admin.register(StripeCharge)
class StripeChargeAdmin(StripeModelAdmin):
    list_display = (
        "id user_display amount_display refunded_display description status is_charged is_refunded "
        "charge_attempt_failed is_manual_charge stripe_charge_id created"
    ).split()
    list_filter = (
        "status",
        "is_charged",
        "is_refunded",
        "charge_attempt_failed",
        "is_manual_charge",
        CURRENCY_FILTER,
    )
    list_select_related = ("user",)
    search_fields = (
        *user_search_fields(),
        "=stripe_charge_id",
        "=payment_intent_id",
        "=stripe_refund_id",
        "description",
    )
    search_fields += ("comment", "=customer__stripe_customer_id")
    date_hierarchy = "created"
    raw_id_fields = ("user",)
    autocomplete_fields = ("customer",)
    readonly_fields = (
        "uuid status stripe_charge_id payment_intent_id payment_method failure_code decline_code "
        "is_charged charge_attempt_failed amount_refunded is_refunded stripe_refund_id attempt "
        "attempt_started_at action_requested_for created updated stripe_response_display operations_link"
    ).split()
    # what Stripe charged cannot be changed afterwards; comment and the source object stay editable
    locked_fields = ("user", "customer", "amount", "currency", "description", "statement_descriptor")
    inlines = (StripeRefundInline,)
    actions = ("refund_charges", "charge_now")

    def is_locked(self, obj: Any) -> bool:
        return obj.is_charged or bool(obj.stripe_charge_id)

    @admin.display(description="refunded", ordering="amount_refunded")
    def refunded_display(self, obj: StripeCharge) -> str:
        return format_amount(obj.amount_refunded, obj.currency) if obj.amount_refunded else "-"

    @admin.action(description="Refund selected charges")
    def refund_charges(
        self, request: HttpRequest, queryset: QuerySet[StripeCharge]
    ) -> TemplateResponse | None:
        """First a page listing each charge and the amount that will be refunded; on "Yes" the
        refunds, row by row (no transaction around them), each reported."""
        if request.POST.get("confirmed") != "yes":
            return TemplateResponse(
                request,
                "admin/aa_stripe/stripecharge/refund_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "queryset": queryset,
                    "rows": [refund_preview(charge) for charge in queryset.select_related("user")],
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                    "title": "Refund charges?",
                },
            )
        self.run_per_row(request, queryset, "refund", doing="refund", done="Refunded")
        return None

    @admin.display(description="operations")
    def operations_link(self, obj: StripeCharge) -> str:
        return operations_link(obj)

    @admin.action(description="Charge selected charges now")
    def charge_now(self, request: HttpRequest, queryset: QuerySet[StripeCharge]) -> None:
        def charge(obj: StripeCharge) -> None:
            if obj.charge() is not None:
                return
            # charge() answers a decline with None; the reason is in the saved Stripe error.
            error = (obj.stripe_response or {}).get("error") or {}
            code = error.get("decline_code") or error.get("code")
            reason = error.get("message") or "no reason given"
            raise StripeCardError(f"The card was declined{f' ({code})' if code else ''}: {reason}")

        self.run_per_row(request, queryset, charge, doing="charge", done="Charged")


def refund_preview(charge: StripeCharge) -> dict[str, Any]:
    """What "Refund selected charges" will do to ``charge``, for the confirmation page."""
    left = (charge.amount or 0) - charge.amount_refunded
    note = ""
    if not charge.is_charged:
        left, note = 0, "not charged: nothing will be refunded"
    elif charge.pending_refund_amount is not None:
        left, note = charge.pending_refund_amount, "an unconfirmed refund, sent again"
    elif left <= 0:
        note = "refunded in full already"
    return {
        "charge": charge,
        "charged": format_amount(charge.amount, charge.currency),
        "refunded": format_amount(charge.amount_refunded, charge.currency),
        "to_refund": format_amount(max(left, 0), charge.currency),
        "note": note,
    }


@admin.register(StripeRefund)
class StripeRefundAdmin(StripeModelAdmin):
    list_display = ("__str__", "charge", "amount_display", "failure_code", "created")
    list_filter = (CURRENCY_FILTER, "failure_code")
    list_select_related = ("charge", "charge__user")
    search_fields = ("=stripe_refund_id", "=charge__stripe_charge_id", *user_search_fields("charge__user"))
    date_hierarchy = "created"
    readonly_fields = (
        "charge stripe_refund_id failure_code amount_display created updated stripe_response_display "
        "operations_link"
    ).split()

    @admin.display(description="operations")
    def operations_link(self, obj: StripeRefund) -> str:
        return operations_link(obj.charge, kind="refund")

    exclude = ("stripe_response", "amount", "currency")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
