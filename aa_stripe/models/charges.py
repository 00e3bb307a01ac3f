from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Callable
from typing import Any

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import models, router
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from aa_stripe import stripe_api
from aa_stripe.conf import default_currency, stripe_settings
from aa_stripe.currencies import validate_currency
from aa_stripe.exceptions import (
    StripeCardError,
    StripeInternalError,
    StripeInvalidInput,
    StripeMethodNotAllowed,
    StripeNoActiveCustomer,
    StripeOperationInProgress,
)
from aa_stripe.guard import library_atomic
from aa_stripe.operations import journal
from aa_stripe.operations.record import StripeOperation
from aa_stripe.validators import (
    clean_amount,
    require_valid,
    validate_amount_field,
    validate_amount_for_currency,
    validate_statement_descriptor,
    validate_statement_descriptor_field,
    validate_statement_descriptor_suffix,
    validate_stripe_currency,
)

from .base import USER_MODEL, StripeBasicModel, lock_for_update
from .customers import StripeCustomer

#: the journal kinds that send a charge: the Charges API, and PaymentIntents
CHARGE_KINDS = ("charge", "payment_intent", "payment_intent_confirm")


def uses_charges_api() -> bool:
    """``STRIPE_CHARGE_API = "charges"``: charge with the Charges API, as aa-stripe did."""
    return stripe_settings.CHARGE_API == "charges"


logger = logging.getLogger("aa_stripe")


