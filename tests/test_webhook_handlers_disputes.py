"""charge.dispute.*: logged, and stripe_charge_disputed sent with the local charge (or None)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from aa_stripe.models import StripeCharge, StripeWebhook
from aa_stripe.signals import stripe_charge_disputed
from aa_stripe.testing import make_event
from tests.stripe_fixtures import stripe_object
from tests.test_webhook_handlers import StripeCalls, deliver, deliver_again, received
from tests.test_webhook_handlers_charges import at_fake, charge_object

pytestmark = pytest.mark.django_db


def dispute_object(charge_id: Any, **overrides: Any) -> dict[str, Any]:
    values = {
        "id": f"dp_{uuid.uuid4().hex[:24]}",
        "charge": charge_id,
        "amount": 1000,
        "reason": "fraudulent",
    }
    return stripe_object("dispute", **{**values, **overrides})


@pytest.mark.parametrize("action", ["created", "updated", "closed", "funds_withdrawn"])
def test_dispute_is_logged_and_signalled_with_the_local_charge(client, fake_stripe, charged, caplog, action):
    dispute = dispute_object(charged.stripe_charge_id, status="needs_response")
    event = make_event(f"charge.dispute.{action}", dispute)
    stripe_calls = StripeCalls(fake_stripe)

    with received(stripe_charge_disputed) as sends, caplog.at_level(logging.WARNING, logger="aa_stripe"):
        deliver(client, event)
        deliver_again(client, event)

    [send] = sends
    assert send["sender"] is StripeCharge and send["charge"].pk == charged.pk
    assert (send["dispute"], send["event_action"]) == (dispute, action)
    assert isinstance(send["webhook"], StripeWebhook) and send["webhook"].pk == event["id"]
    [record] = [r for r in caplog.records if dispute["id"] in r.getMessage()]
    assert record.levelno == logging.WARNING and charged.stripe_charge_id in record.getMessage()
    assert stripe_calls() == []


def test_dispute_on_an_unknown_charge_is_signalled_without_a_charge(client, fake_stripe, caplog):
    dispute = dispute_object("ch_3NotMadeHere0000")

    with received(stripe_charge_disputed) as sends, caplog.at_level(logging.WARNING, logger="aa_stripe"):
        deliver(client, make_event("charge.dispute.created", dispute))

    [send] = sends
    assert send["charge"] is None and send["dispute"] == dispute
    assert any(dispute["id"] in r.getMessage() for r in caplog.records)


def test_dispute_with_an_expanded_charge_finds_the_local_charge(client, fake_stripe, charged):
    fake_charge = charge_object(at_fake(fake_stripe, charged.stripe_charge_id))

    with received(stripe_charge_disputed) as sends:
        deliver(client, make_event("charge.dispute.created", dispute_object(fake_charge)))

    assert sends[0]["charge"].pk == charged.pk
