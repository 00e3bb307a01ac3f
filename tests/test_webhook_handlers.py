"""Parsing webhooks: webhook_pre_parse, and event types without a built-in handler.

The built-in handlers are tested per object in ``test_webhook_handlers_<object>.py``; they share
the helpers below. Events are Stripe's canonical objects (``tests.stripe_fixtures``) with ids
of rows made through the library against the fake Stripe, delivered to the real (signed)
endpoint. Handlers send their signals with ``transaction.on_commit``; ``deliver`` runs those
callbacks as a real commit would.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db.models import F
from django.dispatch import Signal
from django.test import TestCase

from aa_stripe.models import (
    StripeCharge,
    StripeCoupon,
    StripeCustomer,
    StripeOperation,
    StripeSubscription,
    StripeWebhook,
)
from aa_stripe.models.webhooks import webhook_handlers_for
from aa_stripe.redaction import redact_secrets
from aa_stripe.signals import webhook_pre_parse
from aa_stripe.testing import make_event, post_webhook
from tests.stripe_fixtures import stripe_object

pytestmark = pytest.mark.django_db


# --- helpers shared by the test_webhook_handlers_* modules ------------------------------------------


def now() -> int:
    return int(time.time())


def sent_a_minute_ago() -> None:
    """Every request the operations journal has sent so far was sent a minute ago: the events a test
    delivers next are news from later (a change in the dashboard), not events Stripe made around a
    request of ours, which are read from Stripe again (``ordering.predates_our_write``)."""
    StripeOperation.objects.update(
        last_sent_at=F("last_sent_at") - timedelta(minutes=1),
        resolved_at=F("resolved_at") - timedelta(minutes=1),
    )


def deliver(client: Any, event: dict[str, Any], expected: str = "parsed") -> StripeWebhook:
    """POST ``event`` to the endpoint, signed; run the on-commit callbacks it registered."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = post_webhook(client, event)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == expected
    return StripeWebhook.objects.get(pk=event["id"])


def deliver_again(client: Any, event: dict[str, Any]) -> None:
    """Stripe's redelivery of the same event (answered "duplicate", not parsed again), then a
    forced re-parse of the stored row: the supported way to run its handlers again."""
    deliver(client, event, expected="duplicate")
    webhook = StripeWebhook.objects.get(pk=event["id"])
    assert webhook.is_parsed
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert webhook.process(force=True) is True
    webhook.refresh_from_db()
    assert (webhook.is_parsed, webhook.parse_error) == (True, "")


@contextlib.contextmanager
def received(signal: Signal) -> Iterator[list[dict[str, Any]]]:
    """The keyword arguments of every send of ``signal`` while the block runs."""
    sends: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        sends.append({"sender": sender, **kwargs})

    signal.connect(receiver, weak=False)
    try:
        yield sends
    finally:
        signal.disconnect(receiver)


class StripeCalls:
    """The API requests that reached the fake Stripe after this object was made."""

    def __init__(self, fake_stripe: Any) -> None:
        self.proxy = fake_stripe.proxy
        self.mark = len(self.proxy.requests)

    def __call__(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.proxy.requests[self.mark :]]

    def writes(self) -> list[tuple[str, str]]:
        """The requests that could change something at Stripe (a re-parse may read, never write)."""
        return [(method, path) for method, path in self() if method != "GET"]


# --- webhook_pre_parse ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "model", "action"),
    [
        ("invoice.paid", "invoice", "paid"),
        ("charge.dispute.created", "charge.dispute", "created"),
        ("customer.subscription.updated", "customer.subscription", "updated"),
        ("ping", None, None),
    ],
)
def test_pre_parse_signal_names_the_model_and_action(client, fake_stripe, event_type, model, action):
    data = stripe_object("dispute", charge="ch_elsewhere") if "dispute" in event_type else {}
    event = make_event(event_type, data)

    with received(webhook_pre_parse) as sends:
        webhook = deliver(client, event)

    [send] = sends
    assert send["sender"] is StripeWebhook
    assert send["instance"].pk == webhook.pk == event["id"]
    assert (send["event_type"], send["event_model"], send["event_action"]) == (event_type, model, action)