class StripeCharge(StripeBasicModel):
    """A one-off charge of a user's Stripe customer.

    ``charge()`` and ``refund()`` lock the row and call Stripe inside a short transaction of
    their own. Do not call them inside an outer ``transaction.atomic()`` that may roll back:
    Stripe would have acted while our record of it is rolled back.
    """

    PENDING = "pending"
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    FAILED = "failed"
    STATUSES = [
        (PENDING, _("pending")),
        (REQUIRES_PAYMENT_METHOD, _("requires payment method")),
        (REQUIRES_CONFIRMATION, _("requires confirmation")),
        (REQUIRES_ACTION, _("requires action")),
        (PROCESSING, _("processing")),
        (REQUIRES_CAPTURE, _("requires capture")),
        (SUCCEEDED, _("succeeded")),
        (CANCELED, _("canceled")),
        (FAILED, _("failed")),
    ]
    #: the payment waits for the customer (on-session): never retried off-session by charge_stripe
    WAITING = (REQUIRES_PAYMENT_METHOD, REQUIRES_CONFIRMATION, REQUIRES_ACTION)
    #: statuses charge_stripe leaves alone (waiting, in progress at Stripe, or ended)
    NOT_TO_SEND = (*WAITING, PROCESSING, REQUIRES_CAPTURE, CANCELED)

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
    status = models.CharField(
        max_length=32,
        choices=STATUSES,
        default=PENDING,
        help_text=_("The PaymentIntent's status; pending: not sent yet; failed: declined, nothing waits."),
    )
    payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    payment_method = models.CharField(
        max_length=255,
        blank=True,
        help_text=_("The payment method the last attempt used (pm_... or card_...)."),
    )
    failure_code = models.CharField(max_length=255, blank=True, help_text=_("Why the last attempt failed."))
    decline_code = models.CharField(
        max_length=255, blank=True, help_text=_("The bank's reason, for declines.")
    )
    action_requested_for = models.CharField(
        max_length=255,
        blank=True,
        help_text=_("The PaymentIntent stripe_charge_requires_action was sent for (sent once per intent)."),
    )
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
        """The current attempt's key: ``payment_intent:<uuid>:<attempt>`` (or ``charge:...`` with
        ``STRIPE_CHARGE_API = "charges"``; Stripe refuses one key on two endpoints)."""
        prefix = "charge" if uses_charges_api() else "payment_intent"
        return f"{prefix}:{self.uuid}:{self.attempt}"

    def charge(self, idempotency_key: str | None = None, payment_uuid: Any = None) -> dict[str, Any] | None:
        """Charge the user's customer; returns Stripe's charge, or None when the card was declined.

        A durable operation of the journal (:mod:`aa_stripe.operations.journal`): the attempt is
        planned and committed with its frozen parameters before Stripe is called, no row lock or
        transaction is held during the call, and the outcome is committed after it.

        - Declined card: ``charge_attempt_failed`` is set, ``stripe_charge_card_exception`` is sent.
          Calling ``charge()`` again is a deliberate retry with a new idempotency key.
        - Network error, timeout, 5xx, 429: :class:`StripeInternalError` is raised and the row
          stays retryable; the retry re-sends the same request under the same key (after looking
          the charge up at Stripe when the key may be gone or a 5xx would be replayed), so Stripe
          never charges twice. ``reconcile_stripe_operations`` finishes it if nobody calls again.
        - Another worker sending this charge right now: :class:`StripeOperationInProgress`.
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
        with library_atomic(using=using):
            lock_for_update(self)
            operation = self.plan_charge(payment_uuid)
        return self.send_charge(operation)

    def send_charge(self, operation: StripeOperation) -> dict[str, Any] | None:
        """Claim, send and record a planned charge (:meth:`plan_charge`); what :meth:`charge` returns."""
        outcome = journal.execute(operation, target=self)
        if outcome.succeeded:
            if operation.kind == "charge":
                return outcome.result
            # A PaymentIntent answered: paid only when it succeeded (it may wait for the customer,
            # or be processing), as recorded on the row.
            self.refresh_from_db(fields=["is_charged", "status", "charge_attempt_failed", "stripe_charge_id"])
            return outcome.result if self.is_charged else None
        if isinstance(outcome.error, StripeCardError) or (
            outcome.state == StripeOperation.REFUSED and operation.kind != "charge"
        ):
            self.refresh_from_db(fields=["is_charged", "status", "charge_attempt_failed", "stripe_charge_id"])
            if self.is_charged:  # e.g. a retry refused because the customer had paid it meanwhile
                return payment_intent_operations.intent_of_error(outcome.result) or outcome.result
            if self.charge_attempt_failed or self.status in self.WAITING:
                return None
        raise outcome.error or StripeInternalError()

    def plan_charge(self, payment_uuid: Any = None) -> StripeOperation:
        """The operation that sends this charge: the unfinished one, or a new one.

        Call it in a transaction holding this row's lock (``charge()`` does; ``charge_stripe``
        claims rows with SKIP LOCKED) and commit before :meth:`send_charge`.
        """
        if self.is_charged:
            raise StripeMethodNotAllowed("Already charged.")
        # Planning an attempt sets attempt_started_at in the same transaction: without it, no
        # operation of this row can be unfinished (one query less on the happy path).
        unfinished = (
            StripeOperation.unresolved_for(self).filter(kind__in=CHARGE_KINDS).first()
            if self.attempt_started_at is not None
            else None
        )
        if unfinished is not None:
            # Finished where it was planned (an attempt planned on /v1/charges before an upgrade
            # finishes there); one migrated from an older version is completed before it is sent.
            return unfinished
        customer = self.check_chargeable()
        # Only a row planned before can have used this attempt's key (charge_attempt_failed reset
        # by hand): a row's first charge skips the key check, one query less on the happy path.
        planned_before = self.attempt_started_at is not None
        if self.charge_attempt_failed:
            self.attempt += 1
            self.charge_attempt_failed = False
        self.customer = customer
        self.attempt_started_at = timezone.now()
        self.status = self.PENDING
        self.save(
            update_fields=["customer", "attempt", "charge_attempt_failed", "attempt_started_at", "status"]
        )
        if uses_charges_api():
            kind, service, params = "charge", "charges", self._charge_params(customer, payment_uuid)
        elif self.payment_intent_id:
            # A retry of a declined payment confirms the same PaymentIntent again: one intent per
            # charge, so the customer (who may confirm it on-session meanwhile) can never pay twice.
            return payment_intent_operations.plan_confirm(self, customer, fresh_key=planned_before)
        else:
            metadata = self._charge_params(customer, payment_uuid)["metadata"]
            kind, service = payment_intent_operations.KIND, "payment_intents"
            params = payment_intent_operations.charge_params(self, customer, metadata)
        return journal.plan(
            self,
            kind=kind,
            service=service,
            method="create",
            params=params,
            key=self.idempotency_key,
            fresh_key=planned_before,  # a new request under a used key gets a key of its own
        )

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
        if self.status in self.WAITING:
            raise StripeMethodNotAllowed(
                "This payment waits for the customer (authentication): they pay on-session (payStripeCharge)."
            )
        if self.status == self.CANCELED:
            raise StripeMethodNotAllowed("This payment was canceled.")
        if self.status in (self.PROCESSING, self.REQUIRES_CAPTURE):
            raise StripeMethodNotAllowed("This payment is being processed by Stripe.")
        if not self.outcome_unknown:
            # An attempt whose answer was lost is re-sent exactly as it went (same key): Stripe
            # replays what it did; checking it now could strand a charge Stripe already made.
            self.validate_for_stripe()
        customer = StripeCustomer.get_customer_to_charge(self.user_id, preferred=self.customer)
        if not uses_charges_api() and not customer.default_payment_method_id and not self.outcome_unknown:
            raise StripeNoActiveCustomer("The user's customer has no default payment method.")
        return customer

    def clean(self) -> None:
        """Checks the field validators cannot make alone: the amount in its currency (maximum, step)."""
        super().clean()
        validate_amount_for_currency(self.amount, self.currency)

    @property
    def outcome_unknown(self) -> bool:
        """True while the current attempt was sent but Stripe's answer never arrived."""
        return (
            self.attempt_started_at is not None
            and not self.is_charged
            and not self.charge_attempt_failed
            and self.status == self.PENDING
        )

    @property
    def waits_for_customer(self) -> bool:
        """The payment waits for the customer to pay on-session (3-D Secure, another card)."""
        return not self.is_charged and (
            self.status in self.WAITING or (self.status == self.FAILED and bool(self.payment_intent_id))
        )

    def client_secret_for_owner(self) -> str | None:
        """The PaymentIntent's client secret while the customer has something to do, else None.

        Read from Stripe (never stored); hand it only to the charge's own user: it lets its holder
        confirm the payment with the publishable key."""
        if not self.payment_intent_id or not self.waits_for_customer:
            return None
        secret = getattr(self, "_client_secret", None)
        if secret is None:
            secret = stripe_api.call("payment_intents", "retrieve", self.payment_intent_id).get(
                "client_secret"
            )
            self._client_secret = secret
        return secret

    def refresh_from_stripe(self) -> dict[str, Any] | None:
        """Read the PaymentIntent and record what became of it (after stripe.js finished on-session);
        returns the intent, or None for a charge without one."""
        return payment_intent_operations.refresh(self)

    def pay_on_session(self, payment_method: Any = None) -> StripeCharge:
        """Prepare the owner's on-session payment of this unpaid charge (it waits for authentication,
        or was declined): returns the charge, whose :meth:`client_secret_for_owner` stripe.js
        confirms (``confirmCardPayment``/``handleNextAction``). ``payment_method`` (a
        :class:`StripePaymentMethod` of the same customer) is the one to pay with; by default the one
        the last attempt used. A charge paid, canceled, or not yet sent: :class:`StripeMethodNotAllowed`."""
        return payment_intent_operations.pay_on_session(self, payment_method)

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
        if not uses_charges_api():
            checks.append(
                (
                    "statement_descriptor",
                    lambda: validate_statement_descriptor_suffix(self.statement_descriptor),
                )
            )
        errors: list[tuple[str, ValidationError]] = []
        for field, check in checks:
            try:
                check()
            except ValidationError as err:
                errors.append((field, err))
        return errors

    def rebuilt_charge_params(self, customer: StripeCustomer) -> dict[str, Any]:
        """The request of the current attempt, rebuilt from the row (for an attempt an older version
        sent, whose request was not kept)."""
        return self._charge_params(customer, None)

    def _member_uuid(self) -> Any:
        """The user's ``uuid`` (aa-stripe sent it as metadata), without loading a user that has none."""
        user_model = type(self)._meta.get_field("user").related_model
        if not any(field.name == "uuid" for field in user_model._meta.concrete_fields):
            return None
        return getattr(self.user, "uuid", None)

    def _charge_params(self, customer: StripeCustomer, payment_uuid: Any) -> dict[str, Any]:
        metadata = {
            "charge_uuid": str(self.uuid),
            "attempt": str(self.attempt),
            "object_id": self.object_id,
            "content_type_id": self.content_type_id,
            "origin": stripe_settings.PAYMENT_ORIGIN,
            "member_uuid": self._member_uuid(),
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
        refund of the same amount is a new refund. A durable operation of the journal, as
        :meth:`charge` is: a refund Stripe refuses is kept as a refused :class:`StripeRefund`
        (``failure_code``) and releases the charge, whose refunded amount is then read from Stripe.

        ``amount_to_refund`` must be a positive integer (``1.5`` raises :class:`StripeInvalidInput`,
        it is never truncated) and at most what is left (else :class:`StripeMethodNotAllowed`).
        """
        if amount is not None:
            if amount_to_refund is not None and amount_to_refund != amount:
                raise ValueError("Pass either amount_to_refund or amount, not both.")
            amount_to_refund = amount
        operation = self._plan_refund(amount_to_refund)
        outcome = journal.execute(operation, target=self)
        if outcome.succeeded and outcome.result is not None:
            return outcome.result
        raise outcome.error or StripeInternalError()

    def _plan_refund(self, amount_to_refund: int | None) -> StripeOperation:
        using = router.db_for_write(type(self), instance=self)
        with library_atomic(using=using):
            lock_for_update(self)
            to_refund = self._validate_refund(amount_to_refund)
            unfinished = StripeOperation.unresolved_for(self).filter(kind="refund").first()
            if unfinished is not None:
                if _being_sent(unfinished):
                    # Another request planned it and is sending it now: taking it over would answer
                    # this request (say "refund the rest") with that one's refund.
                    raise StripeOperationInProgress(
                        "Another refund of this charge is in progress (being sent); try again in a moment."
                    )
                return unfinished  # the refund of pending_refund_amount, left unfinished: again
            self.pending_refund_amount = to_refund
            self.save(update_fields=["pending_refund_amount", "updated"])
            return journal.plan(
                self,
                kind="refund",
                service="refunds",
                method="create",
                params={
                    "charge": self.stripe_charge_id,
                    "amount": to_refund,
                    "metadata": {"charge_uuid": str(self.uuid)},
                },
                key=f"refund:{self.uuid}:{self.amount_refunded}:{to_refund}",
                fresh_key=True,  # a refund Stripe refused may be asked again: a new request
            )

    def apply_stripe_refunds(
        self, refunds: list[dict[str, Any]], amount_refunded: int | None = None, refunded: bool = False
    ) -> bool:
        """Take what Stripe says was refunded (unsaved; new :class:`StripeRefund` rows for the listed
        refunds not known here); True when the refunded amount grew.

        ``amount_refunded`` is the charge's own total (a charge object); without it, the listed
        refunds are added up. Failed and canceled refunds do not count.
        """
        known = set(self.refunds.exclude(stripe_refund_id=None).values_list("stripe_refund_id", flat=True))
        counted = [r for r in refunds if r.get("id") and r.get("status") not in ("failed", "canceled")]
        total = sum(r.get("amount") or 0 for r in counted) if amount_refunded is None else amount_refunded
        if total <= self.amount_refunded:
            return False
        for refund in sorted(counted, key=lambda r: r.get("created") or 0):
            if refund["id"] not in known:
                StripeRefund.objects.create(
                    charge=self,
                    amount=refund.get("amount") or 0,
                    currency=refund.get("currency") or self.currency,
                    stripe_refund_id=refund["id"],
                    stripe_response=refund,
                )
                self.stripe_refund_id = refund["id"]  # the latest, as refund() keeps it
        self.amount_refunded = total
        self.is_refunded = refunded or total >= (self.amount or 0)
        return True

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


def _being_sent(operation: StripeOperation) -> bool:
    """Whether a live request or worker holds ``operation``: sending it under a lease, or planned
    moments ago (its planner claims it next). A lost answer (unknown), an expired lease or a plan
    older than a lease is left to whoever asks again."""
    now = timezone.now()
    if operation.state == StripeOperation.SENDING:
        return operation.lease_until is not None and operation.lease_until >= now
    return operation.state == StripeOperation.PLANNED and operation.created > now - journal.lease()


class StripeRefund(StripeBasicModel):
    """One refund of a :class:`StripeCharge` (a charge may have several partial refunds)."""

    charge = models.ForeignKey(StripeCharge, on_delete=models.CASCADE, related_name="refunds")
    amount = models.BigIntegerField(help_text=_("In the currency's minor unit."))
    currency = models.CharField(max_length=3, validators=[validate_currency])
    # null: a refund Stripe refused (failure_code says why); Stripe made nothing.
    stripe_refund_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    failure_code = models.CharField(
        max_length=255, blank=True, help_text=_("Why Stripe refused this refund; empty when it was made.")
    )
    status = models.CharField(
        max_length=32,
        default="succeeded",
        help_text=_("Stripe's status of the refund (pending, requires_action, succeeded, failed, canceled)."),
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        made = self.stripe_refund_id or f"refused ({self.failure_code})"
        return f"{made}: {self.amount} {self.currency.upper()}"


# The journal's PaymentIntent kind; imported last, as it needs the model.
from . import payment_intent_operations  # noqa: E402
