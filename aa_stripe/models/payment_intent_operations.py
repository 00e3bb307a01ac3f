"""Charges paid through PaymentIntents (``STRIPE_CHARGE_API = "payment_intents"``, the default).

``StripeCharge.charge()`` plans one operation of kind ``payment_intent`` per attempt
(``payment_intents.create`` with ``confirm`` and ``off_session``, key
``payment_intent:<uuid>:<attempt>``), sends it with no lock held, and records the answer here.
Whatever tells the outcome first (the API answer, a 402 carrying the intent, a lookup after a lost
answer, ``payment_intent.*`` / ``charge.*`` events, ``refresh_from_stripe()``) goes through one
function, :func:`apply_intent`, under the row's lock: ``is_charged`` and ``stripe_charge_succeeded``
happen once; a declined card marks ``charge_attempt_failed`` and sends
``stripe_charge_card_exception`` once per attempt; a payment that waits for the customer (3-D Secure:
``requires_action``, or Stripe's off-session answer 402 ``authentication_required``) is neither: the
row waits and ``stripe_charge_requires_action`` is sent once per intent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import router, transaction
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeCardError, StripeInternalError
from aa_stripe.guard import library_atomic
from aa_stripe.operations import journal
from aa_stripe.operations.journal import Outcome
from aa_stripe.operations.record import StripeOperation
from aa_stripe.redaction import redact_secrets
from aa_stripe.signals import (
    stripe_charge_card_exception,
    stripe_charge_requires_action,
    stripe_charge_succeeded,
)

from .base import lock_for_update

if TYPE_CHECKING:
    from .charges import StripeCharge

logger = logging.getLogger("aa_stripe")

KIND = "payment_intent"
#: Stripe's clock and ours differ a little: look a bit before the first send.
LOOKUP_MARGIN = timedelta(minutes=10)

Signals = list[Callable[[], Any]]


def _id(value: Any) -> str:
    return (value.get("id") if isinstance(value, dict) else value) or ""


def intent_of_error(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """The PaymentIntent a Stripe error body carries (402 on confirmation), if any."""
    error = (body or {}).get("error") or {}
    intent = error.get("payment_intent")
    return intent if isinstance(intent, dict) and intent.get("id") else None


def card_error_of(intent: dict[str, Any]) -> StripeCardError:
    """The card error an intent's ``last_payment_error`` stands for (for ``stripe_charge_card_exception``)."""
    error = dict(intent.get("last_payment_error") or {})
    body = {"error": {**error, "payment_intent": intent}}
    return StripeCardError(
        error.get("message") or None,
        code=error.get("code"),
        decline_code=error.get("decline_code"),
        json_body=body,
    )


def latest_charge_id(intent: dict[str, Any]) -> str:
    """The intent's latest charge: ``latest_charge`` (API 2022-11-15 on), else the newest of the
    older versions' ``charges.data``."""
    latest = _id(intent.get("latest_charge"))
    if latest:
        return latest
    charges = (intent.get("charges") or {}).get("data") if isinstance(intent.get("charges"), dict) else None
    if charges:
        return _id(max(charges, key=lambda c: c.get("created") or 0))
    return ""


def is_ours(charge: StripeCharge, intent: dict[str, Any]) -> bool:
    """Whether ``intent`` belongs to ``charge``: its id, or our uuid in its metadata."""
    if charge.payment_intent_id and charge.payment_intent_id == intent.get("id"):
        return True
    return (intent.get("metadata") or {}).get("charge_uuid") == str(charge.uuid)


