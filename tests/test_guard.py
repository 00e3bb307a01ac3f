"""The guard: no write to Stripe while one of the library's own transactions is open.

pytest-django runs each test inside a transaction, so the guard cannot look at Django's
``in_atomic_block``: it tracks the transactions the library opens itself (``library_atomic``).
These are its negative controls: a library path forced to write inside its own transaction.
"""

from __future__ import annotations

import logging

import pytest

from aa_stripe import stripe_api
from aa_stripe.guard import StripeWriteInTransaction, in_library_transaction, library_atomic
from aa_stripe.models import StripeCharge, StripeCoupon

pytestmark = pytest.mark.django_db


def test_a_write_inside_a_library_transaction_is_refused_before_it_is_sent(fake_stripe):
    with pytest.raises(StripeWriteInTransaction, match=r"coupons\.create"), library_atomic():
        assert in_library_transaction()
        StripeCoupon.objects.create(coupon_id="INSIDE", duration="once", percent_off=5)

    assert not in_library_transaction()
    assert fake_stripe.proxy.calls() == []


def test_a_library_method_forced_into_its_own_transaction_trips_it(fake_stripe, customer, user):
    charge = StripeCharge.objects.create(user=user, amount=1000, description="x")
    with pytest.raises(StripeWriteInTransaction), library_atomic():
        charge.charge()
    assert fake_stripe.proxy.calls("POST", "/v1/charges") == []


def test_reads_are_allowed_and_so_are_writes_outside_the_librarys_transactions(fake_stripe, customer):
    fake_stripe.proxy.reset()  # forget the customer fixture's requests
    with library_atomic():
        stripe_api.call("customers", "retrieve", customer.stripe_customer_id)
        list(stripe_api.iterate("coupons"))
    # The test runner's own transaction is not the library's: writes go through.
    stripe_api.call("customers", "update", customer.stripe_customer_id, params={"description": "ok"})
    assert [c.method for c in fake_stripe.proxy.calls()] == ["GET", "GET", "POST"]


def test_in_production_mode_it_logs_an_error_and_lets_the_write_go(fake_stripe, customer, settings, caplog):
    settings.STRIPE_TRANSACTION_GUARD = "log"
    fake_stripe.proxy.reset()
    with caplog.at_level(logging.ERROR, logger="aa_stripe"), library_atomic():
        stripe_api.call("customers", "update", customer.stripe_customer_id, params={"description": "x"})
    assert "inside one of its own transactions" in caplog.text
    assert len(fake_stripe.proxy.calls("POST")) == 1


def test_the_default_raises_in_debug_only(settings, fake_stripe, customer, caplog):
    settings.STRIPE_TRANSACTION_GUARD = None
    settings.DEBUG = True
    with pytest.raises(StripeWriteInTransaction), library_atomic():
        stripe_api.call("customers", "update", customer.stripe_customer_id, params={"description": "x"})
    settings.DEBUG = False
    with caplog.at_level(logging.ERROR, logger="aa_stripe"), library_atomic():
        stripe_api.call("customers", "update", customer.stripe_customer_id, params={"description": "y"})
    assert "inside one of its own transactions" in caplog.text
