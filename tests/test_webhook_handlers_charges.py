"""charge.succeeded / charge.failed / charge.refunded: the local StripeCharge stays true.

charge.dispute.* is in test_webhook_handlers_disputes.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeCardError, StripeInternalError, StripeMethodNotAllowed
from aa_stripe.models import StripeCharge, StripeRefund
from aa_stripe.signals import (
    stripe_charge_card_exception,
    stripe_charge_refunded,
    stripe_charge_succeeded,
)
from aa_stripe.testing import make_event
from tests.conftest import make_customer
from tests.stripe_fixtures import stripe_object
from tests.test_webhook_handlers import StripeCalls, deliver, deliver_again, now, received

pytestmark = pytest.mark.django_db

DECLINED_ON_CHARGE = "4000000000000341"


def dt(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def new_charge(user: Any, amount: int = 1000) -> StripeCharge:
    return StripeCharge.objects.create(user=user, amount=amount, description="Order #1")


def at_fake(fake_stripe: Any, charge_id: str) -> dict[str, Any]:
    return fake_stripe.get(f"/v1/charges/{charge_id}")


def charge_object(fake_charge: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Stripe's charge (current shape: ``refunds`` only when expanded) for a charge at the fake."""
    failed = fake_charge["status"] == "failed"
    values = {
        key: fake_charge[key]
        for key in ("id", "amount", "amount_refunded", "created", "currency", "customer", "description")
    }
    values |= {
        "metadata": fake_charge["metadata"],
        "status": fake_charge["status"],
        "paid": not failed,
        "captured": not failed,
        "amount_captured": 0 if failed else fake_charge["amount"],
        "refunded": fake_charge["refunded"],
        "failure_code": fake_charge["failure_code"],
        "failure_message": fake_charge["failure_message"],
        "payment_method": fake_charge["payment_method"],
        "outcome": {
            **stripe_object("charge")["outcome"],
            "reason": "generic_decline" if failed else None,
            "type": "issuer_declined" if failed else "authorized",
        },
    }
    data = stripe_object("charge", **{**values, **overrides})
    if "refunds" not in overrides:
        del data["refunds"]
    return data


@pytest.fixture
def charged(fake_stripe, customer, user) -> StripeCharge:
    charge = new_charge(user)
    charge.charge()
    return charge


def lost_charge(fake_stripe: Any, user: Any) -> tuple[StripeCharge, dict[str, Any]]:
    """A charge Stripe made (or declined) whose answer never reached us."""
    charge = new_charge(user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")
    with pytest.raises(StripeInternalError):
        charge.charge()
    charge.refresh_from_db()
    assert not charge.is_charged and not charge.charge_attempt_failed and charge.stripe_charge_id == ""
    [made] = fake_stripe.get("/v1/charges", customer=charge.customer.stripe_customer_id)["data"]
    return charge, made


# --- charge.succeeded ----------------------------------------------------------------------------


def test_succeeded_for_a_charge_whose_answer_was_lost(client, fake_stripe, customer, user):
    charge, made = lost_charge(fake_stripe, user)
    event = make_event("charge.succeeded", charge_object(made), created=made["created"])
    stripe_calls = StripeCalls(fake_stripe)

    with received(stripe_charge_succeeded) as succeeded:
        deliver(client, event)
        deliver_again(client, event)

    charge.refresh_from_db()
    assert charge.is_charged and not charge.charge_attempt_failed
    assert charge.stripe_charge_id == made["id"] and charge.stripe_response["id"] == made["id"]
    assert [send["instance"].pk for send in succeeded] == [charge.pk]
    assert stripe_calls.writes() == []  # the re-parse is a tie: it may re-read the charge
    with pytest.raises(StripeMethodNotAllowed, match=r"^Already charged\.$"):
        charge.charge()
    assert len(fake_stripe.proxy.calls("POST", "/v1/charges")) == 1


@pytest.mark.django_db(transaction=True)
def test_succeeded_signal_comes_after_the_commit(client, fake_stripe, customer, user):
    _charge, made = lost_charge(fake_stripe, user)
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(StripeCharge.objects.get(pk=instance.pk).is_charged)  # committed already

    stripe_charge_succeeded.connect(receiver)
    try:
        deliver(client, make_event("charge.succeeded", charge_object(made)))
    finally:
        stripe_charge_succeeded.disconnect(receiver)

    assert seen == [True]


def second_attempt_lost(fake_stripe: Any, user: Any) -> tuple[StripeCharge, dict, dict]:
    """Attempt 1 declined; the user adds a card; attempt 2's answer is lost. Returns both charges."""
    customer = make_customer(fake_stripe, user, DECLINED_ON_CHARGE)
    charge = new_charge(user)
    assert charge.charge() is None
    customer.add_new_source(fake_stripe.card_token()["id"])
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")
    with pytest.raises(StripeInternalError):
        charge.charge()
    charge.refresh_from_db()
    assert charge.attempt == 2 and not charge.charge_attempt_failed and not charge.is_charged
    declined, succeeded = sorted(
        fake_stripe.get("/v1/charges", customer=customer.stripe_customer_id)["data"],
        key=lambda c: c["metadata"]["attempt"],
    )
    return charge, declined, succeeded


def test_succeeded_for_a_second_attempt_whose_answer_was_lost(client, fake_stripe, user):
    charge, _declined, made = second_attempt_lost(fake_stripe, user)

    with received(stripe_charge_succeeded) as succeeded:
        deliver(client, make_event("charge.succeeded", charge_object(made)))

    charge.refresh_from_db()
    assert charge.is_charged and charge.stripe_charge_id == made["id"]
    assert len(succeeded) == 1


def test_succeeded_for_a_charge_already_recorded_changes_nothing(client, fake_stripe, charged):
    event = make_event("charge.succeeded", charge_object(at_fake(fake_stripe, charged.stripe_charge_id)))
    stripe_calls = StripeCalls(fake_stripe)

    with received(stripe_charge_succeeded) as succeeded:
        deliver(client, event)

    charged.refresh_from_db()
    assert charged.is_charged and charged.last_event_at == dt(event["created"])
    assert succeeded == [] and stripe_calls() == []


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"charge_uuid": "order-17"},
        {"charge_uuid": "0b8d3f3e-5d2c-4a53-9c65-8e1f8a4f1c11", "attempt": "1"},
    ],
)
def test_charges_not_made_here_are_ignored(client, fake_stripe, charged, metadata):
    before = list(StripeCharge.objects.values())
    data = stripe_object("charge", id="ch_3MadeElsewhere000", status="succeeded", metadata=metadata)
    stripe_calls = StripeCalls(fake_stripe)

    with received(stripe_charge_succeeded) as succeeded, received(stripe_charge_refunded) as refunded:
        for event_type in ("charge.succeeded", "charge.failed", "charge.refunded"):
            deliver(client, make_event(event_type, {**data, "amount_refunded": 100}))

    assert list(StripeCharge.objects.values()) == before
    assert succeeded == refunded == [] and stripe_calls() == []