def apply_intent(
    charge: StripeCharge, intent: dict[str, Any], error: StripeCardError | None = None
) -> Signals:
    """Apply Stripe's PaymentIntent to the locked ``charge`` (unsaved); the signals to send after
    the commit. An older attempt's intent never undoes the current one, and nothing undoes a
    success."""
    from .charges import StripeCharge

    attempt = (intent.get("metadata") or {}).get("attempt")
    current_intent = not charge.payment_intent_id or charge.payment_intent_id == intent.get("id")
    if charge.is_charged:
        if intent.get("status") == "succeeded" and not current_intent:
            logger.error(
                "StripeCharge #%s was paid by %s and also by PaymentIntent %s: refund one of them",
                charge.pk,
                charge.payment_intent_id or charge.stripe_charge_id,
                intent.get("id"),
            )
        return []
    if (
        not current_intent
        and attempt is not None
        and attempt != str(charge.attempt)
        and intent.get("status") != "succeeded"
    ):
        return []  # an earlier intent's news; a success of any intent is money taken, recorded below
    status = intent.get("status") or ""
    signals: Signals = []
    last_error = intent.get("last_payment_error") or {}
    failed_charge = _id(last_error.get("charge"))
    if status == "requires_payment_method" and failed_charge and failed_charge == charge.stripe_charge_id:
        return []  # a failure recorded before (a late event of an earlier attempt, or the same news again)
    charge.payment_intent_id = intent["id"]
    method = _id(intent.get("payment_method")) or _id(last_error.get("payment_method"))
    if method:
        charge.payment_method = method
    if status == "succeeded":
        charge.is_charged, charge.charge_attempt_failed = True, False
        charge.status = StripeCharge.SUCCEEDED
        charge.failure_code = charge.decline_code = ""
        charge.stripe_charge_id = latest_charge_id(intent) or charge.stripe_charge_id
        charge.stripe_response = intent
        signals.append(lambda: stripe_charge_succeeded.send(sender=StripeCharge, instance=charge))
        return signals
    charge.stripe_response = intent
    if status == "requires_payment_method" and last_error:
        charge.failure_code = last_error.get("code") or ""
        charge.decline_code = last_error.get("decline_code") or ""
        if charge.failure_code == "authentication_required":
            # Stripe's off-session answer when the bank wants the customer: not a decline.
            charge.status, charge.charge_attempt_failed = StripeCharge.REQUIRES_PAYMENT_METHOD, False
            signals += _requires_action_once(charge)
            return signals
        if charge.status != StripeCharge.FAILED or not charge.charge_attempt_failed:
            charge.status, charge.charge_attempt_failed = StripeCharge.FAILED, True
            charge.stripe_charge_id = failed_charge or charge.stripe_charge_id
            card_error = card_error_of(redact_secrets(intent))  # receivers may log or store its body
            signals.append(
                lambda: stripe_charge_card_exception.send(
                    sender=StripeCharge, instance=charge, exception=card_error
                )
            )
        return signals
    if status == "requires_action":
        charge.status, charge.charge_attempt_failed = StripeCharge.REQUIRES_ACTION, False
        signals += _requires_action_once(charge)
        return signals
    if status in dict(StripeCharge.STATUSES):
        charge.status = status
        if status == StripeCharge.CANCELED:
            charge.charge_attempt_failed = False
    return signals


def _requires_action_once(charge: StripeCharge) -> Signals:
    from .charges import StripeCharge

    if charge.action_requested_for == charge.payment_intent_id:
        return []
    charge.action_requested_for = charge.payment_intent_id
    return [lambda: stripe_charge_requires_action.send(sender=StripeCharge, instance=charge)]


def send_after_commit(signals: Signals, using: str) -> None:
    """Send once the outcome is committed (inside a caller's transaction: each in a savepoint, so a
    receiver's failing query cannot break it)."""
    for send in signals:
        if transaction.get_connection(using).in_atomic_block:
            with transaction.atomic(using=using):
                send()
        else:
            send()


# --- the journal kind ---------------------------------------------------------------------------


def charge_params(charge: StripeCharge, customer: Any, metadata: dict[str, str]) -> dict[str, Any]:
    """The off-session PaymentIntent of this attempt (stripe-python's PaymentIntentCreateParams)."""
    params: dict[str, Any] = {
        "amount": charge.amount,
        "currency": charge.currency,
        "customer": customer.stripe_customer_id,
        "payment_method": customer.default_payment_method_id,
        "off_session": True,
        "confirm": True,
        "description": charge.description,
        "metadata": metadata,
        # A saved card or source is charged as it is; redirect-based methods cannot be off-session.
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
    }
    if charge.statement_descriptor:
        params["statement_descriptor_suffix"] = charge.statement_descriptor
    return params


def lookup(operation: StripeOperation) -> Outcome | None:
    """The intent at Stripe: among the customer's created since the first send, the one carrying the
    operation's id."""
    params = operation.params
    since = (operation.first_sent_at or operation.created) - LOOKUP_MARGIN
    query: dict[str, Any] = {"created": {"gt": int(since.timestamp()) - 1}}
    if params.get("customer"):
        query["customer"] = params["customer"]
    for found in stripe_api.iterate("payment_intents", query):
        if (found.get("metadata") or {}).get("operation") != str(operation.uuid):
            continue
        if found.get("status") == "requires_payment_method" and found.get("last_payment_error"):
            error = card_error_of(found)
            return Outcome(StripeOperation.REFUSED, error.json_body, error)
        return Outcome(StripeOperation.SUCCEEDED, found)
    return None


