"""Two workers charging (or refunding) the same row at once, each with its own DB connection.

Runs on PostgreSQL, where ``select_for_update`` really locks; SQLite serialises writers and
has no row locks, so the test is skipped there.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections

from aa_stripe.exceptions import StripeMethodNotAllowed
from aa_stripe.models import StripeCharge

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL"),
]


def race(workers: int, action) -> list:
    """Run ``action()`` in ``workers`` threads released at the same moment; results or exceptions."""
    barrier = threading.Barrier(workers)

    def run():
        try:
            barrier.wait(timeout=10)
            return action()
        except Exception as err:
            return err
        finally:
            connections.close_all()

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda _: run(), range(workers)))


def test_two_workers_charging_one_row_make_exactly_one_stripe_charge(fake_stripe, customer, user):
    charge = StripeCharge.objects.create(user=user, amount=700, description="Raced")
    # Slow Stripe down so the second worker arrives while the first one's call is in flight.
    fake_stripe.proxy.inject("delay", method="POST", path_prefix="/v1/charges", seconds=0.5, times=2)

    outcomes = race(2, lambda: StripeCharge.objects.get(pk=charge.pk).charge())

    charges = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, StripeMethodNotAllowed)]
    assert len(charges) == 1 and len(refused) == 1, outcomes
    assert len(fake_stripe.proxy.calls("POST", "/v1/charges")) == 1
    at_stripe = fake_stripe.get("/v1/charges", customer=customer.stripe_customer_id)["data"]
    assert [c["id"] for c in at_stripe] == [charges[0]["id"]]
    charge.refresh_from_db()
    assert charge.is_charged and charge.stripe_charge_id == charges[0]["id"]


def test_two_workers_refunding_the_rest_refund_once(fake_stripe, customer, user):
    charge = StripeCharge.objects.create(user=user, amount=900, description="Raced refund")
    charge.charge()
    fake_stripe.proxy.inject("delay", method="POST", path_prefix="/v1/refunds", seconds=0.5, times=2)

    outcomes = race(2, lambda: StripeCharge.objects.get(pk=charge.pk).refund())

    assert sum(isinstance(o, dict) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, StripeMethodNotAllowed) for o in outcomes) == 1, outcomes
    assert fake_stripe.get(f"/v1/charges/{charge.stripe_charge_id}")["amount_refunded"] == 900
    charge.refresh_from_db()
    assert charge.amount_refunded == 900 and charge.refunds.count() == 1


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
