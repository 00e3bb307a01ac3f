"""Admin for stored webhook events: find, filter by outcome, re-parse."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from aa_stripe.models import StripeTombstone, StripeWebhook

from .base import json_display


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


@admin.register(StripeTombstone)
class StripeTombstoneAdmin(admin.ModelAdmin):
    """Deletions webhook events applied: no older event of these objects is applied again."""

    list_display = ("object_type", "stripe_id", "stripe_created", "deleted_at", "event_id")
    list_filter = ("object_type",)
    search_fields = ("=stripe_id", "=event_id")
    fields = readonly_fields = (*list_display, "created")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _some(ids: list[str], shown: int = 20) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more
