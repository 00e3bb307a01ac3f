"""Django admin for support staff: find a payment, see what Stripe said, refund, charge, cancel, refresh.

Stripe-owned columns are read-only. The actions call the model methods row by row: a Stripe
error on one row becomes an error message naming that row, and the other rows are still processed.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import router, transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.html import format_html

from aa_stripe.currencies import from_minor_units, minor_unit_exponent
from aa_stripe.exceptions import AaStripeError, StripeCardError
from aa_stripe.models import (
    StripeCharge,
    StripeCoupon,
    StripeCustomer,
    StripeRefund,
    StripeSubscription,
    StripeSubscriptionPlan,
    StripeWebhook,
)

# The user model may be any STRIPE_USER_MODEL: use the e-mail and username fields it really has.
USER_MODEL: Any = StripeCharge._meta.get_field("user").related_model
_CONCRETE = {field.name for field in USER_MODEL._meta.concrete_fields}
_CANDIDATES = (getattr(USER_MODEL, "EMAIL_FIELD", "email"), getattr(USER_MODEL, "USERNAME_FIELD", None))
USER_FIELDS = tuple(name for name in dict.fromkeys(_CANDIDATES) if name in _CONCRETE)


# Only the currencies in use, not all 135 Stripe settles in.
CURRENCY_FILTER = ("currency", admin.AllValuesFieldListFilter)


def user_search_fields(path: str = "user") -> tuple[str, ...]:
    return tuple(f"{path}__{name}" for name in USER_FIELDS)


def format_amount(amount: int | None, currency: str | None) -> str:
    """Minor units as major units with the currency: ``1050, "usd"`` -> ``10.50 USD``."""
    if amount is None or not currency:
        return "-"
    return f"{from_minor_units(amount, currency)} {currency.upper()}"


def json_display(field: str, description: str) -> Callable[[Any, Model], str]:
    """A read-only column showing a JSON field indented (``exclude`` the raw field)."""

    @admin.display(description=description)
    def display(self: Any, obj: Model) -> str:
        value = getattr(obj, field)
        if not value:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))

    return display


class StripeModelAdmin(admin.ModelAdmin):
    """Shared parts: fields locked once Stripe has the object, display columns, per-row actions."""

    #: read-only once :meth:`is_locked` says the object exists at Stripe
    locked_fields: Sequence[str] = ()
    exclude = ("stripe_response",)

    stripe_response_display = json_display("stripe_response", "Stripe response")

    def is_locked(self, obj: Any) -> bool:
        return bool(getattr(obj, "is_created_at_stripe", False))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        """In the model's order (editable or not); timestamps and raw Stripe data last."""
        names = [f.name for f in self.model._meta.fields if f.name not in ("id", "created", "updated")]
        rank = {name: i for i, name in enumerate(names)}
        return sorted(super().get_fields(request, obj), key=lambda name: rank.get(name, len(rank)))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        fields = list(super().get_readonly_fields(request, obj))
        # bookkeeping of webhooks and of refunds waiting for Stripe's confirmation
        model_fields = {field.name for field in self.model._meta.fields}
        fields += [
            name
            for name in ("last_event_at", "pending_refund_amount", "source_event_times")
            if name in model_fields
        ]
        if obj is not None and self.is_locked(obj):
            fields += [name for name in self.locked_fields if name not in fields]
        return fields

    @admin.display(description="user", ordering=f"user__{USER_FIELDS[-1]}" if USER_FIELDS else "user")
    def user_display(self, obj: Any) -> str:
        name = obj.user.get_username() if hasattr(obj.user, "get_username") else str(obj.user)
        email = getattr(obj.user, USER_FIELDS[0]) if USER_FIELDS else ""
        return f"{name} <{email}>" if email and email != name else str(name)

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: Any) -> str:
        return format_amount(obj.amount, obj.currency)

    def run_per_row(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        operation: str | Callable[[Any], object],
        *,
        doing: str,
        done: str,
        **kwargs: Any,
    ) -> None:
        """Call ``operation`` (a callable, or a method name called with ``kwargs``) on each row.

        One error message per row that raised ``AaStripeError`` (naming the row and the error),
        one success message counting the others; any other exception propagates.
        """
        call = operator.methodcaller(operation, **kwargs) if isinstance(operation, str) else operation
        opts = self.model._meta
        succeeded = 0
        for obj in queryset:
            try:
                call(obj)
            except AaStripeError as err:
                label = f"{opts.verbose_name} #{obj.pk} “{obj}”"
                self.message_user(request, f"Could not {doing} {label}: {err.message}", messages.ERROR)
            else:
                succeeded += 1
        if succeeded:
            name = opts.verbose_name if succeeded == 1 else opts.verbose_name_plural
            self.message_user(request, f"{done} {succeeded} {name}.", messages.SUCCESS)


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
        "stripe_customer_id is_created_at_stripe default_source card created updated sources_display "
        "stripe_js_response_display stripe_response_display"
    ).split()
    locked_fields = ("user",)
    actions = ("refresh_from_stripe",)

    sources_display = json_display("sources", "sources")
    stripe_js_response_display = json_display("stripe_js_response", "stripe.js token")

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Sequence[str]:
        # The stripe.js token is typed in only when adding a customer by hand.
        return ("stripe_response", "sources") if obj is None else self.exclude

    def is_locked(self, obj: Any) -> bool:
        return obj.pk is not None

    @admin.display(description="default card")
    def card(self, obj: StripeCustomer) -> str:
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
    fields = readonly_fields = ("stripe_refund_id", "amount_display", "created")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="amount")
    def amount_display(self, obj: StripeRefund) -> str:
        return format_amount(obj.amount, obj.currency)


