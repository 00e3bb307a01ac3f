from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, router
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    StripeAlreadyCanceled,
    StripeInternalError,
    StripeMethodNotAllowed,
    StripeOperationInProgress,
)
from aa_stripe.guard import library_atomic
from aa_stripe.operations import journal
from aa_stripe.operations.record import StripeOperation

from .base import USER_MODEL, StripeBasicModel, lock_for_update, timestamp_to_datetime
from .coupons import StripeCoupon
from .customers import StripeCustomer
from .plans import StripeSubscriptionPlan


class StripeSubscription(StripeBasicModel):
    """A user's subscription to a :class:`StripeSubscriptionPlan`."""

    STATUS_TRIAL = "trialing"
    STATUS_ACTIVE = "active"
    STATUS_PAST_DUE = "past_due"
    STATUS_CANCELED = "canceled"
    STATUS_UNPAID = "unpaid"
    STATUS_INCOMPLETE = "incomplete"
    STATUS_INCOMPLETE_EXPIRED = "incomplete_expired"
    STATUS_PAUSED = "paused"
    STATUS_CHOICES = (
        (STATUS_TRIAL, STATUS_TRIAL),
        (STATUS_ACTIVE, STATUS_ACTIVE),
        (STATUS_PAST_DUE, STATUS_PAST_DUE),
        (STATUS_CANCELED, STATUS_CANCELED),
        (STATUS_UNPAID, STATUS_UNPAID),
        (STATUS_INCOMPLETE, STATUS_INCOMPLETE),
        (STATUS_INCOMPLETE_EXPIRED, STATUS_INCOMPLETE_EXPIRED),
        (STATUS_PAUSED, STATUS_PAUSED),
    )

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    stripe_subscription_id = models.CharField(max_length=255, blank=True, db_index=True)
    is_created_at_stripe = models.BooleanField(default=False)
    plan = models.ForeignKey(StripeSubscriptionPlan, on_delete=models.CASCADE)
    user = models.ForeignKey(USER_MODEL, on_delete=models.CASCADE, related_name="stripe_subscriptions")
    customer = models.ForeignKey(StripeCustomer, on_delete=models.SET_NULL, null=True, blank=True)
    status = models.CharField(
        max_length=255,
        blank=True,
        choices=STATUS_CHOICES,
        help_text=_("Stripe's status; empty until created."),
    )
    metadata = models.JSONField(blank=True, default=dict, help_text=_("Key/value pairs sent to Stripe."))
    tax_percent = models.DecimalField(
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        decimal_places=2,
        max_digits=3,
        help_text=_("Kept from aa-stripe; Stripe removed tax_percent, so it is not sent."),
    )
    coupon = models.ForeignKey(StripeCoupon, blank=True, null=True, on_delete=models.SET_NULL)
    end_date = models.DateField(null=True, blank=True, db_index=True, help_text=_("Cancel after this day."))
    canceled_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_event_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Stripe's time of the last webhook event applied to this row.")
    )
    at_period_end = models.BooleanField(default=False, help_text=_("Canceled to end at the period's end."))

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_subscription_id"],
                condition=~Q(stripe_subscription_id=""),
                name="aa_stripe_unique_stripe_subscription_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} on {self.plan.name} ({self.stripe_subscription_id or 'not at Stripe'})"

    @classmethod
    def subscribe(
        cls,
        user: Any,
        plan: StripeSubscriptionPlan,
        *,
        coupon: StripeCoupon | None = None,
        metadata: dict[str, Any] | None = None,
        customer: StripeCustomer | None = None,
    ) -> StripeSubscription:
        """Subscribe ``user`` to ``plan`` at Stripe; the new row, created there.

        Safe to call again with the same arguments after any failure: an identical earlier request
        whose outcome is unknown is finished (its row, its frozen request) instead of subscribing
        twice, and one being sent right now raises :class:`StripeOperationInProgress`.

        Errors from Stripe (and the in-progress one) carry the row as ``error.subscription``: the
        unfinished row when the outcome is unknown, the row when Stripe refused a retry (Stripe
        may have acted on an earlier attempt: never deleted), None when Stripe refused the first
        and only attempt (the row is deleted). Refusals before anything is sent
        (:class:`StripeNoActiveCustomer`, a deleted coupon, a plan not at Stripe) make no row.
        """
        operation, row, made_now = subscription_operations.plan_subscribe(
            user, plan, coupon, metadata or {}, customer
        )
        try:
            outcome = journal.execute(operation, target=row)
        except StripeOperationInProgress as err:
            err.subscription = row  # type: ignore[attr-defined]
            raise
        if outcome.succeeded:
            return row
        error = outcome.error or StripeInternalError()
        kept: StripeSubscription | None = row
        if outcome.state == StripeOperation.REFUSED and made_now:
            row.delete()  # refused at its one and only attempt: Stripe made nothing
            kept = None
        error.subscription = kept  # type: ignore[attr-defined]
        raise error

    def create_at_stripe(self) -> dict[str, Any]:
        """Create the subscription at Stripe; returns Stripe's subscription.

        Uses ``customer`` when it is active, else the user's latest active customer. A durable
        operation of the journal, as ``StripeCharge.charge()`` is: the request is committed with
        its idempotency key (``subscription:<uuid>``) before Stripe is called, and after an unknown
        outcome calling again re-sends it exactly as it went (also when the customer changed
        meanwhile), after looking it up at Stripe when the key may be gone or a 5xx would be
        replayed. Stripe refused it: its error is raised and a later call is a new attempt.
        Works on the saved row (an unsaved one is saved first).
        """
        operation = subscription_operations.plan_create(self)
        return journal.raise_unless_succeeded(journal.execute(operation, target=self))

    def set_stripe_data(self, subscription: dict[str, Any]) -> None:
        """Apply Stripe's subscription object to the row (no Stripe call) and save."""
        self.stripe_subscription_id = subscription["id"]
        self.stripe_response = subscription
        self.is_created_at_stripe = True
        was_canceled = self.status == self.STATUS_CANCELED
        self.status = subscription.get("status") or self.status
        if not was_canceled:
            # Stripe's word, also when a subscription set to end was reactivated there, and in the
            # object that cancels it; once canceled, at_period_end keeps saying how.
            self.at_period_end = bool(subscription.get("cancel_at_period_end"))
        ended = subscription.get("canceled_at") or subscription.get("ended_at")
        if ended and not self.canceled_at:
            self.canceled_at = timestamp_to_datetime(ended)
        elif self.status != self.STATUS_CANCELED and not ended and not self.at_period_end:
            self.canceled_at = None  # reactivated at Stripe
        self.save()

    def refresh_from_stripe(self) -> dict[str, Any]:
        """Fetch the subscription from Stripe, update the row, return Stripe's subscription."""
        if not self.stripe_subscription_id:
            raise StripeMethodNotAllowed("This subscription is not created at Stripe yet.")
        subscription = stripe_api.call("subscriptions", "retrieve", self.stripe_subscription_id)
        # Read first, then lock and apply: no lock is held while Stripe answers.
        with library_atomic(using=router.db_for_write(type(self), instance=self)):
            lock_for_update(self)
            self.set_stripe_data(subscription)
        return subscription

    def cancel(self, at_period_end: bool = False) -> dict[str, Any]:
        """Cancel at Stripe now, or at the end of the paid period with ``at_period_end=True``.

        Raises :class:`StripeAlreadyCanceled` when it is already canceled (or already set to
        end at the period end and ``at_period_end`` is asked again). A durable operation of the
        journal: after an unknown outcome, calling again (or ``reconcile_stripe_operations``)
        finishes the same request; while another cancellation of the row is unfinished,
        :class:`StripeOperationInProgress`. A subscription Stripe no longer has counts as canceled.
        """
        self._refuse_if_canceled(at_period_end)
        self.refresh_from_stripe()
        self._refuse_if_canceled(at_period_end)
        operation = subscription_operations.plan_cancel(self, at_period_end)
        outcome = journal.execute(operation, target=self)
        if subscription_operations.is_gone(outcome):
            return self.stripe_response
        return journal.raise_unless_succeeded(outcome)

    def _refuse_if_canceled(self, at_period_end: bool) -> None:
        if self.status == self.STATUS_CANCELED:
            raise StripeAlreadyCanceled()
        if at_period_end and self.at_period_end:
            raise StripeAlreadyCanceled("The subscription is already set to end at the period end.")

    @classmethod
    def get_subcriptions_for_cancel(cls) -> QuerySet[StripeSubscription]:
        """Subscriptions past their ``end_date`` that are still running (aa-stripe's spelling)."""
        today = timezone.localtime(timezone.now() + timedelta(hours=1)).date()
        return cls.objects.filter(
            end_date__lte=today,
            status__in=[cls.STATUS_ACTIVE, cls.STATUS_TRIAL, cls.STATUS_PAST_DUE],
            at_period_end=False,
        )

    get_subscriptions_for_cancel = get_subcriptions_for_cancel

    @classmethod
    def end_subscriptions(cls, at_period_end: bool = False) -> int:
        """Cancel every subscription past its end date; stops at the first error.

        Cron should use the ``end_subscriptions`` command, which carries on past failures and
        reports them. Returns the number canceled.
        """
        canceled = 0
        for subscription in cls.get_subcriptions_for_cancel().select_related("plan"):
            subscription.cancel(at_period_end=at_period_end)
            canceled += 1
        return canceled


# The journal's subscription kinds (imported last: it needs StripeSubscription defined).
from . import subscription_operations  # noqa: E402
