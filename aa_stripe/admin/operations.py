"""Admin for the operations journal: every write to Stripe, read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from aa_stripe.models import StripeOperation

from .base import json_display


@admin.register(StripeOperation)
class StripeOperationAdmin(admin.ModelAdmin):
    """What was sent to Stripe, under which key, and how it ended; unresolved ones are finished by
    ``reconcile_stripe_operations``."""

    list_display = ("id", "kind", "state", "key", "stripe_id", "error_code", "attempts", "first_sent_at")
    list_filter = ("state", "kind", "needs_lookup")
    search_fields = ("=key", "=stripe_id", "=object_id", "=uuid")
    date_hierarchy = "created"
    fields = readonly_fields = (
        "uuid key kind state content_type object_id service method ids params_display attempts "
        "needs_lookup first_sent_at last_sent_at lease_until resolved_at stripe_id error_code "
        "error_message http_status result_display created updated"
    ).split()

    params_display = json_display("params", "params")
    result_display = json_display("result", "result")

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # The links from a charge, refund, subscription or coupon page filter on their row.
        return lookup in _TARGET_LOOKUPS or super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


_TARGET_LOOKUPS = ("content_type__id__exact", "object_id__exact", "kind__exact")


def operations_link(obj: Model, kind: str | None = None) -> str:
    """A link to the operations of ``obj`` (of ``kind``), with how many are unresolved."""
    content_type = ContentType.objects.get_for_model(type(obj))
    operations = StripeOperation.objects.filter(content_type=content_type, object_id=str(obj.pk))
    if kind:
        operations = operations.filter(kind=kind)
    total = operations.count()
    unresolved = operations.filter(state__in=StripeOperation.UNRESOLVED).count()
    url = reverse("admin:aa_stripe_stripeoperation_changelist")
    query = f"?content_type__id__exact={content_type.pk}&object_id__exact={obj.pk}"
    if kind:
        query += f"&kind__exact={kind}"
    label = f"{total} operation{'s' if total != 1 else ''}"
    if unresolved:
        label += f", {unresolved} unresolved"
    return format_html('<a href="{}{}">{}</a>', url, query, label)