@admin.register(StripeCharge)
class StripeChargeAdmin(StripeModelAdmin):
    list_display = (
        "id user_display amount_display refunded_display description is_charged is_refunded "
        "charge_attempt_failed is_manual_charge stripe_charge_id created"
    ).split()
    list_filter = ("is_charged", "is_refunded", "charge_attempt_failed", "is_manual_charge", CURRENCY_FILTER)
    list_select_related = ("user",)
    search_fields = (*user_search_fields(), "=stripe_charge_id", "=stripe_refund_id", "description")
    search_fields += ("comment", "=customer__stripe_customer_id")
    date_hierarchy = "created"
    raw_id_fields = ("user",)
    autocomplete_fields = ("customer",)
    readonly_fields = (
        "uuid stripe_charge_id is_charged charge_attempt_failed amount_refunded is_refunded "
        "stripe_refund_id attempt attempt_started_at created updated stripe_response_display"
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
    def refund_charges(self, request: HttpRequest, queryset: QuerySet[StripeCharge]) -> None:
        self.run_per_row(request, queryset, "refund", doing="refund", done="Refunded")

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


@admin.register(StripeRefund)
class StripeRefundAdmin(StripeModelAdmin):
    list_display = ("stripe_refund_id", "charge", "amount_display", "created")
    list_filter = (CURRENCY_FILTER,)
    list_select_related = ("charge", "charge__user")
    search_fields = ("=stripe_refund_id", "=charge__stripe_charge_id", *user_search_fields("charge__user"))
    date_hierarchy = "created"
    readonly_fields = "charge stripe_refund_id amount_display created updated stripe_response_display".split()
    exclude = ("stripe_response", "amount", "currency")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StripeSubscriptionPlan)
class StripeSubscriptionPlanAdmin(StripeModelAdmin):
    list_display = "name stripe_plan_id amount_display billed trial_period_days is_created_at_stripe".split()
    list_filter = ("interval", CURRENCY_FILTER, "is_created_at_stripe")
    search_fields = ("name", "=stripe_plan_id")
    readonly_fields = ("is_created_at_stripe", "created", "updated", "stripe_response_display")
    # Stripe cannot change a plan's price and the library pushes no edits: only `source` stays editable.
    locked_fields = (
        "stripe_plan_id name amount currency interval interval_count trial_period_days "
        "statement_descriptor metadata"
    ).split()

    @admin.display(description="billed", ordering="interval")
    def billed(self, obj: StripeSubscriptionPlan) -> str:
        if obj.interval_count == 1:
            return f"every {obj.interval}"
        return f"every {obj.interval_count} {obj.interval}s"


