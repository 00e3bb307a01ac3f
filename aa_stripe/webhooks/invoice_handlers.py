"""Handlers that keep invoices true to Stripe's ``invoice.*`` events, and ask users back.

Order-tolerant as every handler (:mod:`.ordering`): each invoice row keeps the time of the last event
applied to it, so a duplicated or older event changes nothing. Rows are made only for customers the
library knows; an invoice of an unknown customer is stored with its event and creates nothing (an
unknown subscription is left empty on a known customer's invoice, never invented).

``invoice.payment_failed`` and ``invoice.payment_action_required`` send their signal once per invoice
(a flag on the row, set in the same transaction), and only while the invoice is still open: a late
failure event of an invoice paid since says nothing. ``invoice.paid`` brings an ``incomplete`` or
``past_due`` subscription up to date from Stripe at once, without waiting for its own event.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from aa_stripe.models import StripeCustomer, StripeInvoice, StripeSubscription, StripeWebhook
from aa_stripe.models.webhooks import register_webhook_handler
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


@register_webhook_handler(*INVOICE_EVENTS)
def invoice_changed(webhook: StripeWebhook) -> None:
    data = webhook.data_object
    if not data.get("id"):
        return  # invoice.upcoming and the like: a preview, not an invoice
    row = (
        StripeInvoice.objects.select_for_update()
        .select_related("customer")
        .filter(stripe_invoice_id=data["id"])
    )
    row = row.first()
    customer = row.customer if row is not None else None
    if customer is None:
        customer = StripeCustomer.objects.filter(stripe_customer_id=_id(data.get("customer"))).first()
        if customer is None:
            logger.info(
                "Stripe event %s: invoice %s of a customer not known here: stored only",
                webhook.id,
                data["id"],
            )
            return
        row = StripeInvoice(customer=customer)
    change = incoming(webhook, row, "invoices")
    if change is None:
        return
    if change.deleted:  # a draft deleted at Stripe
        if row.pk is not None:
            row.delete()
        return
    row.update_from_stripe_data(change.data)
    ask = ASK_BACK.get(webhook.event_type)
    if ask is not None:
        _ask_back(row, *ask)
    if webhook.event_type == "invoice.paid" or row.status == StripeInvoice.STATUS_PAID:
        _bring_subscription_up_to_date(webhook, row)


def _ask_back(row: StripeInvoice, flag: str, signal: Any) -> None:
    """Send ``signal`` once for this invoice, while it is still open (unpaid). Stripe also sends
    invoice.payment_failed for a payment that waits for authentication: once the user was asked to
    authenticate it, the failure says nothing new."""
    if getattr(row, flag) or row.status != StripeInvoice.STATUS_OPEN:
        return
    if flag == "payment_failed_signaled" and row.action_required_signaled:
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
    waiting = (StripeSubscription.STATUS_INCOMPLETE, StripeSubscription.STATUS_PAST_DUE)
    if subscription is None or subscription.status not in waiting:
        return
    fresh = stripe_object(webhook, "subscriptions", subscription.stripe_subscription_id)
    if fresh.get("deleted"):
        return
    created = webhook.event_created
    if created is not None and (subscription.last_event_at is None or subscription.last_event_at < created):
        subscription.last_event_at = created  # what Stripe said at or after this event
    subscription.set_stripe_data(fresh)