def test_pre_parse_signal_is_sent_before_the_handlers_run(client, fake_stripe, user):
    customer = StripeCustomer.objects.create(
        user=user, stripe_customer_id="cus_seen", is_created_at_stripe=True
    )
    event = make_event("customer.deleted", stripe_object("customer", id="cus_seen"))
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(StripeCustomer.objects.get(pk=customer.pk).is_active)

    webhook_pre_parse.connect(receiver)
    try:
        deliver(client, event)
    finally:
        webhook_pre_parse.disconnect(receiver)

    assert seen == [True]  # the receiver saw the row before customer_changed deactivated it
    customer.refresh_from_db()
    assert customer.is_active is False


# --- event types without a handler ------------------------------------------------------------------


@pytest.fixture
def local_rows(fake_stripe, customer, plan):
    """One row of each mirrored kind, made through the library at the fake."""
    charge = StripeCharge.objects.create(user=customer.user, amount=700, description="Order #7")
    charge.charge()
    subscription = StripeSubscription.objects.create(user=customer.user, plan=plan)
    subscription.create_at_stripe()
    coupon = StripeCoupon.objects.create(
        coupon_id="SALE10", duration="forever", currency="usd", amount_off=10
    )
    return [customer, charge, subscription, coupon]


def snapshot(rows: list[Any]) -> list[dict[str, Any]]:
    return [type(row).objects.filter(pk=row.pk).values().get() for row in rows]


@pytest.mark.parametrize(
    "event_type",
    ["invoiceitem.created", "customer.tax_id.created", "payout.paid", "balance.available", "ping"],
)
def test_types_without_a_handler_are_stored_parsed_and_signalled_only(
    client, fake_stripe, local_rows, event_type
):
    customer, charge, subscription, _coupon = local_rows
    model = event_type.split(".")[0]
    objects = {
        "invoice": stripe_object(
            "invoice", customer=customer.stripe_customer_id, subscription=subscription.stripe_subscription_id
        ),
        "payment_intent": stripe_object("payment_intent", customer=customer.stripe_customer_id),
        "charge": stripe_object("refund", charge=charge.stripe_charge_id, amount=700),
    }
    event = make_event(event_type, objects.get(model, {}))
    before = snapshot(local_rows)
    stripe_calls = StripeCalls(fake_stripe)

    with received(webhook_pre_parse) as sends:
        webhook = deliver(client, event)

    assert webhook_handlers_for(event_type) == []
    assert (webhook.is_parsed, webhook.parse_error, webhook.parse_attempts) == (True, "", 1)
    # as Stripe sent it, but for the client secret a payment_intent carries (tests/test_redaction.py)
    assert webhook.event_type == event_type and webhook.raw_data == redact_secrets(event)
    assert len(sends) == 1
    assert snapshot(local_rows) == before
    assert stripe_calls() == []


def test_an_event_delivered_twice_is_parsed_once(client, fake_stripe):
    event = make_event("invoice.paid", stripe_object("invoice"))

    with received(webhook_pre_parse) as sends:
        deliver(client, event)
        deliver(client, event, expected="duplicate")

    assert len(sends) == 1
    assert StripeWebhook.objects.get().parse_attempts == 1


def test_a_forced_re_parse_sends_webhook_pre_parse_again_saying_so(client, fake_stripe):
    event = make_event("invoice.paid", stripe_object("invoice"))

    with received(webhook_pre_parse) as sends:
        deliver(client, event)
        deliver_again(client, event)

    assert [send["instance"].reparsing for send in sends] == [False, True]
    assert StripeWebhook.objects.get().parse_attempts == 2
