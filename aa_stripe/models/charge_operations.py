"""How the journal finishes charges and refunds: finding them at Stripe, recording outcomes.

Registered with :mod:`aa_stripe.operations.journal` when the models are imported, so that
``StripeCharge.charge()``, ``refund()`` and ``reconcile_stripe_operations`` share one recorder.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import router, transaction
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import AaStripeError, StripeAPIError, StripeCardError
from aa_stripe.guard import library_atomic
from aa_stripe.operations import journal
from aa_stripe.operations.journal import Outcome
from aa_stripe.operations.record import StripeOperation
from aa_stripe.signals import stripe_charge_card_exception, stripe_charge_refunded, stripe_charge_succeeded

from .base import lock_for_update
from .charges import StripeCharge, StripeRefund
from .customers import StripeCustomer

#: Stripe's clock and ours differ a little: look a bit before the first send.
LOOKUP_MARGIN = timedelta(minutes=10)


def _send_signals(signals: list[Callable[[], Any]], using: str) -> None:
    """Send after the outcome is committed. Inside a caller's transaction each send gets a savepoint,
    so a receiver's failing query cannot break that transaction (the outcome stays recorded)."""
    for send in signals:
        if transaction.get_connection(using).in_atomic_block:
            with transaction.atomic(using=using):
                send()
        else:
            send()


def _target(operation: StripeOperation, target: StripeCharge | None) -> StripeCharge | None:
    # A deleted row keeps nothing of what Stripe did: the operation still keeps the outcome.
    return target if target is not None else StripeCharge.objects.filter(pk=operation.object_id).first()


def _ours(
    found: dict[str, Any], operation: StripeOperation, legacy: Callable[[dict[str, Any]], bool]
) -> bool:
    """Whether Stripe's object was made by ``operation``: its id in metadata, or, for objects made
    before operations existed (no id in metadata), ``legacy(found)``."""
    metadata = found.get("metadata") or {}
    if "operation" in metadata:
        return metadata["operation"] == str(operation.uuid)
    return legacy(found)


# --- charges ------------------------------------------------------------------------------------


def lookup_charge(operation: StripeOperation) -> Outcome | None:
    """The charge at Stripe: by customer and time (list filters), matched on the operation id."""
    params = operation.params
    since = (operation.first_sent_at or operation.created) - LOOKUP_MARGIN
    query: dict[str, Any] = {"created": {"gt": int(since.timestamp()) - 1}}  # i.e. gte
    if params.get("customer"):
        query["customer"] = params["customer"]
    sent = params.get("metadata") or {}

    def legacy(found: dict[str, Any]) -> bool:
        # Only an operation made from an older version's in-flight state was sent without its id.
        metadata = found.get("metadata") or {}
        return (
            operation.legacy
            and bool(sent.get("charge_uuid"))
            and (metadata.get("charge_uuid"), metadata.get("attempt"))
            == (sent.get("charge_uuid"), sent.get("attempt"))
        )

    for found in stripe_api.iterate("charges", query):
        if not _ours(found, operation, legacy):
            continue
        if found.get("status") == "failed":
            return Outcome(StripeOperation.REFUSED, *_declined(found))
        return Outcome(StripeOperation.SUCCEEDED, found)
    return None


def _declined(charge: dict[str, Any]) -> tuple[dict[str, Any], StripeCardError]:
    """A failed charge found at Stripe, as the card error its creation answered."""
    error = {
        "type": "card_error",
        "code": charge.get("failure_code"),
        "decline_code": (charge.get("outcome") or {}).get("reason"),
        "message": charge.get("failure_message"),
        "charge": charge.get("id"),
    }
    body = {"error": error}
    return body, StripeCardError(
        error["message"], code=error["code"], decline_code=error["decline_code"], json_body=body
    )


def record_charge(operation: StripeOperation, outcome: Outcome, target: StripeCharge | None) -> None:
    charge = _target(operation, target)
    if charge is None:
        journal.finish(operation, outcome)
        return
    signals: list[Callable[[], Any]] = []
    using = router.db_for_write(StripeCharge, instance=charge)
    with library_atomic(using=using):
        lock_for_update(charge)
        if not journal.finish(operation, outcome):
            return  # taken over by another worker, which records it
        current = (operation.params.get("metadata") or {}).get("attempt") == str(charge.attempt)
        error = outcome.error
        if outcome.succeeded and not charge.is_charged:  # money taken is recorded, whichever attempt
            charge.is_charged, charge.charge_attempt_failed = True, False
            charge.status, charge.failure_code, charge.decline_code = StripeCharge.SUCCEEDED, "", ""
            charge.stripe_charge_id = outcome.result["id"]
            charge.stripe_response = outcome.result
            signals.append(lambda: stripe_charge_succeeded.send(sender=StripeCharge, instance=charge))
        elif outcome.state == StripeOperation.REFUSED and current and not charge.is_charged:
            # Declined, or parameters Stripe refused: retrying the same request can never succeed.
            charge.charge_attempt_failed, charge.status = True, StripeCharge.FAILED
            charge.stripe_response = getattr(error, "json_body", None) or {}
            details = charge.stripe_response.get("error") or {}
            charge.failure_code = details.get("code") or operation.error_code or "refused"
            charge.decline_code = details.get("decline_code") or ""
            if isinstance(error, StripeCardError):
                charge.stripe_charge_id = (charge.stripe_response.get("error") or {}).get("charge") or ""
                signals.append(
                    lambda: stripe_charge_card_exception.send(
                        sender=StripeCharge, instance=charge, exception=error
                    )
                )
        elif outcome.state == StripeOperation.UNKNOWN and isinstance(error, StripeAPIError):
            charge.stripe_response = error.json_body
        charge.save()
    _send_signals(signals, using)