# --- charge.failed -------------------------------------------------------------------------------


def test_failed_for_the_current_attempt_marks_it_failed(client, fake_stripe, user):
    make_customer(fake_stripe, user, DECLINED_ON_CHARGE)
    charge, made = lost_charge(fake_stripe, user)
    assert made["status"] == "failed"
    event = make_event("charge.failed", charge_object(made))
    stripe_calls = StripeCalls(fake_stripe)

    with received(stripe_charge_card_exception) as declined, received(stripe_charge_succeeded) as succeeded:
        deliver(client, event)
        deliver_again(client, event)

    charge.refresh_from_db()
    assert charge.charge_attempt_failed and not charge.is_charged
    assert charge.stripe_charge_id == made["id"]
    [send] = declined
    assert send["instance"].pk == charge.pk
    assert isinstance(send["exception"], StripeCardError)
    assert (send["exception"].code, send["exception"].decline_code) == ("card_declined", "generic_decline")
    assert succeeded == [] and stripe_calls.writes() == []
    charge.charge()  # a deliberate retry: a new attempt, a new idempotency key
    assert fake_stripe.proxy.calls("POST", "/v1/charges")[-1].idempotency_key == f"charge:{charge.uuid}:2"


def test_failed_for_an_older_attempt_is_ignored(client, fake_stripe, user):
    charge, declined_charge, _made = second_attempt_lost(fake_stripe, user)
    before = StripeCharge.objects.filter(pk=charge.pk).values().get()

    with received(stripe_charge_card_exception) as declined:
        deliver(client, make_event("charge.failed", charge_object(declined_charge)))

    after = StripeCharge.objects.filter(pk=charge.pk).values().get()
    assert not after["charge_attempt_failed"] and after["attempt"] == 2
    assert {k: v for k, v in after.items() if k not in ("last_event_at", "updated")} == {
        k: v for k, v in before.items() if k not in ("last_event_at", "updated")
    }
    assert declined == []


# --- charge.refunded -----------------------------------------------------------------------------


def test_refund_made_in_the_dashboard(client, fake_stripe, charged):
    refund = stripe_api.call("refunds", "create", params={"charge": charged.stripe_charge_id, "amount": 300})
    fake_charge = at_fake(fake_stripe, charged.stripe_charge_id)
    listed = stripe_object("refund", **fake_charge["refunds"]["data"][0])
    failed = stripe_object(
        "refund", id="re_3FailedRefund0000", charge=charged.stripe_charge_id, status="failed"
    )
    refunds = {"object": "list", "data": [failed, listed], "has_more": False}
    stripe_calls = StripeCalls(fake_stripe)

    with received(stripe_charge_refunded) as sends:
        deliver(client, make_event("charge.refunded", charge_object(fake_charge, refunds=refunds)))

    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.is_refunded) == (300, False)
    [row] = charged.refunds.all()
    assert (row.stripe_refund_id, row.amount) == (refund["id"], 300) == (charged.stripe_refund_id, 300)
    assert [send["instance"].pk for send in sends] == [charged.pk]
    assert stripe_calls() == []

    charged.refund()  # the rest, through the library: it knows 300 are refunded already
    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.is_refunded) == (1000, True)
    assert at_fake(fake_stripe, charged.stripe_charge_id)["amount_refunded"] == 1000


