"""Saved payment methods (``StripePaymentMethod``) and the SetupIntents that save them
(``StripeSetupIntent``): the way Stripe's current front-end libraries save a card that may ask for
3-D Secure, ready for off-session payments.

- A SetupIntent is created for the customer (``usage=off_session``) through the operations journal;
  stripe.js confirms it with its client secret (``confirmCardSetup``/``confirmSetup``); on success
  Stripe attaches the PaymentMethod to the customer. :meth:`StripeSetupIntent.complete` (or the
  ``setup_intent.succeeded`` / ``payment_method.attached`` events, whichever comes first) mirrors it.
- The default follows Stripe: the customer's ``invoice_settings.default_payment_method``, falling
  back to the legacy ``default_source`` (:attr:`StripeCustomer.default_payment_method_id`).
- Client secrets are never stored: :meth:`StripeSetupIntent.client_secret_for_owner` hands the one
  Stripe answered with at creation, or reads it from Stripe again.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from django.db import models, router
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeInvalidRequestError, StripeMethodNotAllowed, StripePaymentMethodExpired
from aa_stripe.guard import library_atomic
from aa_stripe.redaction import REDACTED

from .base import StripeBasicModel, lock_for_update, timestamp_to_datetime
from .customers import StripeCustomer
from .tombstones import StripeTombstone

logger = logging.getLogger("aa_stripe")


class StripePaymentMethod(StripeBasicModel):
    """One payment method attached to a customer at Stripe (``pm_...``), mirrored."""

    customer = models.ForeignKey(StripeCustomer, on_delete=models.CASCADE, related_name="payment_methods")
    stripe_payment_method_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=64, help_text=_("Stripe's type, e.g. card or sepa_debit."))
    card_brand = models.CharField(max_length=32, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    card_exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    card_exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    card_country = models.CharField(max_length=2, blank=True)
    card_funding = models.CharField(max_length=16, blank=True)
    stripe_created = models.DateTimeField(null=True, blank=True, help_text=_("Stripe's creation time."))
    last_event_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Stripe's time of the last webhook event applied to this row.")
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        if self.type == "card" and self.card_last4:
            return f"{self.card_brand or 'card'} •••• {self.card_last4} ({self.stripe_payment_method_id})"
        return f"{self.type} {self.stripe_payment_method_id}"

    @property
    def is_default(self) -> bool:
        """Whether this is the customer's default for invoices and off-session charges."""
        return self.customer.default_payment_method_id == self.stripe_payment_method_id

    @property
    def is_expired(self) -> bool:
        """A card whose expiry month has ended (Stripe declines it)."""
        if self.card_exp_year is None or self.card_exp_month is None:
            return False
        today = date.today()
        return (self.card_exp_year, self.card_exp_month) < (today.year, today.month)

    @property
    def card(self) -> dict[str, Any] | None:
        """The card's details as Stripe names them, or None for other types."""
        if self.type != "card":
            return None
        return {
            "id": self.stripe_payment_method_id,
            "brand": self.card_brand,
            "last4": self.card_last4,
            "exp_month": self.card_exp_month,
            "exp_year": self.card_exp_year,
            "country": self.card_country or None,
            "funding": self.card_funding,
        }

    def update_from_stripe_data(self, data: dict[str, Any], commit: bool = True) -> None:
        """Apply Stripe's payment method object (an API answer or an event's object)."""
        self.stripe_payment_method_id = data["id"]
        self.type = data.get("type") or self.type or "card"
        card = data.get("card") if isinstance(data.get("card"), dict) else {}
        self.card_brand = card.get("brand") or ""
        self.card_last4 = card.get("last4") or ""
        self.card_exp_month = card.get("exp_month")
        self.card_exp_year = card.get("exp_year")
        self.card_country = card.get("country") or ""
        self.card_funding = card.get("funding") or ""
        if data.get("created"):
            self.stripe_created = timestamp_to_datetime(data["created"])
        self.stripe_response = data
        if commit:
            self.save()

    @classmethod
    def mirror(cls, customer: StripeCustomer, data: dict[str, Any]) -> StripePaymentMethod | None:
        """Create or update the row of Stripe's payment method ``data`` attached to ``customer``
        (inside the caller's transaction, holding the customer's lock); a method attached elsewhere
        removes a row it had here. Legacy cards and sources (``card_``/``src_``) stay in the customer's
        ``sources``; a method detached since (a tombstone) is not brought back."""
        if not data["id"].startswith("pm_"):
            return None  # a legacy card or source (Stripe lists them too): it stays in ``sources``
        row = cls.objects.select_for_update().filter(stripe_payment_method_id=data["id"]).first()
        stripe_created = timestamp_to_datetime(data.get("created"))
        if row is None and StripeTombstone.is_buried("payment_method", data["id"], stripe_created, None):
            return None  # detached meanwhile (detaching is final): old news must not bring it back
        if _customer_id(data) != customer.stripe_customer_id:
            if row is not None and row.customer_id == customer.pk:
                row.forget()
            return None
        if row is None:
            row = cls(customer=customer)
        row.customer = customer  # the caller's instance: a default set through the row shows on it
        row.update_from_stripe_data(data)
        return row

    def forget(self) -> None:
        """Delete the row (detached at Stripe, which is final: a detached method is never attached
        again); the customer's default goes with it, and a tombstone keeps late events of the
        method from bringing the row back."""
        StripeTombstone.bury(
            "payment_method", self.stripe_payment_method_id, self.stripe_created, timezone.now()
        )
        customer = self.customer
        if customer.default_payment_method == self.stripe_payment_method_id:
            customer.default_payment_method = ""
            customer.save(update_fields=["default_payment_method", "updated"])
        self.delete()

    def set_as_default(self) -> StripeCustomer:
        """Make this the customer's default at Stripe (``invoice_settings.default_payment_method``);
        an operation of the journal. Refuses an expired card (:class:`StripePaymentMethodExpired`) and
        a method Stripe no longer has on the customer (:class:`StripeInvalidRequestError`, and the
        row goes)."""
        if self.is_expired:
            raise StripePaymentMethodExpired()
        customer = self.customer
        try:
            customer.update_at_stripe(
                {"invoice_settings": {"default_payment_method": self.stripe_payment_method_id}}
            )
        except StripeInvalidRequestError as err:
            if err.kind == "not_found" or "payment_method" in (err.param or ""):
                self.refresh_from_stripe()  # detached meanwhile: the row goes
            raise
        customer.refresh_from_db()
        return customer

    def detach(self) -> StripeCustomer:
        """Detach the method from the customer at Stripe (an operation of the journal, key
        ``payment_method:detach:<id>``); the row is deleted. Returns the customer."""
        from . import payment_method_operations

        customer = self.customer
        payment_method_operations.detach(self)
        customer.refresh_from_db()
        return customer

    def refresh_from_stripe(self) -> dict[str, Any]:
        """Read the method from Stripe; a method no longer attached to the customer is deleted."""
        try:
            data = stripe_api.call("payment_methods", "retrieve", self.stripe_payment_method_id)
        except StripeInvalidRequestError as err:
            if err.kind != "not_found":
                raise
            data = {"id": self.stripe_payment_method_id, "customer": None}
        with library_atomic(using=router.db_for_write(type(self), instance=self)):
            customer = StripeCustomer.objects.select_for_update().get(pk=self.customer_id)
            mirrored = type(self).mirror(customer, data)
        if mirrored is not None:
            self.refresh_from_db()
        return data


