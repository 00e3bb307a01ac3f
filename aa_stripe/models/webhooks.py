from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class StripeWebhook(models.Model):
    """A Stripe event as delivered to the webhook endpoint, stored before it is parsed."""

    id = models.CharField(primary_key=True, max_length=255, help_text=_("Stripe's event id (evt_...)."))
    event_type = models.CharField(
        max_length=255, blank=True, db_index=True, help_text=_("e.g. coupon.created")
    )
    stripe_created_at = models.DateTimeField(
        null=True, blank=True, help_text=_("When Stripe created the event.")
    )
    created = models.DateTimeField(auto_now_add=True, help_text=_("When we received it."))
    updated = models.DateTimeField(auto_now=True)
    is_parsed = models.BooleanField(default=False, db_index=True)
    raw_data = models.JSONField(blank=True, default=dict, help_text=_("The event exactly as Stripe sent it."))
    parse_error = models.TextField(blank=True)
    parse_attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.id} ({self.event_type or 'unknown'})"
