"""The :class:`StripeOperation` model: one row per logical write to Stripe."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.translation import gettext_lazy as _


class StripeOperation(models.Model):
    """A write to Stripe: what is sent (frozen), under which idempotency key, and how it ended.

    States: ``planned`` (written, not sent yet), ``sending`` (a worker holds it until
    ``lease_until``), ``succeeded`` (Stripe answered with the object), ``refused`` (Stripe said no:
    a declined card, refused parameters), ``unknown`` (no answer: sent again later with the same
    key and parameters, after a lookup at Stripe when the key may be gone or a 5xx is replayed).
    """

    PLANNED = "planned"
    SENDING = "sending"
    SUCCEEDED = "succeeded"
    REFUSED = "refused"
    UNKNOWN = "unknown"
    STATES = [
        (PLANNED, _("planned")),
        (SENDING, _("sending")),
        (SUCCEEDED, _("succeeded")),
        (REFUSED, _("refused")),
        (UNKNOWN, _("unknown")),
    ]
    UNRESOLVED = (PLANNED, SENDING, UNKNOWN)

    uuid = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, help_text=_("Sent in metadata[operation].")
    )
    key = models.CharField(max_length=255, unique=True, help_text=_("The Idempotency-Key sent."))
    kind = models.CharField(max_length=64, db_index=True, help_text=_("e.g. charge, refund"))
    content_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.SET_NULL)
    object_id = models.CharField(max_length=255, blank=True)
    target = GenericForeignKey("content_type", "object_id")
    service = models.CharField(max_length=64, help_text=_("stripe-python's service, e.g. charges"))
    method = models.CharField(max_length=64, help_text=_("e.g. create"))
    ids = models.JSONField(blank=True, default=list, help_text=_("Ids in the request's path, if any."))
    params = models.JSONField(blank=True, default=dict, help_text=_("Exactly what is sent, every time."))
    state = models.CharField(max_length=16, choices=STATES, default=PLANNED, db_index=True)
    attempts = models.PositiveIntegerField(default=0, help_text=_("Requests sent."))
    needs_lookup = models.BooleanField(
        default=False, help_text=_("Look the outcome up at Stripe before sending again.")
    )
    legacy = models.BooleanField(
        default=False,
        help_text=_(
            "Made on upgrade from an older version's in-flight state: its request went without "
            "metadata[operation], so a lookup matches the older version's own ids."
        ),
    )
    first_sent_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    stripe_id = models.CharField(max_length=255, blank=True, help_text=_("What Stripe made (ch_, re_, ...)."))
    error_code = models.CharField(max_length=255, blank=True)
    error_message = models.TextField(blank=True)
    http_status = models.PositiveIntegerField(null=True, blank=True)
    result = models.JSONField(blank=True, default=dict, help_text=_("Stripe's last answer (or error body)."))
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["content_type", "object_id", "state"], name="aa_stripe_operation_target"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key} ({self.state})"

    @property
    def is_resolved(self) -> bool:
        return self.state in (self.SUCCEEDED, self.REFUSED)

    @classmethod
    def unresolved_for(cls, target: models.Model) -> models.QuerySet[StripeOperation]:
        """The operations of ``target`` not finished yet, oldest first."""
        return cls.objects.filter(
            content_type=ContentType.objects.get_for_model(type(target)),
            object_id=str(target.pk),
            state__in=cls.UNRESOLVED,
        ).order_by("id")

    def describe(self) -> dict[str, Any]:
        """A short dict for logs and admin messages."""
        return {"key": self.key, "state": self.state, "stripe_id": self.stripe_id, "error": self.error_code}
