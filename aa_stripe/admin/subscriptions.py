"""Admin for plans, subscriptions and coupons."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from aa_stripe.currencies import minor_unit_exponent
from aa_stripe.exceptions import AaStripeError, StripeInternalError
from aa_stripe.models import (
    StripeCoupon,
    StripeSubscription,
    StripeSubscriptionPlan,
)

from .base import CURRENCY_FILTER, StripeModelAdmin, StripeWritingAdmin, user_search_fields
from .operations import operations_link


@admin.register(StripeSubscriptionPlan)
class StripeSubscriptionPlanAdmin(StripeModelAdmin):
    list_display = "name stripe_plan_id amount_display billed trial_period_days is_created_at_stripe".split()
    list_filter = ("interval", CURRENCY_FILTER, "is_created_at_stripe")
    search_fields = ("name", "=stripe_plan_id")
    readonly_fields = ("is_created_at_stripe", "created", "updated", "stripe_response_display", "operations")
    operations = admin.display(description="operations")(lambda self, obj: operations_link(obj))
    # Stripe cannot change a plan's price and the library pushes no edits: only `source` stays editable.
    locked_fields = (
        "stripe_plan_id name amount currency interval interval_count trial_period_days "
        "statement_descriptor metadata"
    ).split()
    actions = ("create_at_stripe",)

    def is_locked(self, obj: Any) -> bool:
        # Also while a creation is unfinished: finishing it sends the request frozen when it started.
        return obj.is_created_at_stripe or obj.creation_unfinished

    @admin.action(description="Create selected plans at Stripe (or finish an unfinished creation)")
    def create_at_stripe(self, request: HttpRequest, queryset: QuerySet[StripeSubscriptionPlan]) -> None:
        # Actions run outside Django's transaction (only the add/change/delete views are atomic).
        self.run_per_row(request, queryset, "create_at_stripe", doing="create", done="Created at Stripe:")

    @admin.display(description="billed", ordering="interval")
    def billed(self, obj: StripeSubscriptionPlan) -> str:
        if obj.interval_count == 1:
            return f"every {obj.interval}"
        return f"every {obj.interval_count} {obj.interval}s"


@admin.register(StripeSubscription)
class StripeSubscriptionAdmin(StripeModelAdmin):
    list_display = (
        "id user_display plan price status stripe_subscription_id at_period_end end_date canceled_at created"
    ).split()
    list_filter = ("status", "at_period_end", "is_created_at_stripe")
    list_filter += ("plan__interval", "price__recurring_interval")
    list_select_related = ("user", "plan", "price")
    search_fields = (*user_search_fields(), "=stripe_subscription_id", "=customer__stripe_customer_id")
    search_fields += ("plan__name", "=plan__stripe_plan_id", "=price__stripe_price_id", "=coupon__coupon_id")
    date_hierarchy = "created"
    raw_id_fields = ("user",)
    autocomplete_fields = ("plan", "price", "customer", "coupon")
    readonly_fields = (
        "uuid stripe_subscription_id is_created_at_stripe status at_period_end canceled_at "
        "current_period_start current_period_end trial_start trial_end default_payment_method "
        "created updated stripe_response_display operations"
    ).split()
    operations = admin.display(description="operations")(lambda self, obj: operations_link(obj))
    locked_fields = ("user", "plan", "price", "customer", "coupon", "metadata", "tax_percent")
    actions = ("cancel_at_period_end", "cancel_now", "refresh_from_stripe")

    @admin.action(description="Cancel selected subscriptions (at the end of the paid period)")
    def cancel_at_period_end(self, request: HttpRequest, queryset: QuerySet[StripeSubscription]) -> None:
        done = "Set to cancel at the period end:"
        self.run_per_row(request, queryset, "cancel", doing="cancel", done=done, at_period_end=True)

    @admin.action(description="Cancel selected subscriptions immediately")
    def cancel_now(self, request: HttpRequest, queryset: QuerySet[StripeSubscription]) -> None:
        self.run_per_row(request, queryset, "cancel", doing="cancel", done="Canceled")

    @admin.action(description="Refresh selected subscriptions from Stripe")
    def refresh_from_stripe(self, request: HttpRequest, queryset: QuerySet[StripeSubscription]) -> None:
        self.run_per_row(request, queryset, "refresh_from_stripe", doing="refresh", done="Refreshed")


class StripeCouponForm(forms.ModelForm):
    """Saves the coupon (which creates it at Stripe, or pushes metadata) while validating,
    so that Stripe refusing it is a form error instead of a server error. The admin's views run
    without a transaction for it (:class:`StripeWritingAdmin`)."""

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:
            return
        try:
            self.instance.save()
        except StripeInternalError:
            self.add_error(
                None,
                "Stripe did not answer: the coupon may have been made there. Submit the form again to "
                "finish it (nothing is made twice); reconcile_stripe_operations finishes it otherwise.",
            )
        except AaStripeError as err:
            self.add_error(None, f"Stripe refused the coupon: {err.message}")


@admin.register(StripeCoupon)
class StripeCouponAdmin(StripeWritingAdmin):
    form = StripeCouponForm
    list_display = (
        "coupon_id discount duration_display times_redeemed max_redemptions redeem_by valid is_deleted "
        "created"
    ).split()
    list_filter = ("is_deleted", "valid", "duration", CURRENCY_FILTER, "livemode")
    search_fields = ("coupon_id",)
    date_hierarchy = "created"
    readonly_fields = (
        "times_redeemed valid livemode is_created_at_stripe is_deleted created updated "
        "stripe_response_display operations"
    ).split()
    operations = admin.display(description="operations")(lambda self, obj: operations_link(obj))
    locked_fields = StripeCoupon.IMMUTABLE_FIELDS  # editable on the add form only

    def is_locked(self, obj: Any) -> bool:
        return obj.pk is not None

    def get_queryset(self, request: HttpRequest) -> QuerySet[StripeCoupon]:
        queryset = StripeCoupon.objects.all_with_deleted()
        return queryset.order_by(*self.get_ordering(request) or ("id",))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, term: str
    ) -> tuple[QuerySet, bool]:
        queryset, distinct = super().get_search_results(request, queryset, term)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name == "autocomplete":
            queryset = queryset.filter(is_deleted=False)  # a deleted coupon cannot be applied
        return queryset, distinct

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and not (obj is not None and obj.is_deleted)

    @admin.display(description="discount")
    def discount(self, obj: StripeCoupon) -> str:
        if obj.percent_off is not None:
            return f"{obj.percent_off.normalize():f}% off"
        if obj.amount_off is not None:
            places = Decimal(1).scaleb(-minor_unit_exponent(obj.currency or ""))
            return f"{obj.amount_off.quantize(places)} {(obj.currency or '').upper()} off"
        return "-"

    @admin.display(description="duration", ordering="duration")
    def duration_display(self, obj: StripeCoupon) -> str:
        if obj.duration == StripeCoupon.DURATION_REPEATING:
            return f"{obj.duration_in_months} months"
        return obj.duration

    # Deleting a coupon deletes it at Stripe; the row stays, marked is_deleted. Django logs a
    # deletion before making it; here it is logged once Stripe deleted the coupon, so a failed
    # delete leaves no log entry (there is no transaction to roll it back: see StripeWritingAdmin).
    def log_deletions(self, request: HttpRequest, queryset: Any) -> list[Any]:
        return []

    def delete_model(self, request: HttpRequest, obj: StripeCoupon) -> None:
        try:
            obj.delete()
        except AaStripeError as err:
            request._aa_stripe_delete_failed = True  # type: ignore[attr-defined]
            self.message_user(request, f"Could not delete coupon “{obj}”: {err.message}", messages.ERROR)
            return
        super().log_deletions(request, [obj])

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> HttpResponse:
        if getattr(request, "_aa_stripe_delete_failed", False):
            return redirect(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", obj_id)
        return super().response_delete(request, obj_display, obj_id)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[StripeCoupon]) -> None:
        def delete(coupon: StripeCoupon) -> None:
            coupon.delete()
            super(StripeCouponAdmin, self).log_deletions(request, [coupon])

        self.run_per_row(request, queryset, delete, doing="delete", done="Deleted at Stripe:")
