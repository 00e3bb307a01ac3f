"""Invoices: mirrored from Stripe (``invoice.*`` events, ``refresh_invoices``), never written.

Stripe bills subscriptions with invoices; a renewal whose payment fails, or that the bank wants the
customer to authenticate, leaves its invoice ``open`` and the subscription ``past_due``. The row keeps
what a host shows its users (number, amounts, links to Stripe's hosted page and PDF, the period) and
sends ``stripe_subscription_payment_failed`` / ``stripe_subscription_payment_action_required`` once per
invoice so that the host can ask its user back; :meth:`StripeInvoice.client_secret_for_owner` gives
stripe.js what it needs to pay on-session.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import models, router
from django.utils.translation import gettext_lazy as _

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeMethodNotAllowed
from aa_stripe.guard import library_atomic

from .base import StripeBasicModel, lock_for_update, timestamp_to_datetime
from .customers import StripeCustomer
from .subscriptions import StripeSubscription

logger = logging.getLogger("aa_stripe")


def _id(value: Any) -> str:
    return (value.get("id") if isinstance(value, dict) else value) or ""


def subscription_id_of(data: dict[str, Any]) -> str:
    """The invoice's subscription: ``parent.subscription_details`` since API 2025-03-31, else the
    older top-level ``subscription``; "" for an invoice of no subscription."""
    details = (data.get("parent") or {}).get("subscription_details") or {}
    return _id(details.get("subscription")) or _id(data.get("subscription"))


def billed_period(data: dict[str, Any]) -> dict[str, Any]:
    """``{start, end}`` of what the invoice bills: its first subscription line's period (Stripe's
    invoice ``period_start``/``period_end`` look back one period for subscription invoices), else
    the invoice's own."""
    for line in (data.get("lines") or {}).get("data") or []:
        parent = line.get("parent") or {}
        of_subscription = (
            parent.get("type") == "subscription_item_details" or line.get("type") == "subscription"
        )
        if of_subscription and line.get("period"):
            return line["period"]
    return {"start": data.get("period_start"), "end": data.get("period_end")}


