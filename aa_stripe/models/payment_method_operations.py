"""How the journal saves and removes payment methods at Stripe.

- ``setup_intent.create`` (``setup_intents.create``): a SetupIntent for off-session use of the
  customer's next payment method. The row is saved and the operation planned in one transaction;
  key ``setup_intent:create:<row pk>:<uuid>``. Lookup: the customer's SetupIntents created since the
  first send, matched on ``metadata[operation]``. The client secret Stripe answers with reaches the
  caller in memory only (the journal stores answers with client secrets redacted).
- ``payment_method.detach`` (``payment_methods.detach``, which takes no metadata): key
  ``payment_method:detach:<pm id>`` (detaching is final at Stripe: one request per method; a new
  key only after Stripe refused one). Lookup: the payment method, detached when it has no customer.
- Setting the default is an update of the customer (``customer.update`` of
  :mod:`.customer_operations`), so it is ordered with the customer's other updates.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import router

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    StripeInternalError,
    StripeInvalidRequestError,
    StripeMethodNotAllowed,
    StripeSetupIntentNotSucceeded,
)
from aa_stripe.guard import library_atomic
from aa_stripe.operations import journal
from aa_stripe.operations.journal import Outcome
from aa_stripe.operations.record import StripeOperation

from .base import lock_for_update
from .customers import StripeCustomer
from .payment_methods import StripePaymentMethod, StripeSetupIntent

logger = logging.getLogger("aa_stripe")

SETUP_INTENT_CREATE = "setup_intent.create"
DETACH = "payment_method.detach"

#: Stripe's clock and ours differ a little: look a bit before the first send.
LOOKUP_MARGIN = timedelta(minutes=10)


# --- SetupIntents -------------------------------------------------------------------------------


def create_setup_intent(customer: StripeCustomer) -> StripeSetupIntent:
    """``StripeSetupIntent.create_for_customer()``: plan (committed), send, record."""
    if not customer.is_active:
        raise StripeMethodNotAllowed("This customer is not active.")
    customer._require_stripe_id()
    with library_atomic(using=router.db_for_write(StripeSetupIntent)):
        lock_for_update(customer)
        operation = _unfinished_creation(customer)
        if operation is not None:
            # A creation whose answer was lost: finish it rather than make a second SetupIntent.
            intent = StripeSetupIntent.objects.get(pk=operation.object_id)
        else:
            intent = StripeSetupIntent.objects.create(customer=customer)
            params: dict[str, Any] = {"customer": customer.stripe_customer_id, "usage": "off_session"}
            operation = journal.plan(
                intent,
                kind=SETUP_INTENT_CREATE,
                service="setup_intents",
                method="create",
                params=params,
                key=f"setup_intent:create:{intent.pk}:{uuid.uuid4().hex}",
            )
    outcome = journal.execute(operation, target=intent)
    if outcome.succeeded:
        return intent
    if outcome.state == StripeOperation.REFUSED:
        StripeSetupIntent.objects.filter(pk=intent.pk, stripe_setup_intent_id="").delete()
        error = outcome.error
        if (
            isinstance(error, StripeInvalidRequestError)
            and error.kind == "not_found"
            and error.param == "customer"
        ):
            # Deleted at Stripe: the next request makes the user a new customer.
            StripeCustomer.objects.filter(pk=customer.pk).update(is_active=False)
    raise outcome.error or StripeInternalError()


def _unfinished_creation(customer: StripeCustomer) -> StripeOperation | None:
    waiting = StripeSetupIntent.objects.filter(customer=customer, stripe_setup_intent_id="")
    ids = [str(pk) for pk in waiting.values_list("pk", flat=True)]
    if not ids:
        return None
    content_type = ContentType.objects.get_for_model(StripeSetupIntent)
    return (
        StripeOperation.objects.filter(
            kind=SETUP_INTENT_CREATE,
            content_type=content_type,
            object_id__in=ids,
            state__in=StripeOperation.UNRESOLVED,
        )
        .order_by("id")
        .first()
    )


def lookup_setup_intent(operation: StripeOperation) -> Outcome | None:
    """The SetupIntent at Stripe: among the customer's created since the first send, the one
    carrying the operation's id."""
    since = (operation.first_sent_at or operation.created) - LOOKUP_MARGIN
    query = {"customer": operation.params["customer"], "created": {"gt": int(since.timestamp()) - 1}}
    for found in stripe_api.iterate("setup_intents", query):
        if (found.get("metadata") or {}).get("operation") == str(operation.uuid):
            return Outcome(StripeOperation.SUCCEEDED, found)
    return None