def record(operation: StripeOperation, outcome: Outcome, target: StripeCharge | None) -> None:
    from .charges import StripeCharge

    charge = target if target is not None else StripeCharge.objects.filter(pk=operation.object_id).first()
    if charge is None:
        journal.finish(operation, outcome)
        return
    signals: Signals = []
    using = router.db_for_write(StripeCharge, instance=charge)
    with library_atomic(using=using):
        lock_for_update(charge)
        if not journal.finish(operation, outcome):
            return  # taken over by another worker, or closed by a webhook: it recorded the outcome
        current = (operation.params.get("metadata") or {}).get("attempt") == str(charge.attempt) or (
            operation.kind == CONFIRM_KIND and operation.key.split("~")[0].startswith(charge.idempotency_key)
        )
        error = outcome.error
        body = getattr(error, "json_body", None) or {}
        if outcome.succeeded and outcome.result:
            signals = apply_intent(charge, outcome.result)
        elif outcome.state == StripeOperation.REFUSED and intent_of_error(body) is not None:
            card_error = error if isinstance(error, StripeCardError) else None
            signals = apply_intent(charge, intent_of_error(body) or {}, card_error)
        elif outcome.state == StripeOperation.REFUSED and current and not charge.is_charged:
            # Refused before an intent existed (no payment method, parameters Stripe refused):
            # sending the same request again can never succeed.
            charge.charge_attempt_failed, charge.status = True, StripeCharge.FAILED
            details = body.get("error") or {}
            charge.failure_code = details.get("code") or operation.error_code or "refused"
            charge.decline_code = details.get("decline_code") or ""
            charge.stripe_response = body
            if isinstance(error, StripeCardError):
                signals.append(
                    lambda: stripe_charge_card_exception.send(
                        sender=StripeCharge, instance=charge, exception=error
                    )
                )
        charge.save()
    send_after_commit(signals, using)


def close_operations(charge: StripeCharge, intent: dict[str, Any]) -> None:
    """An event told what became of the intent an operation sent: that operation is done (a worker
    still sending it finds it finished and leaves the row to what the event recorded)."""
    operation_id = (intent.get("metadata") or {}).get("operation")
    if not operation_id or intent.get("status") in ("requires_confirmation",):
        return
    refused = intent.get("status") == "requires_payment_method" and intent.get("last_payment_error")
    stored = redact_secrets(intent)  # an update() skips the model's redaction
    StripeOperation.unresolved_for(charge).filter(kind=KIND, uuid=operation_id).update(
        state=StripeOperation.REFUSED if refused else StripeOperation.SUCCEEDED,
        lease_until=None,
        resolved_at=timezone.now(),
        stripe_id=intent["id"],
        result={"error": {"payment_intent": stored}} if refused else stored,
        updated=timezone.now(),
    )


# --- a retry confirms the same intent again ------------------------------------------------------

CONFIRM_KIND = "payment_intent_confirm"


def plan_confirm(charge: StripeCharge, customer: Any, fresh_key: bool) -> StripeOperation:
    """Attempt N+1 of a declined payment: ``payment_intents.confirm`` of the row's intent, off-session,
    with the customer's default payment method (inside ``plan_charge``'s transaction)."""
    operation = journal.plan(
        charge,
        kind=CONFIRM_KIND,
        service="payment_intents",
        method="confirm",
        params={"payment_method": customer.default_payment_method_id, "off_session": True},
        key=charge.idempotency_key,
        ids=(charge.payment_intent_id,),
        fresh_key=fresh_key,
    )
    # PaymentIntentConfirmParams take no metadata: the intent keeps the creation's.
    operation.params = {name: value for name, value in operation.params.items() if name != "metadata"}
    operation.save(update_fields=["params"])
    return operation


