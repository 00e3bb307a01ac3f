"""Admin for the operations journal: every write to Stripe, read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
