"""Deletions that late events cannot undo.

Stripe delivers events at least once and in any order: a ``coupon.created`` may arrive after the
``coupon.deleted`` of the same coupon, also when no row of it was ever made here. Every deletion
event of an object type that events create or delete leaves a tombstone keyed by the object's id
and its Stripe ``created`` time (ids such as coupon codes are reused after deletion; the creation
time tells a namesake apart), and no older event of that object is applied after it.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class StripeTombstone(models.Model):
    """One Stripe object that was deleted (``object_type`` is Stripe's ``object``, e.g. ``coupon``)."""

    object_type = models.CharField(max_length=64)
    stripe_id = models.CharField(max_length=255)
    stripe_created = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Stripe's creation time of the deleted object; empty when the event did not say."),
    )
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Stripe's time of the deletion event.")
    )
    event_id = models.CharField(max_length=255, blank=True, help_text=_("The deletion event (evt_...)."))
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["object_type", "stripe_id", "stripe_created"], name="aa_stripe_unique_tombstone"
            )
        ]
        indexes = [models.Index(fields=["object_type", "stripe_id"], name="aa_stripe_tombstone_lookup")]

    def __str__(self) -> str:
        return f"{self.object_type} {self.stripe_id} (deleted)"

    @classmethod
    def bury(
        cls,
        object_type: str,
        stripe_id: str,
        stripe_created: datetime | None,
        deleted_at: datetime | None,
        event_id: str = "",
    ) -> None:
        """Record the deletion (once: a repeated deletion event changes nothing)."""
        cls.objects.bulk_create(
            [
                cls(
                    object_type=object_type,
                    stripe_id=stripe_id,
                    stripe_created=stripe_created,
                    deleted_at=deleted_at,
                    event_id=event_id,
                )
            ],
            ignore_conflicts=True,
        )

    @classmethod
    def is_buried(
        cls, object_type: str, stripe_id: str, stripe_created: datetime | None, event_at: datetime | None
    ) -> bool:
        """Whether the object (this very one: same id and creation time) was deleted.

        A deletion whose event named no creation time covers every object of that id created
        before it; an event naming no creation time is covered by a deletion after the event.
        """
        rows = cls.objects.filter(object_type=object_type, stripe_id=stripe_id)
        if stripe_created is not None:
            return rows.filter(
                Q(stripe_created=stripe_created) | Q(stripe_created=None, deleted_at__gte=stripe_created)
            ).exists()
        if event_at is None:
            return rows.exists()
        return rows.filter(deleted_at__gte=event_at).exists()
