"""Handlers that keep saved payment methods and SetupIntents true to Stripe's events.

Order-tolerant as every handler (:mod:`.ordering`): each payment method row keeps the time of the
last event applied to it, and detaching is final at Stripe (a detached method is never attached
again), so ``payment_method.detached`` leaves a tombstone that no late ``attached``/``updated`` event
gets past. Rows are made only for customers the library knows; an event about an unknown customer,
or a method Stripe no longer has, is stored and creates nothing. Locks: the customer first, then the
method (the order of ``StripeCustomer.refresh_payment_methods``).
"""

from __future__ import annotations

import logging
from typing import Any

from aa_stripe.models import (
    StripeCustomer,
    StripePaymentMethod,
    StripeSetupIntent,
    StripeTombstone,
    StripeWebhook,
)
from aa_stripe.models.base import timestamp_to_datetime
from aa_stripe.models.webhooks import register_webhook_handler

from .ordering import incoming, is_buried, stripe_object

logger = logging.getLogger("aa_stripe")


def _id(value: Any) -> str | None:
    return value.get("id") if isinstance(value, dict) else value


def _locked_customer(stripe_customer_id: str | None) -> StripeCustomer | None:
    if not stripe_customer_id:
        return None
    return StripeCustomer.objects.select_for_update().filter(stripe_customer_id=stripe_customer_id).first()


def _locked_method(stripe_payment_method_id: str) -> StripePaymentMethod | None:
    return (
        StripePaymentMethod.objects.select_for_update()
        .select_related("customer")
        .filter(stripe_payment_method_id=stripe_payment_method_id)
        .first()
    )


@register_webhook_handler(
    "payment_method.attached", "payment_method.updated", "payment_method.automatically_updated"
)
def payment_method_changed(webhook: StripeWebhook) -> None:
    """A method attached to a customer, or its card details changed (a new expiry date)."""
    data = webhook.data_object
    if not data.get("id"):
        return
    customer = _locked_customer(_id(data.get("customer")))
    row = _locked_method(data["id"])
    if customer is None and row is None:
        return  # a customer the library does not know: stored, nothing created
    if is_buried(webhook, data):
        logger.info("Stripe event %s: payment method %s was detached before: skipped", webhook.id, data["id"])
        return
    if row is None:
        row = StripePaymentMethod(customer=customer)
    change = incoming(webhook, row, "payment_methods")
    if change is None:
        return
    owner_id = _id(change.data.get("customer"))
    if change.deleted or not owner_id or (customer is not None and owner_id != customer.stripe_customer_id):
        if row.pk is not None:
            row.forget()  # Stripe says it is no longer on this customer
        return
    if customer is None:  # the event named no customer we know; the row's customer stays
        customer = row.customer
    if owner_id != customer.stripe_customer_id:
        return
    row.customer = customer
    row.update_from_stripe_data(change.data)


@register_webhook_handler("payment_method.detached")
def payment_method_detached(webhook: StripeWebhook) -> None:
    """Detached: final at Stripe. The row goes, with the customer's default if it was that, and a
    tombstone stops late events of the method."""
    data = webhook.data_object
    if not data.get("id"):
        return
    previous = ((webhook.raw_data or {}).get("data") or {}).get("previous_attributes") or {}
    customer = _locked_customer(_id(previous.get("customer")))
    if customer is None:  # the event did not say whose it was: the row's customer, locked first
        owner = StripePaymentMethod.objects.filter(stripe_payment_method_id=data["id"]).values_list(
            "customer__stripe_customer_id", flat=True
        )
        _locked_customer(next(iter(owner), None))
    row = _locked_method(data["id"])
    if row is not None:
        row.forget()
        return
    StripeTombstone.bury(
        "payment_method",
        data["id"],
        timestamp_to_datetime(data.get("created")),
        webhook.event_created,
        webhook.id,
    )


@register_webhook_handler(
    "setup_intent.created",
    "setup_intent.requires_action",
    "setup_intent.succeeded",
    "setup_intent.setup_failed",
    "setup_intent.canceled",
)
def setup_intent_changed(webhook: StripeWebhook) -> None:
    """The SetupIntent's state on its row (when the library made it); a succeeded one's payment
    method is mirrored for a customer the library knows (whoever made the SetupIntent)."""
    data = webhook.data_object
    if not data.get("id"):
        return
    customer = _locked_customer(_id(data.get("customer")))
    intent = StripeSetupIntent.objects.select_for_update().filter(stripe_setup_intent_id=data["id"]).first()
    if intent is not None:
        change = incoming(webhook, intent, "setup_intents")
        if change is not None and not change.deleted:
            intent.update_from_stripe_data(change.data)
    if webhook.event_type != "setup_intent.succeeded" or customer is None:
        return
    method = data.get("payment_method")
    if not method:
        return
    if not isinstance(method, dict):
        method = stripe_object(webhook, "payment_methods", method)  # the event names only the id
    if method.get("deleted") or is_buried(webhook, method):
        return  # Stripe no longer has it, or it was detached: nothing from thin air
    row = _locked_method(method["id"])
    if (
        row is not None
        and row.last_event_at is not None
        and row.last_event_at > (webhook.event_created or row.last_event_at)
    ):
        return  # a newer event of the method was applied already
    StripePaymentMethod.mirror(customer, method)
