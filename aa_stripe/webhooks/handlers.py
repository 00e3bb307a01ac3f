"""Built-in handlers that keep local rows true to Stripe's events, without pushing anything back.

Registered from ``AaStripeConfig.ready()``; each runs inside ``StripeWebhook.process()``'s
transaction, so a failure rolls its changes back and is recorded on the webhook row.
Rows the library does not know (objects created elsewhere) are left alone, except coupons,
which the dashboard creates and the library mirrors.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.db import connections, transaction

from aa_stripe.exceptions import StripeCardError
from aa_stripe.models import (
    StripeCharge,
    StripeCoupon,
    StripeCustomer,
    StripeRefund,
    StripeSubscription,
    StripeWebhook,
    payment_intent_operations,
)
from aa_stripe.models.base import timestamp_to_datetime
from aa_stripe.models.charge_operations import close_charge_operations
from aa_stripe.models.webhooks import register_webhook_handler
from aa_stripe.signals import (
    stripe_charge_card_exception,
    stripe_charge_disputed,
    stripe_charge_refunded,
    stripe_charge_succeeded,
)

from .ordering import bury_if_deleted, incoming, predates_our_write, stripe_object

logger = logging.getLogger("aa_stripe")


# --- coupons ------------------------------------------------------------------------------------


@register_webhook_handler("coupon.created", "coupon.updated", "coupon.deleted")
def coupon_changed(webhook: StripeWebhook) -> None:
    """Coupons are the one object events create here: the dashboard makes them, the library mirrors."""
    coupon = _coupon_row(webhook, webhook.data_object)
    if coupon is None:
        bury_if_deleted(webhook)  # a coupon never mirrored here: later events must not bring it back
        return
    change = incoming(webhook, coupon, "coupons", stale=lambda data: predates_our_write(coupon, webhook))
    if change is None or (change.deleted and coupon.pk is None):
        return
    coupon.update_from_stripe_data(change.data, deleted=change.deleted)


def _coupon_row(webhook: StripeWebhook, data: dict[str, Any]) -> StripeCoupon | None:
    """The row of this very coupon (ids are reused after deletion), a new one, or None to ignore."""
    created = timestamp_to_datetime(data.get("created"))
    rows = StripeCoupon.objects.all_with_deleted().select_for_update().filter(coupon_id=data["id"])
    live = rows.filter(is_deleted=False).first()  # at most one: a unique constraint
    if created is None:  # Stripe's deleted stub {id, object, deleted} names no creation time
        return live
    coupon = rows.filter(created=created).first()
    if coupon is not None or webhook.event_type == "coupon.deleted":
        return coupon  # None: a deleted coupon never mirrored here, nothing to mark
    if live is not None and live.created > created:
        # A late event of an older namesake: Stripe deleted it before the live one was made.
        return None
    if live is not None:
        # A coupon made in the dashboard under the live one's id: that one was deleted at Stripe.
        live.update_from_stripe_data({"id": live.coupon_id, "deleted": True})
    return StripeCoupon(coupon_id=data["id"])


# --- customers ----------------------------------------------------------------------------------


def _locked_customer(stripe_customer_id: str | None) -> StripeCustomer | None:
    if not stripe_customer_id:
        return None
    return StripeCustomer.objects.select_for_update().filter(stripe_customer_id=stripe_customer_id).first()


@register_webhook_handler("customer.created", "customer.updated", "customer.deleted")
def customer_changed(webhook: StripeWebhook) -> None:
    """Customers are made by the library only; events keep the known ones true."""
    customer = _locked_customer(webhook.data_object.get("id"))
    if customer is None:
        bury_if_deleted(webhook)
        return
    change = incoming(
        webhook,
        customer,
        "customers",
        stale=lambda data: (
            _cards_newer_than(customer, webhook, data) or predates_our_write(customer, webhook)
        ),
    )
    if change is not None:
        customer.update_from_stripe_data(change.data, deleted=change.deleted)


def _cards_newer_than(customer: StripeCustomer, webhook: StripeWebhook, data: dict[str, Any]) -> bool:
    """Whether the event's list of cards (older API versions send one) may be older than a card
    event already applied: then only Stripe knows the current list."""
    if not isinstance(data.get("sources"), dict) or not customer.source_event_times:
        return False
    created = webhook.event_created
    return created is None or max(customer.source_event_times.values()) >= int(created.timestamp())


@register_webhook_handler("customer.source.*")
def customer_source_changed(webhook: StripeWebhook) -> None:
    """One card added, changed or removed. Cards keep clocks of their own (``source_event_times``):
    ``customer.updated`` of current API versions carries no cards, so a customer-wide clock would
    let a later customer event hide an earlier card event, or the other way round."""
    source = webhook.data_object
    customer = _locked_customer(source.get("customer"))
    if customer is None or not source.get("id"):
        return
    created = webhook.event_created
    stamp = int(created.timestamp()) if created else None
    clocks = dict(customer.source_event_times or {})
    last = clocks.get(source["id"])
    if stamp is not None and last is not None and stamp < last:
        return  # an older event of this card
    if stamp is None or stamp == last:
        # Which state of the card is the latest only Stripe knows: take its cards (the rest of the
        # customer is the customer events' to apply).
        customer.update_sources_from_stripe_data(
            stripe_object(webhook, "customers", customer.stripe_customer_id)
        )
        return
    clocks[source["id"]] = stamp  # kept after deletion: a late "created" cannot bring the card back
    customer.source_event_times = clocks
    others = [s for s in customer.sources or [] if s.get("id") != source["id"]]
    if webhook.event_type == "customer.source.deleted":
        customer.sources = others
        if customer.default_source == source["id"]:
            customer.default_source = ""
    else:
        customer.sources = [*others, source]
    customer.save()


# --- charges ------------------------------------------------------------------------------------


def _locked_charge(data: dict[str, Any]) -> StripeCharge | None:
    """Our row for a Stripe charge: by its id, or by our UUID in metadata (answer lost on charge())."""
    rows = StripeCharge.objects.select_for_update()
    charge = rows.filter(stripe_charge_id=data["id"]).first() if data.get("id") else None
    if charge is not None:
        return charge
    intent = data.get("payment_intent")
    intent = intent.get("id") if isinstance(intent, dict) else intent
    if intent:  # a PaymentIntent's charge: the row of that intent
        return rows.filter(payment_intent_id=intent).first()
    charge_uuid = (data.get("metadata") or {}).get("charge_uuid")
    try:
        charge_uuid = uuid.UUID(str(charge_uuid)) if charge_uuid else None
    except ValueError:  # not ours: a charge made elsewhere with its own metadata
        return None
    charge = rows.filter(uuid=charge_uuid).first() if charge_uuid else None
    # A declined attempt leaves its charge id on the row until the retry's answer arrives, so a
    # row bound to another Stripe charge still takes this one when it is the current attempt.
    if charge is not None and charge.stripe_charge_id and not _is_current_attempt(charge, data, strict=True):
        return None
    return charge


def _is_current_attempt(charge: StripeCharge, data: dict[str, Any], strict: bool = False) -> bool:
    """Whether ``data`` is the row's current attempt; ``strict`` refuses charges naming no attempt."""
    attempt = (data.get("metadata") or {}).get("attempt")
    if attempt is None:
        return not strict
    return attempt == str(charge.attempt)


