"""Idempotency keys of the library's clients (a front-end's "Pay" button, an admin form).

The same key from the same user for the same action returns the first call's answer instead of
acting twice, also when both calls arrive at once; the same key with another input is refused.
The answer is kept as opaque JSON for the front door that stored it (the GraphQL layer keeps the
ids of the objects its payload returned). Keys are kept at least 24 hours, as Stripe keeps its own,
and pruned by ``prune_stripe_operations``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import IntegrityError, models, router
from django.utils.translation import gettext_lazy as _

from aa_stripe.guard import library_atomic

#: Stripe keeps its keys at least this long; so do we.
REQUEST_KEY_LIFETIME = timedelta(hours=24)


class StripeRequestKey(models.Model):
    """One idempotency key a client sent: who, for what, with which input, and the answer."""

    RUNNING = "running"
    DONE = "done"
    STATES = [(RUNNING, _("running")), (DONE, _("done"))]

    owner = models.CharField(max_length=255, help_text=_("Who sent it: the user's model label and pk."))
    scope = models.CharField(max_length=255, help_text=_("What it was for, e.g. a mutation's name."))
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text=_("SHA-256 of the input."))
    state = models.CharField(max_length=16, choices=STATES, default=RUNNING)
    response = models.JSONField(blank=True, default=dict)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "scope", "key"], name="aa_stripe_unique_request_key")
        ]
        indexes = [models.Index(fields=["created"], name="aa_stripe_request_key_created")]

    def __str__(self) -> str:
        return f"{self.scope} {self.key} ({self.state})"

    @staticmethod
    def owner_of(user: Any) -> str:
        return f"{user._meta.label_lower}:{user.pk}"

    @classmethod
    def claim(cls, owner: str, scope: str, key: str, fingerprint: str) -> tuple[StripeRequestKey, bool]:
        """``(row, True)`` when this call is the first with the key (it must act, then
        :meth:`finish`); else ``(the first call's row, False)``. The insert commits at once, so a
        concurrent call with the same key waits for it, then finds it."""
        using = router.db_for_write(cls)
        row = cls(owner=owner, scope=scope, key=key, fingerprint=fingerprint)
        try:
            with library_atomic(using=using):
                row.save(force_insert=True, using=using)
        except IntegrityError:
            return cls.objects.using(using).get(owner=owner, scope=scope, key=key), False
        return row, True

    def finish(self, response: dict[str, Any]) -> None:
        self.state, self.response = self.DONE, response
        self.save(update_fields=["state", "response", "updated"])

    def release(self) -> None:
        """The first call failed before it acted: the key may be used again."""
        type(self).objects.filter(pk=self.pk, state=self.RUNNING).delete()
