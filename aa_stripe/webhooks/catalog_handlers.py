"""Handlers of the catalog's events: products, prices and (legacy) plans changed in the dashboard.

Registered from ``AaStripeConfig.ready()`` beside :mod:`aa_stripe.webhooks.handlers`, and following
the same rule (:func:`aa_stripe.webhooks.ordering.incoming`): deletions are final, older events are
skipped, a same-second tie re-reads Stripe.

- Products and prices are objects events create, as coupons are: the dashboard makes them, the
  library mirrors them. A price event never invents its product: the price names it by Stripe id
  and joins it once the product's own events (or ``refresh_prices``) bring it.
- Plans are made by the library only (``StripeSubscriptionPlan.create_at_stripe()``): events keep
  the known ones true (archived, metadata, trial days, deleted) and leave unknown plans alone.
"""

from __future__ import annotations

import uuid
from typing import Any

from aa_stripe.models import StripePrice, StripeProduct, StripeSubscriptionPlan, StripeWebhook
from aa_stripe.models.product_operations import PRICE
from aa_stripe.models.webhooks import register_webhook_handler
from aa_stripe.operations.record import StripeOperation

from .ordering import bury_if_deleted, incoming, predates_our_write


@register_webhook_handler("product.created", "product.updated", "product.deleted")
def product_changed(webhook: StripeWebhook) -> None:
    data = webhook.data_object
    if not data.get("id"):
        return
    rows = StripeProduct.objects.select_for_update()
    product = rows.filter(stripe_product_id=data["id"]).first() or StripeProduct(stripe_product_id=data["id"])
    _apply(webhook, product, "products")


@register_webhook_handler("price.created", "price.updated", "price.deleted")
def price_changed(webhook: StripeWebhook) -> None:
    data = webhook.data_object
    if not data.get("id"):
        return
    _apply(webhook, _price_row(data), "prices")


def _apply(webhook: StripeWebhook, row: StripeProduct | StripePrice, service: str) -> None:
    # A deletion leaves its tombstone here, row or not.
    change = incoming(webhook, row, service, stale=lambda data: predates_our_write(row, webhook))
    if change is None or (change.deleted and row.pk is None):
        return  # skipped, or the deletion of an object never mirrored here: nothing to mark
    if row.pk is None:
        row.is_created_at_stripe = True  # made elsewhere (the dashboard): Stripe has it
    row.update_from_stripe_data(change.data, deleted=change.deleted)


def _price_row(data: dict[str, Any]) -> StripePrice:
    """The row of this price: by its id; else our own price whose creation's answer is not recorded
    yet (its row waits, found through the operation's id the price carries in metadata); else new."""
    rows = StripePrice.objects.select_for_update()
    price = rows.filter(stripe_price_id=data["id"]).first()
    if price is not None:
        return price
    operation_id = (data.get("metadata") or {}).get("operation")
    try:
        operation_uuid = uuid.UUID(str(operation_id)) if operation_id else None
    except ValueError:  # not the journal's: metadata of a price made elsewhere
        operation_uuid = None
    if operation_uuid is not None:
        operation = StripeOperation.objects.filter(uuid=operation_uuid, kind=PRICE).first()
        if operation is not None:
            waiting = rows.filter(pk=operation.object_id, stripe_price_id="").first()
            if waiting is not None:
                return waiting
    return StripePrice(stripe_price_id=data["id"])


@register_webhook_handler("plan.updated", "plan.deleted")
def plan_changed(webhook: StripeWebhook) -> None:
    data = webhook.data_object
    plans = StripeSubscriptionPlan.objects.select_for_update()
    plan = plans.filter(stripe_plan_id=data["id"]).first() if data.get("id") else None
    if plan is None:
        bury_if_deleted(webhook)  # a plan never mirrored here: a late event must not count later
        return
    change = incoming(webhook, plan, "plans", stale=lambda data: predates_our_write(plan, webhook))
    if change is not None:
        plan.update_from_stripe_data(change.data, deleted=change.deleted)