class StripeInvoice(StripeBasicModel):
    """A Stripe invoice of a customer the library knows (Stripe's Invoice, read-only here)."""

    STATUS_DRAFT = "draft"
    STATUS_OPEN = "open"
    STATUS_PAID = "paid"
    STATUS_UNCOLLECTIBLE = "uncollectible"
    STATUS_VOID = "void"
    STATUS_CHOICES = (
        (STATUS_DRAFT, STATUS_DRAFT),
        (STATUS_OPEN, STATUS_OPEN),
        (STATUS_PAID, STATUS_PAID),
        (STATUS_UNCOLLECTIBLE, STATUS_UNCOLLECTIBLE),
        (STATUS_VOID, STATUS_VOID),
    )

    stripe_invoice_id = models.CharField(max_length=255, unique=True)
    customer = models.ForeignKey(StripeCustomer, on_delete=models.CASCADE, related_name="invoices")
    subscription = models.ForeignKey(
        StripeSubscription,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="invoices",
        help_text=_("The subscription billed; empty for other invoices, or one not known here."),
    )
    stripe_subscription_id = models.CharField(
        max_length=255,
        blank=True,
        db_index=True,
        help_text=_("Stripe's id of the subscription billed, if any."),
    )
    number = models.CharField(max_length=255, blank=True, help_text=_("Given by Stripe when finalized."))
    status = models.CharField(max_length=20, choices=STATUS_CHOICES, blank=True, db_index=True)
    billing_reason = models.CharField(max_length=50, blank=True)
    amount_due = models.BigIntegerField(default=0, help_text=_("In the currency's minor unit."))
    amount_paid = models.BigIntegerField(default=0, help_text=_("In the currency's minor unit."))
    currency = models.CharField(max_length=3, blank=True)
    hosted_invoice_url = models.URLField(max_length=2000, blank=True)
    invoice_pdf = models.URLField(max_length=2000, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    stripe_created = models.DateTimeField(null=True, blank=True, db_index=True)
    last_event_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Stripe's time of the last webhook event applied to this row.")
    )
    payment_failed_signaled = models.BooleanField(
        default=False, help_text=_("stripe_subscription_payment_failed was sent for this invoice.")
    )
    action_required_signaled = models.BooleanField(
        default=False, help_text=_("stripe_subscription_payment_action_required was sent for this invoice.")
    )

    class Meta:
        ordering = ["-stripe_created", "-id"]
        indexes = [models.Index(fields=["customer", "-stripe_created"], name="aa_stripe_invoice_newest")]

    def __str__(self) -> str:
        return self.number or self.stripe_invoice_id

    @property
    def user(self) -> Any:
        return self.customer.user

    def update_from_stripe_data(self, data: dict[str, Any], commit: bool = True) -> None:
        """Apply Stripe's invoice to the row (no Stripe call); the subscription joins when known."""
        self.stripe_invoice_id = data["id"]
        self.number = data.get("number") or ""
        self.status = data.get("status") or self.status
        self.billing_reason = data.get("billing_reason") or ""
        self.amount_due = int(data.get("amount_due") or 0)
        self.amount_paid = int(data.get("amount_paid") or 0)
        self.currency = data.get("currency") or ""
        self.hosted_invoice_url = data.get("hosted_invoice_url") or ""
        self.invoice_pdf = data.get("invoice_pdf") or ""
        # The period billed: the subscription line's (an invoice's own period looks back one period).
        period = billed_period(data)
        self.period_start = timestamp_to_datetime(period.get("start"))
        self.period_end = timestamp_to_datetime(period.get("end"))
        self.stripe_created = timestamp_to_datetime(data.get("created")) or self.stripe_created
        subscription_id = subscription_id_of(data)
        if subscription_id != self.stripe_subscription_id or (
            subscription_id and self.subscription_id is None
        ):
            self.stripe_subscription_id = subscription_id
            self.subscription = (
                StripeSubscription.objects.filter(stripe_subscription_id=subscription_id).first()
                if subscription_id
                else None
            )
        self.stripe_response = data
        if commit:
            self.save()

    @property
    def waits_for_customer(self) -> bool:
        """An open invoice whose payment failed or waits for authentication: its owner can pay it."""
        return self.status == self.STATUS_OPEN and (
            self.payment_failed_signaled or self.action_required_signaled
        )

    def client_secret_for_owner(self) -> str | None:
        """The secret stripe.js needs to pay this invoice on-session (``confirmCardPayment``) while it
        is open: its PaymentIntent's, read from Stripe (``confirmation_secret``), never stored. Hand
        it to the invoice's owner only. What Stripe says of the invoice is applied to the row."""
        if self.status != self.STATUS_OPEN:
            return None
        if getattr(self, "_client_secret_read", False):
            return self._client_secret
        found = stripe_api.call(
            "invoices", "retrieve", self.stripe_invoice_id, params={"expand": ["confirmation_secret"]}
        )
        secret = ((found.get("confirmation_secret") or {}).get("client_secret") or None) if found else None
        with library_atomic(using=router.db_for_write(type(self), instance=self)):
            lock_for_update(self)
            self.update_from_stripe_data(found)
        self._client_secret_read = True
        self._client_secret = secret if self.status == self.STATUS_OPEN else None
        return self._client_secret

    def refresh_from_stripe(self) -> dict[str, Any]:
        """Read the invoice from Stripe and apply it; returns Stripe's invoice."""
        if not self.stripe_invoice_id:
            raise StripeMethodNotAllowed("This invoice has no Stripe id.")
        found = stripe_api.call("invoices", "retrieve", self.stripe_invoice_id)
        with library_atomic(using=router.db_for_write(type(self), instance=self)):
            lock_for_update(self)
            self.update_from_stripe_data(found)
        return found