def _customer_id(data: dict[str, Any]) -> str | None:
    customer = data.get("customer")
    return customer.get("id") if isinstance(customer, dict) else customer


class StripeSetupIntent(StripeBasicModel):
    """A SetupIntent the library created to save a payment method for off-session use."""

    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    STATUSES = [
        (REQUIRES_PAYMENT_METHOD, _("requires payment method")),
        (REQUIRES_CONFIRMATION, _("requires confirmation")),
        (REQUIRES_ACTION, _("requires action")),
        (PROCESSING, _("processing")),
        (SUCCEEDED, _("succeeded")),
        (CANCELED, _("canceled")),
    ]
    #: statuses in which the customer still has something to do (the client secret is handed out)
    WAITING = (REQUIRES_PAYMENT_METHOD, REQUIRES_CONFIRMATION, REQUIRES_ACTION)

    customer = models.ForeignKey(StripeCustomer, on_delete=models.CASCADE, related_name="setup_intents")
    stripe_setup_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    status = models.CharField(max_length=32, choices=STATUSES, blank=True)
    usage = models.CharField(max_length=16, default="off_session")
    payment_method = models.CharField(
        max_length=255, blank=True, help_text=_("The payment method it saved (or tried to).")
    )
    failure_code = models.CharField(max_length=255, blank=True, help_text=_("last_setup_error.code"))
    failure_message = models.TextField(blank=True, help_text=_("last_setup_error.message"))
    last_event_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Stripe's time of the last webhook event applied to this row.")
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_setup_intent_id"],
                condition=~models.Q(stripe_setup_intent_id=""),
                name="aa_stripe_unique_setup_intent_id",
            )
        ]

    def __str__(self) -> str:
        return self.stripe_setup_intent_id or f"StripeSetupIntent #{self.pk} (not at Stripe)"

    @property
    def is_created_at_stripe(self) -> bool:
        return bool(self.stripe_setup_intent_id)

    @classmethod
    def create_for_customer(cls, customer: StripeCustomer) -> StripeSetupIntent:
        """A new SetupIntent at Stripe for ``customer`` (``usage=off_session``), through the journal.

        The returned instance carries the client secret Stripe answered with
        (:meth:`client_secret_for_owner`); it is never stored."""
        from . import payment_method_operations

        return payment_method_operations.create_setup_intent(customer)

    def client_secret_for_owner(self) -> str | None:
        """The client secret for stripe.js while the customer has something to do, else None.

        Hand it only to the customer's own user: it lets its holder confirm the SetupIntent."""
        if not self.stripe_setup_intent_id or self.status not in self.WAITING:
            return None
        secret = getattr(self, "_client_secret", None)
        if secret is None:
            found = stripe_api.call("setup_intents", "retrieve", self.stripe_setup_intent_id)
            secret = found.get("client_secret")
            self._client_secret = secret
        return secret

    def update_from_stripe_data(self, data: dict[str, Any], commit: bool = True) -> None:
        """Apply Stripe's SetupIntent object (client secret excluded: never stored)."""
        self.stripe_setup_intent_id = data["id"]
        self.status = data.get("status") or self.status
        if data.get("usage"):
            self.usage = data["usage"]
        payment_method = data.get("payment_method")
        if isinstance(payment_method, dict):
            payment_method = payment_method.get("id")
        error = data.get("last_setup_error") or {}
        failed_method = error.get("payment_method") if isinstance(error, dict) else None
        if isinstance(failed_method, dict):
            failed_method = failed_method.get("id")
        self.payment_method = payment_method or failed_method or self.payment_method
        self.failure_code = (error.get("decline_code") or error.get("code") or "") if error else ""
        self.failure_message = (error.get("message") or "") if error else ""
        if data.get("client_secret") and data["client_secret"] != REDACTED:
            self._client_secret = data["client_secret"]
        self.stripe_response = data
        if commit:
            self.save()

    def refresh_from_stripe(self) -> dict[str, Any]:
        """Read the SetupIntent from Stripe and apply it."""
        if not self.stripe_setup_intent_id:
            raise StripeMethodNotAllowed("This SetupIntent is not created at Stripe yet.")
        data = stripe_api.call("setup_intents", "retrieve", self.stripe_setup_intent_id)
        with library_atomic(using=router.db_for_write(type(self), instance=self)):
            lock_for_update(self)
            self.update_from_stripe_data(data)
        return data

    def complete(self) -> StripePaymentMethod:
        """After stripe.js confirmed it: read the SetupIntent and mirror the saved payment method now
        (the webhook later changes nothing). It becomes the customer's default when the customer has
        none. A SetupIntent that failed or still waits raises
        :class:`~aa_stripe.exceptions.StripeSetupIntentNotSucceeded` and saves nothing."""
        from . import payment_method_operations

        return payment_method_operations.complete_setup_intent(self)