# --- refunds ------------------------------------------------------------------------------------


def lookup_refund(operation: StripeOperation) -> Outcome | None:
    """The refund at Stripe: among the charge's refunds, matched on the operation id."""
    charge_id = operation.params.get("charge")
    amount = operation.params.get("amount")
    recorded = set(
        StripeRefund.objects.filter(charge_id=operation.object_id)
        .exclude(stripe_refund_id=None)
        .values_list("stripe_refund_id", flat=True)
    )

    def legacy(found: dict[str, Any]) -> bool:
        # Only an operation made from an older version's in-flight state was sent without its id:
        # a refund of that amount the older version made and nothing here recorded.
        return operation.legacy and found.get("amount") == amount and found.get("id") not in recorded

    for found in stripe_api.iterate("refunds", {"charge": charge_id}):
        if _ours(found, operation, legacy) and found.get("status") not in ("failed", "canceled"):
            return Outcome(StripeOperation.SUCCEEDED, found)
    return None


def record_refund(operation: StripeOperation, outcome: Outcome, target: StripeCharge | None) -> None:
    charge = _target(operation, target)
    if charge is None:
        journal.finish(operation, outcome)
        return
    listed = _refunds_at_stripe(charge) if outcome.state == StripeOperation.REFUSED else None
    amount = int(operation.params.get("amount") or 0)
    signals: list[Callable[[], Any]] = []
    using = router.db_for_write(StripeCharge, instance=charge)
    with library_atomic(using=using):
        lock_for_update(charge)
        if not journal.finish(operation, outcome):
            return
        if outcome.succeeded:
            refund = outcome.result or {}
            if not charge.refunds.filter(stripe_refund_id=refund["id"]).exists():
                StripeRefund.objects.create(
                    charge=charge,
                    amount=amount,
                    currency=charge.currency,
                    stripe_refund_id=refund["id"],
                    status=refund.get("status") or "succeeded",
                    stripe_response=refund,
                )
                charge.amount_refunded += amount
                charge.is_refunded = charge.amount_refunded >= (charge.amount or 0)
                charge.stripe_refund_id = refund["id"]
                signals.append(lambda: stripe_charge_refunded.send(sender=StripeCharge, instance=charge))
            charge.pending_refund_amount = None
        elif outcome.state == StripeOperation.REFUSED:
            error = outcome.error
            StripeRefund.objects.create(
                charge=charge,
                amount=amount,
                currency=charge.currency,
                stripe_refund_id=None,
                status="failed",
                failure_code=operation.error_code or "refused",
                stripe_response=getattr(error, "json_body", None) or {},
            )
            charge.pending_refund_amount = None  # released: the charge can be refunded again
            # What Stripe refunded meanwhile (e.g. an earlier attempt whose answer was lost).
            if listed is not None and charge.apply_stripe_refunds(listed):
                signals.append(lambda: stripe_charge_refunded.send(sender=StripeCharge, instance=charge))
        charge.save()
    _send_signals(signals, using)


def _refunds_at_stripe(charge: StripeCharge) -> list[dict[str, Any]] | None:
    """The charge's refunds as Stripe lists them (read before any lock), or None if Stripe fails."""
    try:
        return list(stripe_api.iterate("refunds", {"charge": charge.stripe_charge_id}))
    except AaStripeError:
        return None


def prepare_charge(operation: StripeOperation) -> None:
    """An operation migrated from an older version holds only what its lookup needs: before it is
    sent (its lookup found nothing), the full request is rebuilt from the row, once, then frozen."""
    if not operation.legacy or "operation" in (operation.params.get("metadata") or {}):
        return
    charge = StripeCharge.objects.filter(pk=operation.object_id).first()
    if charge is None:
        return
    customer = StripeCustomer.get_customer_to_charge(charge.user_id, preferred=charge.customer)
    operation.params = journal.with_operation_id(charge.rebuilt_charge_params(customer), operation)
    StripeOperation.objects.filter(pk=operation.pk).update(params=operation.params)


journal.register("charge", lookup=lookup_charge, record=record_charge, prepare=prepare_charge)
journal.register("refund", lookup=lookup_refund, record=record_refund)


def close_charge_operations(charge: StripeCharge, stripe_charge: dict[str, Any]) -> None:
    """A webhook told the outcome of the charge's attempt: the operations that sent it are done.

    A worker still sending one finds it finished and leaves the row to what the webhook recorded.
    """
    attempt = (stripe_charge.get("metadata") or {}).get("attempt")
    state = (
        StripeOperation.SUCCEEDED if stripe_charge.get("status") == "succeeded" else StripeOperation.REFUSED
    )
    done = [
        operation.pk
        for operation in StripeOperation.unresolved_for(charge).filter(kind="charge")
        if (operation.params.get("metadata") or {}).get("attempt") == attempt
    ]
    if done:
        StripeOperation.objects.filter(pk__in=done).update(
            state=state,
            lease_until=None,
            resolved_at=timezone.now(),
            stripe_id=stripe_charge.get("id") or "",
            result=stripe_charge,
            updated=timezone.now(),
        )