@register_webhook_handler("charge.succeeded", "charge.failed", "charge.refunded", "charge.updated")
def charge_changed(webhook: StripeWebhook) -> None:
    data = webhook.data_object
    charge = _locked_charge(data)
    if charge is None:
        return
    change = incoming(webhook, charge, "charges")
    if change is None:
        return
    data = change.data
    signals = _apply_outcome(charge, data)
    if charge.is_charged and charge.stripe_charge_id == data.get("id"):
        charge.stripe_response = data  # the latest Stripe says of the charge that paid this row
    if _apply_refunds(charge, data):
        signals.append(lambda: stripe_charge_refunded.send(sender=StripeCharge, instance=charge))
    charge.save()
    for send in signals:
        transaction.on_commit(send, robust=True)  # only once the change it announces is committed


def _apply_outcome(charge: StripeCharge, data: dict[str, Any]) -> list[Callable[[], Any]]:
    """Mark the row charged or declined when Stripe says so (e.g. our own answer was lost)."""
    if charge.is_charged or not _is_current_attempt(charge, data):
        return []
    if data.get("status") == "succeeded":
        charge.is_charged, charge.charge_attempt_failed = True, False
        charge.status, charge.failure_code, charge.decline_code = StripeCharge.SUCCEEDED, "", ""
        charge.stripe_charge_id, charge.stripe_response = data["id"], data
        close_charge_operations(charge, data)
        return [lambda: stripe_charge_succeeded.send(sender=StripeCharge, instance=charge)]
    if data.get("payment_intent"):
        return []  # a PaymentIntent's failed charge: its intent says whether the payment waits or failed
    if data.get("status") == "failed" and not charge.charge_attempt_failed:
        charge.charge_attempt_failed, charge.status = True, StripeCharge.FAILED
        charge.failure_code = data.get("failure_code") or ""
        charge.decline_code = (data.get("outcome") or {}).get("reason") or ""
        charge.stripe_charge_id, charge.stripe_response = data["id"], data
        close_charge_operations(charge, data)
        error = StripeCardError(
            data.get("failure_message"),
            code=data.get("failure_code"),
            decline_code=(data.get("outcome") or {}).get("reason"),
        )
        return [
            lambda: stripe_charge_card_exception.send(sender=StripeCharge, instance=charge, exception=error)
        ]
    return []


