"""Handlers that keep invoices true to Stripe's ``invoice.*`` events, and ask users back.

Order-tolerant as every handler (:mod:`.ordering`): each invoice row keeps the time of the last event
applied to it, so a duplicated or older event changes nothing. Rows are made only for customers the
library knows; an invoice of an unknown customer is stored with its event and creates nothing (an
unknown subscription is left empty on a known customer's invoice, never invented).

``invoice.payment_failed`` and ``invoice.payment_action_required`` send their signal once per invoice
(a flag on the row, set in the same transaction), only for a subscription's renewals (the first
payment's user is on the page) and only while the invoice is still open: a late failure event of an
invoice paid since says nothing, and an event older than the row still asks about an open invoice.
An event saying an earlier status than the row's is refetched (Stripe moves invoices one way).
``invoice.paid`` brings an ``incomplete``, ``past_due`` or ``unpaid`` subscription up to date from
Stripe at once, without waiting for its own event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeInvalidRequestError
from aa_stripe.models import StripeCustomer, StripeInvoice, StripeSubscription, StripeWebhook
from aa_stripe.models.webhooks import NeedsStripeObject, register_webhook_handler
from aa_stripe.signals import stripe_subscription_payment_action_required, stripe_subscription_payment_failed

from .ordering import incoming, stripe_object

logger = logging.getLogger("aa_stripe")

INVOICE_EVENTS = (
    "invoice.created",
    "invoice.deleted",
    "invoice.finalized",
    "invoice.finalization_failed",
    "invoice.marked_uncollectible",
    "invoice.overdue",
    "invoice.paid",
    "invoice.payment_action_required",
    "invoice.payment_failed",
    "invoice.payment_succeeded",
    "invoice.sent",
    "invoice.updated",
    "invoice.voided",
    "invoice.will_be_due",
)
#: event type -> (the row's flag, the signal): sent once per invoice
ASK_BACK = {
    "invoice.payment_failed": ("payment_failed_signaled", stripe_subscription_payment_failed),
    "invoice.payment_action_required": (
        "action_required_signaled",
        stripe_subscription_payment_action_required,
    ),
}


def _id(value: Any) -> str:
    return (value.get("id") if isinstance(value, dict) else value) or ""


#: Stripe moves an invoice's status one way only: an event saying less is older than the row
STATUS_RANK = {"draft": 0, "open": 1, "paid": 2, "void": 2, "uncollectible": 2}


def _behind(row: StripeInvoice) -> Callable[[dict[str, Any]], bool]:
    """An event whose invoice is in an earlier status than the row's (an hour-old payment_failed
    redelivered after refresh_invoices found the invoice paid): Stripe is asked instead."""

    def stale(data: dict[str, Any]) -> bool:
        return STATUS_RANK.get(data.get("status") or "", 0) < STATUS_RANK.get(row.status, 0)

    return stale


@register_webhook_handler(*INVOICE_EVENTS)
def invoice_changed(webhook: StripeWebhook) -> None:
    data = webhook.data_object
    if not data.get("id"):
        return  # invoice.upcoming and the like: a preview, not an invoice
    # Locks: the customer, then the invoice, then the subscription. The customer's lock serialises
    # the events of a new invoice (Stripe sends several in the same second): one inserts the row.
    customer = (
        StripeCustomer.objects.select_for_update()
        .filter(stripe_customer_id=_id(data.get("customer")))
        .first()
    )
    row = StripeInvoice.objects.select_for_update().filter(stripe_invoice_id=data["id"]).first()
    if row is None:
        if customer is None:
            logger.info(
                "Stripe event %s: invoice %s of a customer not known here: stored only",
                webhook.id,
                data["id"],
            )
            return
        row = StripeInvoice(customer=customer)
    change = incoming(webhook, row, "invoices", stale=_behind(row))
    if change is not None and change.deleted:
        if webhook.event_type == "invoice.deleted" or row.status in ("", StripeInvoice.STATUS_DRAFT):
            if row.pk is not None:
                row.delete()  # Stripe deletes drafts only
        else:
            logger.warning(
                "Stripe event %s: invoice %s not found at Stripe: row kept", webhook.id, data["id"]
            )
        return
    if change is not None:
        row.update_from_stripe_data(change.data)
    if row.pk is None:
        return
    ask = ASK_BACK.get(webhook.event_type)
    if ask is not None and _should_ask(row, ask[0]):
        # Also for an event older than the row (a failed delivery retried): an invoice still open
        # still needs its user. Stripe sends invoice.payment_failed for a renewal that waits for
        # authentication too, in any order with invoice.payment_action_required: its payment says
        # which (one read, only for a failure not signalled yet).
        if ask[0] == "payment_failed_signaled" and _waits_for_authentication(webhook, row):
            ask = ASK_BACK["invoice.payment_action_required"]
        _ask_back(row, *ask)
    if row.status == StripeInvoice.STATUS_PAID and change is not None:
        _bring_subscription_up_to_date(webhook, row)


def _should_ask(row: StripeInvoice, flag: str) -> bool:
    """Whether this invoice's user is still to be asked: a renewal (the first payment's user is on
    the page: subscribe() handed over the secret), still open, not asked yet (once asked to
    authenticate it, a failure says nothing new)."""
    if row.status != StripeInvoice.STATUS_OPEN or not row.stripe_subscription_id:
        return False
    if row.billing_reason == "subscription_create" or row.action_required_signaled:
        return False
    return not getattr(row, flag)


def _waits_for_authentication(webhook: StripeWebhook, row: StripeInvoice) -> bool:
    """Whether the invoice's payment waits for the customer to authenticate (its PaymentIntent in
    requires_action), read from Stripe's invoice payments before the handler's locks."""
    key = ("invoice_payments", row.stripe_invoice_id)
    if key not in webhook.stripe_objects:
        params = {"invoice": row.stripe_invoice_id, "expand": ["data.payment.payment_intent"]}

        def fetch() -> dict[str, Any]:
            try:
                return stripe_api.call("invoice_payments", "list", params=params)
            except StripeInvalidRequestError as err:
                if err.kind != "not_found":
                    raise
                return {"data": []}  # no such invoice at Stripe (any more): nothing waits

        raise NeedsStripeObject(key, fetch)
    for payment in webhook.stripe_objects[key].get("data") or []:
        intent = (payment.get("payment") or {}).get("payment_intent")
        if isinstance(intent, dict) and intent.get("status") == "requires_action":
            return True
    return False


def _ask_back(row: StripeInvoice, flag: str, signal: Any) -> None:
    """Send ``signal`` once for this invoice (its flag, set in the parse's transaction)."""
    if getattr(row, flag):
        return
    setattr(row, flag, True)
    row.save(update_fields=[flag, "updated"])
    subscription = row.subscription
    transaction.on_commit(
        lambda: signal.send(sender=StripeInvoice, invoice=row, subscription=subscription),
        robust=True,  # a failing receiver must not mark the committed parse as failed
    )


def _bring_subscription_up_to_date(webhook: StripeWebhook, row: StripeInvoice) -> None:
    """A paid invoice of a subscription that waited for its payment: Stripe's subscription now."""
    if row.subscription_id is None:
        return
    subscription = StripeSubscription.objects.select_for_update().filter(pk=row.subscription_id).first()
    waiting = (
        StripeSubscription.STATUS_INCOMPLETE,
        StripeSubscription.STATUS_PAST_DUE,
        StripeSubscription.STATUS_UNPAID,
    )
    if subscription is None or subscription.status not in waiting:
        return
    fresh = stripe_object(webhook, "subscriptions", subscription.stripe_subscription_id)
    if fresh.get("deleted"):
        return
    created = webhook.event_created
    if created is not None and (subscription.last_event_at is None or subscription.last_event_at < created):
        subscription.last_event_at = created  # what Stripe said at or after this event
    subscription.set_stripe_data(fresh)