def lookup_confirm(operation: StripeOperation) -> Outcome | None:
    """The intent itself: confirmed when it moved on from the declined charge the row recorded."""
    from .charges import StripeCharge

    intent = stripe_api.call("payment_intents", "retrieve", *operation.ids)
    status = intent.get("status")
    if status == "requires_payment_method":
        declined_before = StripeCharge.objects.filter(pk=operation.object_id).values_list(
            "stripe_charge_id", flat=True
        )
        if latest_charge_id(intent) in (*declined_before, ""):
            return None  # not confirmed again yet: send it
        error = card_error_of(intent)
        return Outcome(StripeOperation.REFUSED, error.json_body, error)
    if status == "requires_confirmation":
        return None
    return Outcome(StripeOperation.SUCCEEDED, intent)


journal.register(KIND, lookup=lookup, record=record)
journal.register(CONFIRM_KIND, lookup=lookup_confirm, record=record)


# --- on-session: the owner pays, then the outcome is read -------------------------------------------


def refresh(charge: StripeCharge) -> dict[str, Any] | None:
    """``StripeCharge.refresh_from_stripe()``: read the intent, record its outcome (signals once)."""
    from .charges import CHARGE_KINDS, StripeCharge

    if not charge.payment_intent_id:
        unfinished = StripeOperation.unresolved_for(charge).filter(kind__in=CHARGE_KINDS).first()
        if unfinished is not None:
            journal.reconcile(unfinished)  # an attempt whose answer was lost: find out what it did
            charge.refresh_from_db()
        return None
    intent = stripe_api.call("payment_intents", "retrieve", charge.payment_intent_id)
    using = router.db_for_write(StripeCharge, instance=charge)
    with library_atomic(using=using):
        lock_for_update(charge)
        signals = apply_intent(charge, intent) if is_ours(charge, intent) else []
        close_operations(charge, intent)
        charge.save()
    if intent.get("client_secret"):
        charge._client_secret = intent["client_secret"]
    send_after_commit(signals, using)
    return intent


def pay_on_session(charge: StripeCharge, payment_method: Any = None) -> StripeCharge:
    """``StripeCharge.pay_on_session()``: the intent the owner confirms with stripe.js.

    An intent that waits (authentication, or declined off-session) is confirmed again by the
    customer as it is, nothing is sent from here. A charge declined without an intent (the Charges
    API, before an upgrade) gets a new attempt: an on-session PaymentIntent, not confirmed."""
    from aa_stripe.exceptions import StripeMethodNotAllowed, StripeNoActiveCustomer

    from .charges import StripeCharge

    using = router.db_for_write(StripeCharge, instance=charge)
    with library_atomic(using=using):
        lock_for_update(charge)
        if charge.is_charged:
            raise StripeMethodNotAllowed("Already paid.")
        if charge.status == StripeCharge.CANCELED:
            raise StripeMethodNotAllowed("This payment was canceled.")
        if payment_method is not None and payment_method.customer.user_id != charge.user_id:
            raise StripeMethodNotAllowed("The payment method belongs to another user.")
        method_id = payment_method.stripe_payment_method_id if payment_method is not None else ""
        if charge.waits_for_customer:
            if method_id:
                charge.payment_method = method_id
                charge.save(update_fields=["payment_method", "updated"])
            return charge
        if charge.status != StripeCharge.FAILED or not charge.charge_attempt_failed:
            raise StripeMethodNotAllowed("This charge has no payment waiting for the customer.")
        customer = _customer_for(charge)
        method_id = method_id or charge.payment_method or customer.default_payment_method_id
        if not method_id:
            raise StripeNoActiveCustomer("The user's customer has no payment method to pay with.")
        charge.attempt += 1
        charge.charge_attempt_failed = False
        charge.customer = customer
        charge.attempt_started_at = timezone.now()
        charge.status = StripeCharge.PENDING
        charge.payment_method = method_id
        charge.save()
        metadata = charge._charge_params(customer, None)["metadata"]
        params = {
            **charge_params(charge, customer, metadata),
            "payment_method": method_id,
            "automatic_payment_methods": {"enabled": True},
        }
        del params["off_session"], params["confirm"]
        operation = journal.plan(
            charge,
            kind=KIND,
            service="payment_intents",
            method="create",
            params=params,
            key=charge.idempotency_key,
            fresh_key=True,
        )
    outcome = journal.execute(operation, target=charge)
    if not outcome.succeeded:
        raise outcome.error or StripeInternalError()
    charge._client_secret = (outcome.result or {}).get("client_secret")
    return charge


def _customer_for(charge: StripeCharge) -> Any:
    from .customers import StripeCustomer

    return StripeCustomer.get_customer_to_charge(charge.user_id, preferred=charge.customer)
