from __future__ import annotations

import logging
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
    StripeInvalidInput,
    StripeMethodNotAllowed,
    StripeOperationInProgress,
    StripeSubscriptionIncomplete,
)
from aa_stripe.guard import library_atomic
from aa_stripe.operations import journal
from aa_stripe.operations.record import StripeOperation

from .base import USER_MODEL, StripeBasicModel, lock_for_update, timestamp_to_datetime
from .coupons import StripeCoupon
from .customers import StripeCustomer
from .payment_methods import StripePaymentMethod
from .plans import StripeSubscriptionPlan
from .products import StripePrice, StripeProduct

logger = logging.getLogger("aa_stripe")


def offer_id_of(subscription: dict[str, Any]) -> str:
    """The id of the price (or plan) a Stripe subscription is for: its first item's; "" when unknown."""
    items = (subscription.get("items") or {}).get("data") or [{}]
    offer = items[0].get("price") or items[0].get("plan") or subscription.get("plan") or {}
    return (offer.get("id") if isinstance(offer, dict) else offer) or ""


class StripeSubscription(StripeBasicModel):
    """A user's subscription to a recurring :class:`StripePrice` or a legacy plan."""

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
    plan = models.ForeignKey(
        StripeSubscriptionPlan,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        help_text=_("The legacy plan subscribed to; empty for subscriptions to a price."),
    )
    price = models.ForeignKey(
        StripePrice,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="subscriptions",
        help_text=_("The recurring price subscribed to; empty for subscriptions to a legacy plan."),
    )
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
    default_payment_method = models.CharField(
        max_length=255,
        blank=True,
        help_text=_(
            "Stripe id of the payment method the subscription charges (the one that paid its first "
            "invoice); empty: the customer's default."
        ),
    )
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    trial_start = models.DateTimeField(null=True, blank=True)
    trial_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(plan__isnull=False) | Q(price__isnull=False),
                name="aa_stripe_subscription_plan_or_price",
            ),
            models.UniqueConstraint(
                fields=["stripe_subscription_id"],
                condition=~Q(stripe_subscription_id=""),
                name="aa_stripe_unique_stripe_subscription_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} on {self.offer_name} ({self.stripe_subscription_id or 'not at Stripe'})"

    @property
    def offer_name(self) -> str:
        """What is subscribed to, for people: the price's product or nickname, or the plan's name."""
        if self.price_id is not None:
            try:
                return str(self.price.product or self.price)
            except StripeProduct.DoesNotExist:  # its product's events have not arrived yet
                return str(self.price)
        return self.plan.name if self.plan_id is not None else ""

    @property
    def currency(self) -> str:
        """The currency it is billed in (its price's or plan's)."""
        offer = self.price if self.price_id is not None else self.plan
        return offer.currency if offer is not None else ""

    @classmethod
    def subscribe(
        cls,
        user: Any,
        plan: StripeSubscriptionPlan | StripePrice | None = None,
        *,
        price: StripePrice | None = None,
        coupon: StripeCoupon | None = None,
        metadata: dict[str, Any] | None = None,
        customer: StripeCustomer | None = None,
        payment_method: StripePaymentMethod | None = None,
        trial_period_days: int | None = None,
    ) -> StripeSubscription:
        """Subscribe ``user`` to a recurring ``price`` (or a legacy ``plan``) at Stripe; the new row.

        ``plan`` may also be given a :class:`StripePrice` (the second positional argument of the
        original API). Returns the row only when nothing waits for payment (``active``, or
        ``trialing``). How the first payment goes (``STRIPE_CHARGE_API = "payment_intents"``, the
        default): with ``payment_method`` (one of the user's saved methods) or a default payment
        method of the customer, Stripe charges it at once (``allow_incomplete``); without any, Stripe
        waits for stripe.js to collect a card (``default_incomplete``; a user without a Stripe customer
        gets one, no card needed), for a price; a legacy plan needs a card on file, as aa-stripe's did
        (:class:`StripeNoActiveCustomer` otherwise). When the bank wants the customer (3-D Secure),
        declines, or there is no card, the subscription is made but ``incomplete``:
        :class:`StripeSubscriptionIncomplete`
        is raised with the row as ``error.subscription``, whose :meth:`client_secret_for_owner` hands
        stripe.js the first invoice's confirmation secret. Subscribing again to the same price (or
        plan) and coupon while that row waits raises the same for the same row: never two. A trial
        without a card is ``trialing`` and hands over its pending SetupIntent's secret. The method
        that pays becomes the subscription's ``default_payment_method``; the customer's default is
        unchanged. With ``STRIPE_CHARGE_API = "charges"`` a first payment that fails is an error and
        makes no subscription, as aa-stripe did.

        Refused before anything is sent or saved: :class:`StripeInvalidInput` (``field="price"``) for
        a price that is archived, deleted, not created at Stripe, one-time, or in another currency
        than the customer's running subscriptions; :class:`StripeMethodNotAllowed` for a plan not at
        Stripe, a deleted coupon, or a payment method of another customer;
        :class:`StripePaymentMethodExpired` for an expired card.

        Safe to call again with the same arguments after any failure: an identical earlier request
        whose outcome is unknown is finished (its row, its frozen request) instead of subscribing
        twice, and one being sent right now raises :class:`StripeOperationInProgress`.

        Errors from Stripe (and the in-progress one) carry the row as ``error.subscription``: the
        unfinished row when the outcome is unknown, the row when Stripe refused a retry (Stripe
        may have acted on an earlier attempt: never deleted), None when Stripe refused the first
        and only attempt (the row is deleted).
        """
        if isinstance(plan, StripePrice):
            if price is not None:
                raise StripeInvalidInput("Give a price or a plan, not both.", field="price")
            plan, price = None, plan
        if (plan is None) == (price is None):
            raise StripeInvalidInput("Subscribe to one price or one plan.", field="price")
        subscription_operations.check_offer(plan, price, trial_period_days, coupon)
        if payment_method is not None:
            customer = subscription_operations.customer_of_payment_method(user, payment_method, customer)
        elif customer is None and subscription_operations.may_create_customer(user, price):
            customer = StripeCustomer.get_or_create_for_user(user)
        request = subscription_operations.Request(
            plan=plan,
            price=price,
            coupon=coupon,
            metadata=metadata or {},
            customer=customer,
            payment_method=payment_method,
            trial_period_days=trial_period_days,
        )
        operation, row, made_now = subscription_operations.plan_subscribe(user, request)
        if operation is None:
            # The same subscription waits for its first payment: that one, as Stripe has it now (it
            # may have been paid, or have lapsed, with the event missed).
            row.refresh_from_stripe()
            if row.status not in subscription_operations.ENDED:
                return row._paid_or_raise(subscription_operations.first_payment_attempted(row))
            operation, row, made_now = subscription_operations.plan_subscribe(user, request)
            if operation is None:  # another request made one meanwhile
                return row._paid_or_raise(subscription_operations.first_payment_attempted(row))
        try:
            outcome = journal.execute(operation, target=row)
        except StripeOperationInProgress as err:
            err.subscription = row  # type: ignore[attr-defined]
            raise
        if outcome.succeeded:
            return row._paid_or_raise(operation.params.get("payment_behavior") != "default_incomplete")
        error = outcome.error or StripeInternalError()
        kept: StripeSubscription | None = row
        if outcome.state == StripeOperation.REFUSED and made_now:
            row.delete()  # refused at its one and only attempt: Stripe made nothing
            kept = None
        error.subscription = kept  # type: ignore[attr-defined]
        raise error

    def _paid_or_raise(self, payment_attempted: bool) -> StripeSubscription:
        if self.status == self.STATUS_INCOMPLETE:
            raise StripeSubscriptionIncomplete(subscription=self, payment_attempted=payment_attempted)
        return self

    @property
    def waits_for_customer(self) -> bool:
        """Whether the customer has something to do: pay the first invoice (``incomplete``), or give
        a card Stripe asked for with a pending SetupIntent (a trial, or a first invoice of 0)."""
        if self.status == self.STATUS_INCOMPLETE:
            return True
        # Stripe collects a card with a SetupIntent whenever the first invoice asked for no payment
        # (a trial, a 100% coupon, a credit balance): the subscription runs meanwhile.
        running = self.status in (self.STATUS_TRIAL, self.STATUS_ACTIVE)
        return running and bool((self.stripe_response or {}).get("pending_setup_intent"))

    def client_secret_for_owner(self) -> str | None:
        """The secret stripe.js needs while :attr:`waits_for_customer`: the first invoice's
        confirmation secret (``confirmCardPayment``), or the trial's pending SetupIntent's
        (``confirmCardSetup``); None otherwise. Read from Stripe (once per instance; what Stripe says
        of the subscription is applied to the row) and never stored: hand it to its owner only."""
        if not self.stripe_subscription_id or not self.waits_for_customer:
            return None
        if getattr(self, "_client_secret_read", False):  # once per instance (a request's payload)
            return self._client_secret
        found = stripe_api.call(
            "subscriptions",
            "retrieve",
            self.stripe_subscription_id,
            params={"expand": list(subscription_operations.EXPAND)},
        )
        secret = subscription_operations.client_secret_of(found)
        # What was read is applied (redacted on save): paid or lapsed meanwhile, the row says so.
        with library_atomic(using=router.db_for_write(type(self), instance=self)):
            lock_for_update(self)
            self.set_stripe_data(found)
        self._client_secret_read, self._client_secret = True, secret if self.waits_for_customer else None
        return self._client_secret

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
        newly_known = self.stripe_subscription_id != subscription["id"]
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
        items = (subscription.get("items") or {}).get("data") or [{}]
        # Since API 2025-03-31 the billing period is on each item; older shapes had it on top.
        for name in ("current_period_start", "current_period_end"):
            value = items[0].get(name) or subscription.get(name)
            setattr(self, name, timestamp_to_datetime(value) if value else None)
        for name in ("trial_start", "trial_end"):
            value = subscription.get(name)
            setattr(self, name, timestamp_to_datetime(value) if value else None)
        method = subscription.get("default_payment_method")
        self.default_payment_method = (method.get("id") if isinstance(method, dict) else method) or ""
        offer_id = offer_id_of(subscription)
        if offer_id:
            self._follow_offer(offer_id)
        self.save()
        if newly_known:
            # Its first invoice's events may have come before its answer: they join it now.
            from .invoices import StripeInvoice

            StripeInvoice.objects.filter(
                stripe_subscription_id=self.stripe_subscription_id, subscription=None
            ).update(subscription=self)

    def _follow_offer(self, offer_id: str) -> None:
        """Keep ``price`` / ``plan`` as Stripe has them (changed in the dashboard, say)."""
        held = {
            self.price.stripe_price_id if self.price_id else None,
            self.plan.stripe_plan_id if self.plan_id else None,
        }
        if offer_id in held:
            return
        # Stripe shows a plan's id as its price's id too: a row of ours for the plan wins.
        plan = StripeSubscriptionPlan.objects.filter(stripe_plan_id=offer_id).first()
        price = StripePrice.objects.filter(stripe_price_id=offer_id).first() if plan is None else None
        if price is None and plan is None:
            logger.warning(
                "Subscription %s is now for %s, which is neither a price nor a plan here: kept as %s",
                self.stripe_subscription_id,
                offer_id,
                self.offer_name,
            )
            return
        self.price, self.plan = price, plan

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