def _apply_refunds(charge: StripeCharge, data: dict[str, Any]) -> bool:
    """Take Stripe's refunded amount (and the refunds it lists); True when it grew."""
    if charge.pending_refund_amount is not None:
        # refund() is waiting to confirm a refund whose answer was lost: its retry owns the amount.
        return False
    refunded = data.get("amount_refunded")
    if refunded is None:
        return False
    listed = ((data.get("refunds") or {}).get("data")) or []  # the current API omits them
    return charge.apply_stripe_refunds(listed, refunded, bool(data.get("refunded")))


@register_webhook_handler("charge.dispute.*")
def charge_disputed(webhook: StripeWebhook) -> None:
    """Logged and announced once per event (a forced re-parse does not announce it again)."""
    if webhook.reparsing:
        return
    dispute = webhook.data_object
    charge_id = dispute.get("charge")
    charge_id = charge_id.get("id") if isinstance(charge_id, dict) else charge_id
    charge = StripeCharge.objects.filter(stripe_charge_id=charge_id).first() if charge_id else None
    _model, action = webhook.event_type.rsplit(".", 1)
    logger.warning(
        "Stripe dispute %s (%s) on charge %s: %s %s",
        dispute.get("id"),
        action,
        charge_id,
        dispute.get("status"),
        dispute.get("reason"),
    )
    transaction.on_commit(
        lambda: stripe_charge_disputed.send(
            sender=StripeCharge, charge=charge, dispute=dispute, event_action=action, webhook=webhook
        ),
        robust=True,  # a failing receiver must not mark the committed parse as failed
    )


# --- subscriptions ------------------------------------------------------------------------------


#: Statuses a subscription never leaves at Stripe.
FINAL_STATUSES = (StripeSubscription.STATUS_CANCELED, StripeSubscription.STATUS_INCOMPLETE_EXPIRED)


def _behind(subscription: StripeSubscription, webhook: StripeWebhook) -> Callable[[dict[str, Any]], bool]:
    """Whether the event's subscription may be older than what the row holds; Stripe is asked instead.

    A subscription never goes back to ``incomplete`` at Stripe (a late retry of
    customer.subscription.created after the row was refreshed or paid), never leaves ``canceled``
    or ``incomplete_expired`` (an event made before our cancel, delivered after it, would make a
    canceled subscription active again here), and an event that would undo a cancellation at the
    period's end may predate our own request that made it."""

    def stale(data: dict[str, Any]) -> bool:
        status, held = data.get("status"), subscription.status
        incomplete = StripeSubscription.STATUS_INCOMPLETE
        if status == incomplete and held not in ("", incomplete):
            return True
        if held in FINAL_STATUSES and status != held:
            return True
        undoes_cancel = subscription.at_period_end and not data.get("cancel_at_period_end")
        return undoes_cancel and predates_our_write(subscription, webhook)

    return stale


@register_webhook_handler(
    "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"
)
def subscription_changed(webhook: StripeWebhook) -> None:
    data = webhook.data_object
    rows = StripeSubscription.objects.filter(stripe_subscription_id=data.get("id"))
    features = connections[rows.db].features
    if features.has_select_for_update_of or not features.has_select_for_update:
        # the price and plan compared with the event's come in the same query, unlocked (SQLite
        # locks no rows: its write transaction serialises writers)
        rows = rows.select_for_update(of=("self",)).select_related("price", "plan")
    else:  # MariaDB: no FOR UPDATE OF
        rows = rows.select_for_update()
    subscription = rows.first()
    if subscription is None:
        bury_if_deleted(webhook)
        return
    change = incoming(webhook, subscription, "subscriptions", stale=_behind(subscription, webhook))
    if change is None:
        return
    data = change.data
    if change.deleted:
        data = {key: value for key, value in data.items() if key != "deleted"}
        data["status"] = StripeSubscription.STATUS_CANCELED
    if data.get("status") == StripeSubscription.STATUS_CANCELED and not (
        data.get("canceled_at") or data.get("ended_at")
    ):
        data = {**data, "ended_at": int(webhook.event_created.timestamp()) if webhook.event_created else None}
    subscription.set_stripe_data(data)