def test_full_refund_in_the_dashboard_without_expanded_refunds(client, fake_stripe, charged):
    stripe_api.call("refunds", "create", params={"charge": charged.stripe_charge_id})
    fake_charge = at_fake(fake_stripe, charged.stripe_charge_id)

    with received(stripe_charge_refunded) as sends:
        deliver(client, make_event("charge.refunded", charge_object(fake_charge)))

    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.is_refunded) == (1000, True)
    assert len(sends) == 1
    with pytest.raises(StripeMethodNotAllowed, match="Already refunded"):
        charged.refund()


def test_refund_whose_answer_was_lost_is_not_counted_twice(client, fake_stripe, charged):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/refunds")
    with pytest.raises(StripeInternalError):
        charged.refund(400)
    fake_charge = at_fake(fake_stripe, charged.stripe_charge_id)
    assert fake_charge["amount_refunded"] == 400  # Stripe did refund

    with received(stripe_charge_refunded) as sends:
        deliver(client, make_event("charge.refunded", charge_object(fake_charge), created=now()))
        charged.refresh_from_db()
        assert (charged.amount_refunded, charged.pending_refund_amount) == (0, 400)  # left to the retry

        charged.refund(400)
        deliver(client, make_event("charge.refunded", charge_object(fake_charge), created=now() + 1))

    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.pending_refund_amount, charged.is_refunded) == (400, None, False)
    assert list(StripeRefund.objects.values_list("amount", flat=True)) == [400]
    first, retry = fake_stripe.proxy.calls("POST", "/v1/refunds")
    assert retry.replayed and retry.idempotency_key == first.idempotency_key
    assert at_fake(fake_stripe, charged.stripe_charge_id)["amount_refunded"] == 400
    assert len(sends) == 1  # from refund(); the webhooks added nothing


# --- order, ties, replays -----------------------------------------------------------------------


def test_older_events_after_a_newer_refund_are_skipped(client, fake_stripe, charged):
    stripe_api.call("refunds", "create", params={"charge": charged.stripe_charge_id})
    fake_charge, t0 = at_fake(fake_stripe, charged.stripe_charge_id), now()
    stripe_calls = StripeCalls(fake_stripe)

    with received(stripe_charge_refunded) as sends:
        deliver(client, make_event("charge.refunded", charge_object(fake_charge), created=t0 + 10))
        partial = charge_object(fake_charge, amount_refunded=300, refunded=False)
        deliver(client, make_event("charge.refunded", partial, created=t0 + 5))
        unrefunded = charge_object(fake_charge, amount_refunded=0, refunded=False)
        deliver(client, make_event("charge.succeeded", unrefunded, created=t0))

    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.is_refunded) == (1000, True)
    assert charged.last_event_at == dt(t0 + 10)
    assert len(sends) == 1 and stripe_calls() == []


def test_a_tie_re_reads_the_charge_from_stripe(client, fake_stripe, charged):
    t0 = now()
    for amount in (300, 200):  # two refunds in the dashboard within a second
        stripe_api.call("refunds", "create", params={"charge": charged.stripe_charge_id, "amount": amount})
    fake_charge = at_fake(fake_stripe, charged.stripe_charge_id)
    deliver(
        client, make_event("charge.refunded", charge_object(fake_charge, amount_refunded=200), created=t0)
    )
    stripe_calls = StripeCalls(fake_stripe)

    deliver(
        client, make_event("charge.refunded", charge_object(fake_charge, amount_refunded=300), created=t0)
    )

    assert stripe_calls() == [("GET", f"/v1/charges/{charged.stripe_charge_id}")]
    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.last_event_at) == (500, dt(t0))


def test_a_replayed_refund_event_changes_nothing_twice(client, fake_stripe, charged):
    stripe_api.call("refunds", "create", params={"charge": charged.stripe_charge_id, "amount": 250})
    event = make_event("charge.refunded", charge_object(at_fake(fake_stripe, charged.stripe_charge_id)))

    with received(stripe_charge_refunded) as sends:
        deliver(client, event)
        before = StripeCharge.objects.filter(pk=charged.pk).values().get()
        stripe_calls = StripeCalls(fake_stripe)
        deliver_again(client, event)

    after = StripeCharge.objects.filter(pk=charged.pk).values().get()
    # The re-parse is a tie, so it takes Stripe's own charge (this event wraps it in fixture
    # fields): the same charge, the same amounts; tests/test_webhook_order_matrix.py compares it all.
    ignored = ("updated", "stripe_response")
    assert {k: v for k, v in after.items() if k not in ignored} == {
        k: v for k, v in before.items() if k not in ignored
    }
    assert after["stripe_response"]["amount_refunded"] == 250
    assert before["amount_refunded"] == 250 and len(sends) == 1 and stripe_calls.writes() == []


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
