from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import models
from django.db.models import Model
from django.utils.translation import gettext_lazy as _

from aa_stripe.conf import user_model_label
from aa_stripe.redaction import redact_secrets

USER_MODEL = user_model_label()


class StripeBasicModel(models.Model):
    """Timestamps and the raw Stripe object every model keeps beside its columns.

    Every JSON column (``stripe_response`` and a model's own, such as a customer's ``sources``) is
    saved with its client secrets redacted (:mod:`aa_stripe.redaction`), also in memory: a secret
    is handed to its owner from Stripe's answer at request time, never read back from a row.
    Bulk writes (``bulk_create``, ``bulk_update``, ``QuerySet.update``) skip :meth:`save`; their
    callers redact for themselves.
    """

    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    stripe_response = models.JSONField(
        blank=True, default=dict, help_text=_("The last object (or error) Stripe answered with.")
    )

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        saved = kwargs.get("update_fields")
        saved = None if saved is None else set(saved)
        for field in self._meta.concrete_fields:
            if not isinstance(field, models.JSONField) or (saved is not None and field.name not in saved):
                continue
            value = getattr(self, field.attname)
            if value is None and not field.null:
                # A cleared JSON box in a form arrives as None; the columns hold {} or [] instead.
                setattr(self, field.attname, field.get_default())
            else:
                setattr(self, field.attname, redact_secrets(value))
        super().save(*args, **kwargs)


def timestamp_to_datetime(timestamp: int | float | None) -> datetime | None:
    """Stripe's Unix timestamps as aware datetimes (UTC)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(int(timestamp), tz=UTC)


def lock_for_update(instance: Model) -> None:
    """Reload ``instance`` from the database with a row lock (inside a transaction).

    On PostgreSQL a second process calling this for the same row waits until the first
    commits, then sees its outcome; SQLite serialises writers anyway.
    """
    manager: Any = type(instance)._base_manager
    instance.refresh_from_db(from_queryset=manager.select_for_update())