# --- PaymentIntents -----------------------------------------------------------------------------


@register_webhook_handler(
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.requires_action",
    "payment_intent.processing",
    "payment_intent.canceled",
)
def payment_intent_changed(webhook: StripeWebhook) -> None:
    """The outcome of a charge paid through a PaymentIntent, whichever of the API answer, this event
    or ``charge.succeeded`` arrives first (the first records it, signals once). Intents the library
    did not create are stored and ignored."""
    data = webhook.data_object
    if not data.get("id"):
        return
    charge = StripeCharge.objects.select_for_update().filter(payment_intent_id=data["id"]).first()
    if charge is None:
        charge_uuid = (data.get("metadata") or {}).get("charge_uuid")
        try:
            charge_uuid = uuid.UUID(str(charge_uuid)) if charge_uuid else None
        except ValueError:
            return
        charge = (
            StripeCharge.objects.select_for_update().filter(uuid=charge_uuid).first() if charge_uuid else None
        )
    if charge is None or not payment_intent_operations.is_ours(charge, data):
        return
    change = incoming(webhook, charge, "payment_intents")
    if change is None or change.deleted:
        charge.save(update_fields=["last_event_at"])
        return
    signals = payment_intent_operations.apply_intent(charge, change.data)
    payment_intent_operations.close_operations(charge, change.data)
    charge.save()
    for send in signals:
        transaction.on_commit(send, robust=True)


# --- refunds ------------------------------------------------------------------------------------

#: refund statuses that gave no money back
_NOT_REFUNDED = ("failed", "canceled")


@register_webhook_handler("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")
def refund_changed(webhook: StripeWebhook) -> None:
    """One refund of a charge (of either kind): its row follows Stripe's status; a refund that fails
    after it was counted gives its amount back to the charge; a refund made elsewhere (the dashboard)
    is recorded and announced. Refunds of charges the library does not know are ignored."""
    data = webhook.data_object
    if not data.get("id"):
        return
    charge_id, intent_id = _stripe_id(data.get("charge")), _stripe_id(data.get("payment_intent"))
    rows = StripeCharge.objects.select_for_update()
    charge = rows.filter(stripe_charge_id=charge_id).first() if charge_id else None
    if charge is None and intent_id:
        charge = rows.filter(payment_intent_id=intent_id).first()
    if charge is None:
        return
    status = data.get("status") or ""
    refunded_now = status not in _NOT_REFUNDED
    refund = charge.refunds.filter(stripe_refund_id=data["id"]).first()
    created = webhook.event_created
    if created is not None and (charge.last_event_at is None or created > charge.last_event_at):
        # A refund's news is the charge's news too: an older charge.refunded (its total from
        # before a refund failed) must not undo it.
        charge.last_event_at = created
    signals: list[Callable[[], Any]] = []
    if refund is None:
        refund = StripeRefund(
            charge=charge, amount=data.get("amount") or 0, currency=data.get("currency") or charge.currency
        )
        refund.stripe_refund_id = data["id"]
        if refunded_now:
            # Counted from the rows, never added on top: a charge.refunded applied before this event
            # may have counted this very refund in the charge's total already.
            counted = charge.refunds.exclude(status__in=_NOT_REFUNDED).values_list("amount", flat=True)
            total = sum(counted) + refund.amount
            if total > charge.amount_refunded:
                charge.amount_refunded = total
                charge.is_refunded = charge.amount_refunded >= (charge.amount or 0)
                signals.append(lambda: stripe_charge_refunded.send(sender=StripeCharge, instance=charge))
            charge.stripe_refund_id = data["id"]
    elif refund.status in _NOT_REFUNDED:
        return  # failed or canceled is final at Stripe
    elif not refunded_now:
        charge.amount_refunded = max(charge.amount_refunded - refund.amount, 0)
        charge.is_refunded = charge.amount_refunded >= (charge.amount or 0)
    refund.status = status or refund.status
    refund.failure_code = data.get("failure_reason") or ("refund_" + status if not refunded_now else "")
    refund.stripe_response = data
    refund.save()
    charge.save()
    for send in signals:
        transaction.on_commit(send, robust=True)


def _stripe_id(value: Any) -> str:
    return (value.get("id") if isinstance(value, dict) else value) or ""