@admin.register(StripeSubscription)
class StripeSubscriptionAdmin(StripeModelAdmin):
    list_display = (
        "id user_display plan status stripe_subscription_id at_period_end end_date canceled_at created"
    ).split()
    list_filter = ("status", "at_period_end", "is_created_at_stripe", "plan__interval")
    list_select_related = ("user", "plan")
    search_fields = (*user_search_fields(), "=stripe_subscription_id", "=customer__stripe_customer_id")
    search_fields += ("plan__name", "=plan__stripe_plan_id", "=coupon__coupon_id")
    date_hierarchy = "created"
    raw_id_fields = ("user",)
    autocomplete_fields = ("plan", "customer", "coupon")
    readonly_fields = (
        "uuid stripe_subscription_id is_created_at_stripe status at_period_end canceled_at created updated "
        "stripe_response_display"
    ).split()
    locked_fields = ("user", "plan", "customer", "coupon", "metadata", "tax_percent")
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
    so that Stripe refusing it is a form error instead of a server error."""

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:
            return
        try:
            self.instance.save()
        except AaStripeError as err:
            self.add_error(None, f"Stripe refused the coupon: {err.message}")


@admin.register(StripeCoupon)
class StripeCouponAdmin(StripeModelAdmin):
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
        "stripe_response_display"
    ).split()
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

    # Deleting a coupon deletes it at Stripe; the row stays, marked is_deleted.
    def delete_model(self, request: HttpRequest, obj: StripeCoupon) -> None:
        try:
            obj.delete()
        except AaStripeError as err:
            using = router.db_for_write(StripeCoupon)
            if transaction.get_connection(using).in_atomic_block:
                transaction.set_rollback(True, using=using)  # drop the "deleted" log entry
            request._aa_stripe_delete_failed = True  # type: ignore[attr-defined]
            self.message_user(request, f"Could not delete coupon “{obj}”: {err.message}", messages.ERROR)

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> HttpResponse:
        if getattr(request, "_aa_stripe_delete_failed", False):
            return redirect(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", obj_id)
        return super().response_delete(request, obj_display, obj_id)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[StripeCoupon]) -> None:
        self.run_per_row(request, queryset, "delete", doing="delete", done="Deleted at Stripe:")


class ParseFailedFilter(admin.SimpleListFilter):
    """Rows whose last parse failed (``parse_error`` set): they wait for a retry."""

    title = "parse failed"
    parameter_name = "parse_failed"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
        if self.value() == "yes":
            return queryset.exclude(parse_error="")
        if self.value() == "no":
            return queryset.filter(parse_error="")
        return None


@admin.register(StripeWebhook)
class StripeWebhookAdmin(admin.ModelAdmin):
    list_display = "id event_type is_parsed parse_failed parse_attempts stripe_created_at created".split()
    list_filter = ("is_parsed", ParseFailedFilter, "event_type")
    search_fields = ("=id", "event_type", "parse_error")
    date_hierarchy = "created"
    fields = readonly_fields = (
        "id event_type stripe_created_at created updated is_parsed parse_attempts parse_error "
        "raw_data_display"
    ).split()
    actions = ("reparse",)

    raw_data_display = json_display("raw_data", "raw data")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_reparse_permission(self, request: HttpRequest) -> bool:
        # Parsing runs the handlers (and the project's receivers): not for view-only staff.
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.display(description="parse failed", boolean=True)
    def parse_failed(self, obj: StripeWebhook) -> bool:
        return bool(obj.parse_error)

    @admin.action(description="Re-parse selected webhooks", permissions=["reparse"])
    def reparse(self, request: HttpRequest, queryset: QuerySet[StripeWebhook]) -> None:
        """Parse each unparsed row (failed ones included), oldest event first; parsed rows are skipped."""
        skipped = list(queryset.filter(is_parsed=True).values_list("pk", flat=True))
        todo = StripeWebhook.parse_queue(include_failed=True).filter(pk__in=queryset.values("pk"))
        parsed, busy = 0, []
        for pk in list(todo.values_list("pk", flat=True)):
            # The same claim as parse_stripe_webhooks: a row a worker holds right now is left to it.
            webhook = StripeWebhook.process_next(StripeWebhook.parse_queue(include_failed=True).filter(pk=pk))
            if webhook is None:
                busy.append(pk)
            elif webhook.is_parsed:
                parsed += 1
            else:
                error = f"Could not parse webhook “{webhook}”: {webhook.parse_error}"
                self.message_user(request, error, messages.ERROR)
        self.report_reparse(request, parsed, skipped, busy)

    def report_reparse(self, request: HttpRequest, parsed: int, skipped: list[str], busy: list[str]) -> None:
        if parsed:
            self.message_user(
                request, f"Parsed {parsed} webhook{'s' if parsed != 1 else ''}.", messages.SUCCESS
            )
        if skipped:
            self.message_user(request, f"Skipped, already parsed: {_some(skipped)}.", messages.INFO)
        if busy:
            self.message_user(
                request, f"Skipped, parsed elsewhere right now: {_some(busy)}.", messages.WARNING
            )


def _some(ids: list[str], shown: int = 20) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more
