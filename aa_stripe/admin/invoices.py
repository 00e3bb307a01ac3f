"""Admin for invoices: read-only mirrors of Stripe (Stripe makes and bills them), with links to
Stripe's hosted page and PDF. Client secrets are never stored, so never shown."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from aa_stripe.models import StripeInvoice

from .base import user_search_fields
from .payment_methods import ReadOnlyMirrorAdmin


@admin.register(StripeInvoice)
class StripeInvoiceAdmin(ReadOnlyMirrorAdmin):
    list_display = ("__str__", "customer", "subscription", "status", "amount", "stripe_created", "links")
    list_filter = ("status", "billing_reason", "currency")
    list_select_related = ("customer", "customer__user", "subscription")
    search_fields = (
        "=stripe_invoice_id",
        "=number",
        "=stripe_subscription_id",
        "=customer__stripe_customer_id",
        *user_search_fields("customer__user"),
    )
    date_hierarchy = "stripe_created"
    exclude = ("stripe_response",)
    readonly_fields = (
        "stripe_invoice_id number customer subscription stripe_subscription_id status billing_reason "
        "amount_due amount_paid currency hosted_invoice_url invoice_pdf period_start period_end "
        "stripe_created payment_failed_signaled action_required_signaled last_event_at created updated "
        "stripe_response_display"
    ).split()
    actions = ("refresh_from_stripe",)

    @admin.display(description="amount due / paid")
    def amount(self, obj: StripeInvoice) -> str:
        return f"{obj.amount_due} / {obj.amount_paid} {obj.currency}"

    @admin.display(description="links")
    def links(self, obj: StripeInvoice) -> str:
        if not obj.hosted_invoice_url:
            return "-"
        return format_html(
            '<a href="{}" rel="noopener" target="_blank">page</a> · <a href="{}" rel="noopener">PDF</a>',
            obj.hosted_invoice_url,
            obj.invoice_pdf or obj.hosted_invoice_url,
        )

    @admin.action(description="Refresh selected invoices from Stripe")
    def refresh_from_stripe(self, request: HttpRequest, queryset: QuerySet[StripeInvoice]) -> None:
        self.run_per_row(request, queryset, "refresh_from_stripe", doing="refresh", done="Refreshed")
