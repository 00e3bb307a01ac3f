"""Regressions found by an independent review of the journal, each a scenario that once went wrong."""

from __future__ import annotations

import importlib
from datetime import timedelta
from io import StringIO
from types import SimpleNamespace

import pytest
import time_machine
from django.apps import apps as django_apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeInternalError, StripeInvalidRequestError
from aa_stripe.guard import in_library_transaction, library_atomic
from aa_stripe.models import StripeCharge, StripeOperation, StripeRequestKey
from aa_stripe.signals import stripe_charge_succeeded
from tests.conftest import make_customer
from tests.graphql_helpers import gql, signed_in, staff

pytestmark = pytest.mark.django_db

CHARGE = """mutation($input: CreateStripeChargeInput!) {
  createStripeCharge(input: $input) { charge { id isCharged } errors { field code } }
}"""


def pay(client, user, key: str) -> dict:
    variables = {
        "input": {"user": str(user.pk), "amount": 1000, "description": "Order", "idempotencyKey": key}
    }
    return gql(client, CHARGE, variables)


def charge_posts(fake_stripe) -> list:
    return fake_stripe.proxy.calls("POST", "/v1/charges")


def test_a_dashboard_refund_of_the_same_amount_is_never_taken_for_ours(fake_stripe, charged):
    dashboard = stripe_api.call(
        "refunds", "create", params={"charge": charged.stripe_charge_id, "amount": 300}
    )
    StripeCharge.objects.filter(pk=charged.pk).update(amount_refunded=300)  # the webhook's total
    charged.refresh_from_db()
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/refunds", status=503)
    with pytest.raises(StripeInternalError):
        charged.refund(300)

    made = charged.refund(300)  # looked up (5xx), not found, sent: a refund of its own

    assert made["id"] != dashboard["id"]
    charged.refresh_from_db()
    at_stripe = fake_stripe.get("/v1/refunds", charge=charged.stripe_charge_id, limit=100)["data"]
    assert charged.amount_refunded == 600 == sum(refund["amount"] for refund in at_stripe)


def test_a_refused_refund_can_be_asked_again_for_the_same_amount(fake_stripe, charged):
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/refunds", status=400)
    with pytest.raises(StripeInvalidRequestError):
        charged.refund(300)

    charged.refund(300)

    charged.refresh_from_db()
    assert charged.amount_refunded == 300
    keys = sorted(StripeOperation.objects.filter(kind="refund").values_list("key", "state"))
    assert [state for _key, state in keys] == ["refused", "succeeded"] and keys[0][0] != keys[1][0]


def test_an_upgraded_charge_without_a_customer_never_adopts_someone_elses_charge(
    fake_stripe, user, other_user
):
    other = make_customer(fake_stripe, other_user)
    charge = StripeCharge.objects.create(user=user, amount=1000, description="x")
    StripeCharge.objects.filter(pk=charge.pk).update(attempt_started_at=timezone.now() - timedelta(hours=2))
    stripe_api.call(
        "charges", "create", params={"amount": 777, "currency": "usd", "customer": other.stripe_customer_id}
    )
    importlib.import_module(
        "aa_stripe.migrations.0034_in_flight_state_to_operations"
    ).in_flight_to_operations(django_apps, SimpleNamespace(connection=connection))

    with pytest.raises(CommandError, match="1 still unresolved"):  # the user has no customer to charge
        call_command("reconcile_stripe_operations", stdout=StringIO(), stderr=StringIO())

    charge.refresh_from_db()
    assert not charge.is_charged and charge.stripe_charge_id == ""
    assert StripeOperation.objects.get(kind="charge").state == StripeOperation.UNKNOWN


def test_a_failing_receiver_after_a_keyed_charge_never_lets_the_key_charge_again(fake_stripe, customer, user):
    client = signed_in(staff("cashier", "add_stripecharge", "view_stripecharge"))

    def receiver_down(sender, instance, **kwargs):
        raise RuntimeError("mail server down")

    stripe_charge_succeeded.connect(receiver_down, weak=False)
    try:
        first = pay(client, user, "order-X")
        second = pay(client, user, "order-X")
    finally:
        stripe_charge_succeeded.disconnect(receiver_down)

    assert first["errors"][0]["extensions"]["code"] == "INTERNAL_ERROR"
    assert second["errors"][0]["extensions"]["code"] == "INTERNAL_ERROR"  # the first answer, kept
    assert len(charge_posts(fake_stripe)) == 1 and StripeCharge.objects.filter(is_charged=True).count() == 1


def test_a_key_whose_first_call_died_after_acting_never_acts_again(
    fake_stripe, customer, user, settings, monkeypatch
):
    settings.STRIPE_GRAPHQL_IDEMPOTENCY_WAIT = 0.1
    client = signed_in(staff("cashier", "add_stripecharge", "view_stripecharge"))

    def killed(self, response):
        raise KeyboardInterrupt  # stands for SIGKILL after Stripe acted, before the answer is kept

    monkeypatch.setattr(StripeRequestKey, "finish", killed)
    with pytest.raises(KeyboardInterrupt):
        pay(client, user, "order-K")
    monkeypatch.undo()

    with time_machine.travel(timezone.now() + timedelta(hours=1)):
        second = pay(client, user, "order-K")["data"]["createStripeCharge"]

    assert [error["code"] for error in second["errors"]] == ["IN_PROGRESS"]
    assert len(charge_posts(fake_stripe)) == 1


def test_a_declined_charge_whose_flag_was_reset_by_hand_is_retried_under_a_new_key(fake_stripe, user):
    make_customer(fake_stripe, user, "4000000000000341")  # attaches, then declines charges
    charge = StripeCharge.objects.create(user=user, amount=1000, description="x")
    assert charge.charge() is None
    StripeCharge.objects.filter(pk=charge.pk).update(charge_attempt_failed=False)  # as aa-stripe users did

    out = StringIO()
    call_command("charge_stripe", stdout=out, stderr=StringIO())

    assert "0 charged, 1 declined" in out.getvalue()  # sent again and declined, not stuck on a key
    first, retry = charge_posts(fake_stripe)
    assert retry.idempotency_key.startswith(first.idempotency_key + ":") and not retry.replayed


@pytest.mark.django_db(transaction=True)
def test_on_commit_callbacks_of_a_library_transaction_run_outside_its_mark():
    """Signals sent after commit may write to Stripe (a receiver refunding): not inside the mark.
    (A real commit: the library's transaction is the outermost one here.)"""
    seen = []
    with library_atomic():
        transaction.on_commit(lambda: seen.append(in_library_transaction()))
    assert seen == [False]


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
