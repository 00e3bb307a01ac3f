from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import models, router, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from aa_stripe import stripe_api
from aa_stripe.conf import default_currency, stripe_settings
from aa_stripe.currencies import validate_currency
from aa_stripe.exceptions import (
    StripeAPIError,
    StripeCardError,
    StripeInternalError,
    StripeInvalidInput,
    StripeInvalidRequestError,
    StripeMethodNotAllowed,
)
from aa_stripe.signals import stripe_charge_card_exception, stripe_charge_refunded, stripe_charge_succeeded
from aa_stripe.validators import (
    clean_amount,
    require_valid,
    validate_amount_field,
    validate_amount_for_currency,
    validate_statement_descriptor,
    validate_statement_descriptor_field,
    validate_stripe_currency,
)

from .base import USER_MODEL, StripeBasicModel, lock_for_update
from .customers import StripeCustomer

logger = logging.getLogger("aa_stripe")

#: Stripe keeps idempotency keys at least this long; an unknown outcome older than this is
#: looked up at Stripe (by the row's UUID in metadata) before a charge is sent again.
IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=24)


class StripeCharge(StripeBasicModel):
    """A one-off charge of a user's Stripe customer.

    ``charge()`` and ``refund()`` lock the row and call Stripe inside a short transaction of
    their own. Do not call them inside an outer ``transaction.atomic()`` that may roll back:
    Stripe would have acted while our record of it is rolled back.
    """

    user = models.ForeignKey(USER_MODEL, on_delete=models.CASCADE, related_name="stripe_charges")
    customer = models.ForeignKey(StripeCustomer, on_delete=models.SET_NULL, null=True, blank=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # 64-bit: Stripe takes twelve digits in IDR.
    amount = models.BigIntegerField(
        null=True,
        validators=[validate_amount_field],
        help_text=_("In the currency's minor unit (cents for USD); 1 to 99,999,999 (IDR: 12 digits)."),
    )
    amount_refunded = models.BigIntegerField(default=0, help_text=_("In the currency's minor unit."))
    currency = models.CharField(max_length=3, default=default_currency, validators=[validate_currency])
    is_charged = models.BooleanField(default=False)
    is_refunded = models.BooleanField(default=False)
    # if True, charge_stripe leaves it alone
    is_manual_charge = models.BooleanField(default=False)
    charge_attempt_failed = models.BooleanField(default=False)
    attempt = models.PositiveIntegerField(
        default=1,
        help_text=_("Increased when a declined charge is retried on purpose (new idempotency key)."),
    )
    attempt_started_at = models.DateTimeField(
        null=True, blank=True, help_text=_("First time the current attempt was sent to Stripe.")
    )
    stripe_charge_id = models.CharField(max_length=255, blank=True, db_index=True)
    pending_refund_amount = models.BigIntegerField(
        null=True, blank=True, help_text=_("A refund whose outcome Stripe did not confirm yet (lost answer).")
    )
    last_event_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Stripe's time of the last webhook event applied to this row.")
    )
    stripe_refund_id = models.CharField(
        max_length=255, blank=True, db_index=True, help_text=_("The latest refund (all are in StripeRefund).")
    )
    description = models.CharField(max_length=255, help_text=_("Description sent to Stripe"))
    comment = models.CharField(max_length=255, blank=True, help_text=_("Comment for internal information"))
    statement_descriptor = models.CharField(
        max_length=22,
        blank=True,
        validators=[validate_statement_descriptor_field],
        help_text=_("On the card statement: 5 to 22 Latin characters, at least one letter; empty for none."),
    )
    content_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.CASCADE)
    # null kept from aa-stripe: "no source" rows exist; a CharField holds integer and UUID keys.
    object_id = models.CharField(max_length=255, null=True, blank=True, db_index=True)  # noqa: DJ001
    source = GenericForeignKey("content_type", "object_id")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_charge_id"],
                condition=~Q(stripe_charge_id=""),
                name="aa_stripe_unique_stripe_charge_id",
            )
        ]

    def __str__(self) -> str:
        state = self.stripe_charge_id or "not charged"
        return f"{self.amount} {self.currency.upper()} for {self.user} ({state})"

    @property
    def idempotency_key(self) -> str:
        return f"charge:{self.uuid}:{self.attempt}"

    def charge(self, idempotency_key: str | None = None, payment_uuid: Any = None) -> dict[str, Any] | None:
        """Charge the user's customer; returns Stripe's charge, or None when the card was declined.

        - Declined card: ``charge_attempt_failed`` is set, ``stripe_charge_card_exception`` is sent.
          Calling ``charge()`` again is a deliberate retry with a new idempotency key.
        - Network error, timeout, 5xx, 429: :class:`StripeInternalError` is raised and the row
          stays retryable; the retry reuses the same idempotency key, so Stripe replays the
          first charge instead of making a second one.
        - Success: ``is_charged`` is set and ``stripe_charge_succeeded`` is sent.
        - An amount, currency or statement descriptor Stripe would refuse: :class:`StripeInvalidInput`
          is raised before any request, and the row is left as it was (not marked failed). Not
          checked when re-sending an attempt whose answer was lost (``outcome_unknown``).
        """
        if idempotency_key is not None:
            warnings.warn(
                "charge(idempotency_key=...) is ignored: the key is derived from the row's uuid and attempt.",
                DeprecationWarning,
                stacklevel=2,
            )
        using = router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using):
            lock_for_update(self)
            customer = self.check_chargeable()
            outcome, error, stripe_charge = self._charge_locked(customer, payment_uuid)
            self.save()
        if outcome == "declined":
            stripe_charge_card_exception.send(sender=StripeCharge, instance=self, exception=error)
            return None
        if error is not None:
            raise error
        stripe_charge_succeeded.send(sender=StripeCharge, instance=self)
        return stripe_charge

    def check_chargeable(self) -> StripeCustomer:
        """Raise what ``charge()`` raises before sending anything; else the customer it would charge.

        The one definition of "chargeable now", used by ``charge()`` (under its row lock) and by
        ``charge_stripe`` (also ``--dry-run``, which reports the same reasons without a lock):
        :class:`StripeMethodNotAllowed` when already charged (or the preferred customer is another
        user's), :class:`StripeInvalidInput` for input Stripe would refuse, and
        :class:`StripeNoActiveCustomer` when the user has no card on file.
        """
        if self.is_charged:
            raise StripeMethodNotAllowed("Already charged.")
        if not self.outcome_unknown:
            # An attempt whose answer was lost is re-sent exactly as it went (same key): Stripe
            # replays what it did; checking it now could strand a charge Stripe already made.
            self.validate_for_stripe()
        return StripeCustomer.get_customer_to_charge(self.user, preferred=self.customer)

    def clean(self) -> None:
        """Checks the field validators cannot make alone: the amount in its currency (maximum, step)."""
        super().clean()
        validate_amount_for_currency(self.amount, self.currency)

    @property
    def outcome_unknown(self) -> bool:
        """True while the current attempt was sent but Stripe's answer never arrived."""
        return self.attempt_started_at is not None and not self.is_charged and not self.charge_attempt_failed

    def validate_for_stripe(self) -> None:
        """Raise :class:`StripeInvalidInput` when Stripe would refuse the amount, currency or
        statement descriptor (``charge()`` calls it before any request)."""
        errors = self.input_errors()
        if errors:
            field, error = errors[0]
            raise StripeInvalidInput(" ".join(error.messages), field=field, code=error.code)

    def input_errors(self) -> list[tuple[str, ValidationError]]:
        """``(field, ValidationError)`` for every input Stripe would refuse; empty when all is valid."""
        checks: list[tuple[str, Callable[[], object]]] = [
            ("currency", lambda: validate_stripe_currency(self.currency)),
            ("amount", lambda: clean_amount(self.amount, self.currency)),
            ("statement_descriptor", lambda: validate_statement_descriptor(self.statement_descriptor)),
        ]
        errors: list[tuple[str, ValidationError]] = []
        for field, check in checks:
            try:
                check()
            except ValidationError as err:
                errors.append((field, err))
        return errors

    def _charge_locked(
        self, customer: StripeCustomer, payment_uuid: Any
    ) -> tuple[str, StripeAPIError | None, dict[str, Any] | None]:
        self.customer = customer
        if self.charge_attempt_failed:
            self.attempt += 1
            self.charge_attempt_failed = False
            self.attempt_started_at = None
        try:
            stripe_charge = self._find_charge_after_key_expiry() or self._create_at_stripe(payment_uuid)
        except StripeCardError as err:
            self.charge_attempt_failed = True
            self.stripe_charge_id = (err.json_body.get("error") or {}).get("charge", "") or ""
            self.stripe_response = err.json_body
            return "declined", err, None
        except StripeInternalError as err:
            logger.warning("Stripe charge %s: outcome unknown, left for retry: %s", self.uuid, err.message)
            self.stripe_response = err.json_body
            return "retry", err, None
        except StripeInvalidRequestError as err:
            # Stripe refused the parameters: retrying the same request can never succeed.
            self.charge_attempt_failed = True
            self.stripe_response = err.json_body
            return "failed", err, None
        self.stripe_charge_id = stripe_charge["id"]
        self.stripe_response = stripe_charge
        self.is_charged = True
        return "charged", None, stripe_charge

    def _create_at_stripe(self, payment_uuid: Any) -> dict[str, Any]:
        self.attempt_started_at = self.attempt_started_at or timezone.now()
        return stripe_api.call(
            "charges",
            "create",
            params=self._charge_params(self.customer, payment_uuid),
            idempotency_key=self.idempotency_key,
        )

    def _find_charge_after_key_expiry(self) -> dict[str, Any] | None:
        """After an unknown outcome older than Stripe's key lifetime, find the charge by UUID."""
        started = self.attempt_started_at
        if started is None or timezone.now() - started < IDEMPOTENCY_KEY_LIFETIME:
            return None
        for candidate in stripe_api.iterate(
            "charges",
            {"customer": self.customer.stripe_customer_id, "created": {"gt": int(started.timestamp()) - 1}},
        ):
            metadata = candidate.get("metadata") or {}
            if metadata.get("charge_uuid") == str(self.uuid) and metadata.get("attempt") == str(self.attempt):
                return candidate if candidate.get("status") != "failed" else None
        self.attempt_started_at = None  # not found: the re-sent request starts a new key lifetime
        return None

    def _charge_params(self, customer: StripeCustomer, payment_uuid: Any) -> dict[str, Any]:
        metadata = {
            "charge_uuid": str(self.uuid),
            "attempt": str(self.attempt),
            "object_id": self.object_id,
            "content_type_id": self.content_type_id,
            "origin": stripe_settings.PAYMENT_ORIGIN,
            "member_uuid": getattr(self.user, "uuid", None),
            "payment_uuid": payment_uuid,
        }
        params: dict[str, Any] = {
            "amount": self.amount,
            "currency": self.currency,
            "customer": customer.stripe_customer_id,
            "description": self.description,
            "metadata": {key: str(value) for key, value in metadata.items() if value not in (None, "")},
        }
        if self.statement_descriptor:
            params["statement_descriptor"] = self.statement_descriptor
        return params

    def refund(self, amount_to_refund: int | None = None, *, amount: int | None = None) -> dict[str, Any]:
        """Refund ``amount_to_refund`` (minor units; default: everything not yet refunded).

        Partial refunds add up and never exceed the charge; each one is a :class:`StripeRefund`
        row and sends ``stripe_charge_refunded``. The idempotency key names the amount refunded
        before and the amount, so retrying after a lost answer replays, while a second partial
        refund of the same amount is a new refund.

        ``amount_to_refund`` must be a positive integer (``1.5`` raises :class:`StripeInvalidInput`,
        it is never truncated) and at most what is left (else :class:`StripeMethodNotAllowed`).
        """
        if amount is not None:
            if amount_to_refund is not None and amount_to_refund != amount:
                raise ValueError("Pass either amount_to_refund or amount, not both.")
            amount_to_refund = amount
        using = router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using):
            lock_for_update(self)
            to_refund = self._validate_refund(amount_to_refund)
            try:
                stripe_refund = stripe_api.call(
                    "refunds",
                    "create",
                    params={
                        "charge": self.stripe_charge_id,
                        "amount": to_refund,
                        "metadata": {"charge_uuid": str(self.uuid)},
                    },
                    idempotency_key=f"refund:{self.uuid}:{self.amount_refunded}:{to_refund}",
                )
            except StripeInternalError as err:
                # Outcome unknown: remember it, so that webhooks leave amount_refunded alone and
                # the retry (same amount, same key) replays instead of refunding again.
                self.pending_refund_amount = to_refund
                self.save(update_fields=["pending_refund_amount", "updated"])
                pending_error = err
            else:
                pending_error = None
                self._record_refund(stripe_refund, to_refund)
        if pending_error is not None:
            raise pending_error
        stripe_charge_refunded.send(sender=StripeCharge, instance=self)
        return stripe_refund

    def _record_refund(self, stripe_refund: dict[str, Any], amount: int) -> None:
        StripeRefund.objects.create(
            charge=self,
            amount=amount,
            currency=self.currency,
            stripe_refund_id=stripe_refund["id"],
            stripe_response=stripe_refund,
        )
        self.amount_refunded += amount
        self.is_refunded = self.amount_refunded >= (self.amount or 0)
        self.stripe_refund_id = stripe_refund["id"]
        self.pending_refund_amount = None
        self.save()

    def _validate_refund(self, amount_to_refund: int | None) -> int:
        if not self.is_charged:
            raise StripeMethodNotAllowed("Cannot refund not charged transaction.")
        if amount_to_refund is not None:
            # a positive integer (1.5 is refused, never truncated), in the currency's steps
            amount_to_refund = require_valid("amount", clean_amount, amount_to_refund, self.currency)
        remaining = (self.amount or 0) - self.amount_refunded
        pending = self.pending_refund_amount
        if pending is not None and amount_to_refund not in (None, pending):
            raise StripeMethodNotAllowed(
                f"A refund of {pending} is not confirmed by Stripe yet: retry refund({pending}) first."
            )
        if pending is not None:
            return pending
        if self.is_refunded or remaining <= 0:
            raise StripeMethodNotAllowed("Already refunded.")
        if amount_to_refund is None:
            return remaining
        if amount_to_refund > remaining:
            raise StripeMethodNotAllowed("Refunds exceed charge")
        return amount_to_refund


class StripeRefund(StripeBasicModel):
    """One refund of a :class:`StripeCharge` (a charge may have several partial refunds)."""

    charge = models.ForeignKey(StripeCharge, on_delete=models.CASCADE, related_name="refunds")
    amount = models.BigIntegerField(help_text=_("In the currency's minor unit."))
    currency = models.CharField(max_length=3, validators=[validate_currency])
    stripe_refund_id = models.CharField(max_length=255, unique=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.stripe_refund_id}: {self.amount} {self.currency.upper()}"