def apply_setup_intent(row: StripeSetupIntent, found: dict[str, Any]) -> None:
    row.update_from_stripe_data(found)


def complete_setup_intent(intent: StripeSetupIntent) -> StripePaymentMethod:
    """``StripeSetupIntent.complete()``: read it, mirror the saved method, default when none."""
    data = intent.refresh_from_stripe()
    if intent.status != StripeSetupIntent.SUCCEEDED:
        raise StripeSetupIntentNotSucceeded(
            f"This SetupIntent has not succeeded (status {intent.status}): nothing was saved.",
            status=intent.status,
            code=intent.failure_code or None,
        )
    method_id = intent.payment_method
    if not method_id:  # Stripe names the method of every succeeded SetupIntent
        raise StripeSetupIntentNotSucceeded("This SetupIntent saved no payment method.", status=intent.status)
    method = stripe_api.call("payment_methods", "retrieve", method_id)
    customer = intent.customer
    with library_atomic(using=router.db_for_write(StripePaymentMethod)):
        lock_for_update(customer)
        row = StripePaymentMethod.mirror(customer, method)
    if row is None:
        logger.warning(
            "SetupIntent %s succeeded but its payment method %s is not on customer %s",
            data.get("id"),
            method_id,
            customer.stripe_customer_id,
        )
        raise StripeSetupIntentNotSucceeded(
            "The saved payment method is not attached to this customer at Stripe.", status=intent.status
        )
    if not customer.default_payment_method_id:
        row.set_as_default()
        row.refresh_from_db()
    return row


# --- detaching ----------------------------------------------------------------------------------


def detach(method: StripePaymentMethod) -> None:
    """``StripePaymentMethod.detach()``: plan (committed), send, record."""
    key = f"payment_method:detach:{method.stripe_payment_method_id}"
    with library_atomic(using=router.db_for_write(StripePaymentMethod, instance=method)):
        StripeCustomer.objects.select_for_update().filter(pk=method.customer_id).exists()
        if not StripePaymentMethod.objects.select_for_update().filter(pk=method.pk).exists():
            return  # detached meanwhile (an event, another request)
        operation = StripeOperation.unresolved_for(method).filter(kind=DETACH).first()
        if operation is None:
            operation = journal.plan(
                method,
                kind=DETACH,
                service="payment_methods",
                method="detach",
                params={},
                key=key,
                ids=(method.stripe_payment_method_id,),
                fresh_key=True,
            )
            # Stripe's detach takes no metadata (PaymentMethodDetachParams: expand only).
            operation.params = {}
            operation.save(update_fields=["params"])
    outcome = journal.execute(operation, target=method)
    if outcome.succeeded:
        return
    if outcome.state == StripeOperation.REFUSED and StripePaymentMethod.objects.filter(pk=method.pk).exists():
        # Stripe refuses to detach a method that is not attached: find out whether it still is here.
        method.refresh_from_stripe()
        if not StripePaymentMethod.objects.filter(pk=method.pk).exists():
            return
    raise outcome.error or StripeInternalError()


def lookup_detach(operation: StripeOperation) -> Outcome | None:
    try:
        found = stripe_api.call("payment_methods", "retrieve", *operation.ids)
    except StripeInvalidRequestError as err:
        if err.kind != "not_found":
            raise
        return Outcome(StripeOperation.REFUSED, err.json_body, err)
    if not found.get("customer"):
        return Outcome(StripeOperation.SUCCEEDED, found)
    return None


def record_detach(operation: StripeOperation, outcome: Outcome, target: StripePaymentMethod | None) -> None:
    with library_atomic(using=router.db_for_write(StripePaymentMethod)):
        # The customer first, then the method: the lock order of every path that touches both.
        owner = StripePaymentMethod.objects.filter(stripe_payment_method_id=operation.ids[0]).values_list(
            "customer_id", flat=True
        )
        list(StripeCustomer.objects.select_for_update().filter(pk__in=list(owner)))
        row = (
            StripePaymentMethod.objects.select_for_update()
            .filter(stripe_payment_method_id=operation.ids[0])
            .first()
        )
        if journal.finish(operation, outcome) and outcome.succeeded and row is not None:
            row.forget()


journal.register_simple(
    SETUP_INTENT_CREATE, StripeSetupIntent, apply_setup_intent, lookup=lookup_setup_intent
)
journal.register(DETACH, lookup=lookup_detach, record=record_detach)
