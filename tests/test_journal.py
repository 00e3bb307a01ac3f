"""The operations journal for charges and refunds, through charge(), refund() and the commands.

Each test names the hole it closes (the review that found them tried the library as a crashing
worker and an unreliable network would). The fake Stripe's fault proxy plays Stripe's documented
behaviour: a lost answer after Stripe acted (``drop_after``), a 5xx stored and replayed for the same
key (``status_after``), keys forgotten after 24 hours (``forget_keys``). Killed OS workers are in
``tests/test_journal_processes.py`` (PostgreSQL).
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from types import SimpleNamespace

import django
import pytest
import time_machine
from django.apps import apps as django_apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    StripeInternalError,
    StripeInvalidRequestError,
    StripeMethodNotAllowed,
    StripeOperationInProgress,
)
from aa_stripe.models import StripeCharge, StripeOperation, StripeRefund
from aa_stripe.operations import journal
from aa_stripe.signals import stripe_charge_refunded, stripe_charge_succeeded

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent() -> Iterator[Counter[str]]:
    """How many times each charge signal was sent."""
    counts: Counter[str] = Counter()

    def succeeded(sender, instance, **kwargs):
        counts["succeeded"] += 1

    def refunded(sender, instance, **kwargs):
        counts["refunded"] += 1

    stripe_charge_succeeded.connect(succeeded, weak=False)
    stripe_charge_refunded.connect(refunded, weak=False)
    yield counts
    stripe_charge_succeeded.disconnect(succeeded)
    stripe_charge_refunded.disconnect(refunded)


def charges_at_fake(fake_stripe, customer) -> list[dict]:
    return fake_stripe.get("/v1/charges", customer=customer.stripe_customer_id, limit=100)["data"]


def refunds_at_fake(fake_stripe, charge) -> list[dict]:
    return fake_stripe.get("/v1/refunds", charge=charge.stripe_charge_id, limit=100)["data"]


def reconcile() -> str:
    out = StringIO()
    call_command("reconcile_stripe_operations", stdout=out, stderr=out)
    return out.getvalue()


def lost_charge(fake_stripe, user, **fields) -> StripeCharge:
    """A charge Stripe made whose answer never arrived."""
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Order #9", **fields)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")
    with pytest.raises(StripeInternalError):
        charge.charge()
    return charge


# --- the plan is durable before Stripe is called --------------------------------------------------


def test_the_attempt_and_its_frozen_request_are_committed_before_stripe_is_called(
    fake_stripe, customer, user
):
    """Hole 3: the trace of an attempt was written in the same transaction as the call."""
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Order #1")
    seen = {}

    def at_send(service, method, *ids, params=None, idempotency_key=None):
        # What another process would find while the request is on its way.
        [operation] = StripeOperation.objects.filter(kind="charge", object_id=str(charge.pk))
        seen.update(state=operation.state, key=operation.key, params=operation.params)
        return original(service, method, *ids, params=params, idempotency_key=idempotency_key)

    original = journal.stripe_api.call
    journal.stripe_api.call = at_send  # observes only: the request still goes to the fake
    try:
        charge.charge()
    finally:
        journal.stripe_api.call = original

    operation = StripeOperation.objects.get(kind="charge", object_id=str(charge.pk))
    assert seen["state"] == StripeOperation.SENDING and seen["key"] == f"charge:{charge.uuid}:1"
    assert seen["params"]["metadata"]["operation"] == str(operation.uuid)
    assert operation.state == StripeOperation.SUCCEEDED and operation.stripe_id == charge.stripe_charge_id
    [made] = charges_at_fake(fake_stripe, customer)
    assert made["metadata"]["operation"] == str(operation.uuid)


# --- retries send exactly what the first attempt sent ----------------------------------------------


def test_a_retry_sends_the_frozen_request_even_when_the_state_moved_on(
    fake_stripe, customer, user, settings, sent
):
    """Hole 2: retries rebuilt their parameters (origin, payment uuid, customer) and Stripe
    answered an idempotency error: the charge was stuck."""
    settings.PAYMENT_ORIGIN = "web"
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Order #2")
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")
    with pytest.raises(StripeInternalError):
        charge.charge(payment_uuid="pay-1")
    settings.PAYMENT_ORIGIN = "cron"  # the settings changed, the retry knows no payment uuid

    charge.charge()

    first, retry = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert retry.params == first.params and retry.idempotency_key == first.idempotency_key
    assert retry.replayed and first.params["metadata[origin]"] == "web"
    charge.refresh_from_db()
    assert charge.is_charged and len(charges_at_fake(fake_stripe, customer)) == 1
    assert sent["succeeded"] == 1


# --- a 5xx that Stripe replays ------------------------------------------------------------------------


def test_a_5xx_after_stripe_acted_is_looked_up_not_replayed_forever(fake_stripe, customer, user, sent):
    """Hole 5: Stripe stores a 5xx for the key and replays it; re-sending alone never succeeds."""
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Order #5")
    fake_stripe.proxy.inject("status_after", method="POST", path_prefix="/v1/charges", status=500)
    with pytest.raises(StripeInternalError):
        charge.charge()
    operation = StripeOperation.objects.get(kind="charge", object_id=str(charge.pk))
    assert operation.state == StripeOperation.UNKNOWN and operation.needs_lookup

    assert "1 succeeded, 0 refused, 0 still unresolved" in reconcile()

    charge.refresh_from_db()
    [made] = charges_at_fake(fake_stripe, customer)
    assert charge.is_charged and charge.stripe_charge_id == made["id"]
    assert len(fake_stripe.proxy.calls("POST", "/v1/charges")) == 1  # found, not sent again
    assert sent["succeeded"] == 1


def test_a_5xx_before_stripe_acted_is_sent_again_under_a_new_key(fake_stripe, customer, user):
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Order #6")
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/charges", status=503)
    with pytest.raises(StripeInternalError):
        charge.charge()

    charge.charge()

    charge.refresh_from_db()
    first, second = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert second.idempotency_key == f"{first.idempotency_key}~2"
    assert charge.is_charged and len(charges_at_fake(fake_stripe, customer)) == 1
    operation = StripeOperation.objects.get(kind="charge", object_id=str(charge.pk))
    assert (operation.key, operation.state) == (second.idempotency_key, StripeOperation.SUCCEEDED)


# --- Stripe's 24-hour key lifetime --------------------------------------------------------------------


def test_after_25_hours_a_lost_charge_is_found_not_charged_again(fake_stripe, customer, user, sent):
    charge = lost_charge(fake_stripe, user)
    fake_stripe.proxy.forget_keys()  # Stripe keeps keys 24 hours

    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        charge.charge()

    charge.refresh_from_db()
    assert charge.is_charged and len(charges_at_fake(fake_stripe, customer)) == 1
    assert len(fake_stripe.proxy.calls("POST", "/v1/charges")) == 1
    assert sent["succeeded"] == 1


def test_after_25_hours_a_lost_refund_is_found_not_refunded_again(fake_stripe, charged, sent):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/refunds")
    with pytest.raises(StripeInternalError):
        charged.refund(400)
    fake_stripe.proxy.forget_keys()

    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        assert "1 succeeded" in reconcile()

    charged.refresh_from_db()
    [at_stripe] = refunds_at_fake(fake_stripe, charged)
    assert (charged.amount_refunded, charged.pending_refund_amount) == (400, None)
    assert list(charged.refunds.values_list("stripe_refund_id", flat=True)) == [at_stripe["id"]]
    assert len(fake_stripe.proxy.calls("POST", "/v1/refunds")) == 1 and sent["refunded"] == 1


# --- a refund whose retry Stripe refuses ---------------------------------------------------------------


def test_a_lost_refund_whose_retry_stripe_refuses_releases_the_charge(fake_stripe, charged, sent):
    """Hole 1: only StripeInternalError was handled; a refused retry left pending_refund_amount
    set forever, and webhooks ignore refunds while it is set: never refundable again."""
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/refunds")
    with pytest.raises(StripeInternalError):
        charged.refund(600)
    fake_stripe.proxy.forget_keys()  # the retry is executed afresh, and Stripe refuses it

    with pytest.raises(StripeInvalidRequestError):
        charged.refund(600)

    charged.refresh_from_db()
    [made] = refunds_at_fake(fake_stripe, charged)
    assert charged.pending_refund_amount is None
    assert charged.amount_refunded == 600 == made["amount"]  # Stripe's amount, read after the refusal
    refused = charged.refunds.get(stripe_refund_id=None)
    assert refused.amount == 600 and refused.failure_code
    assert charged.refunds.get(stripe_refund_id=made["id"]).amount == 600
    operation = StripeOperation.objects.get(kind="refund", object_id=str(charged.pk))
    assert operation.state == StripeOperation.REFUSED and operation.error_code == refused.failure_code

    charged.refund()  # the remainder

    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.is_refunded) == (1000, True)
    assert sum(r["amount"] for r in refunds_at_fake(fake_stripe, charged)) == 1000
    assert sent["refunded"] == 2


def test_a_refund_in_flight_is_replayed_and_a_different_amount_is_refused(fake_stripe, charged):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/refunds")
    with pytest.raises(StripeInternalError):
        charged.refund(300)

    with pytest.raises(StripeMethodNotAllowed, match="retry refund\\(300\\) first"):
        charged.refund(200)
    charged.refund(300)

    charged.refresh_from_db()
    assert charged.amount_refunded == 300 and len(refunds_at_fake(fake_stripe, charged)) == 1


# --- in progress elsewhere -----------------------------------------------------------------------------


def test_a_second_caller_while_an_operation_is_in_flight_sends_nothing(fake_stripe, customer, user):
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Order #7")
    operation = journal.plan(
        charge, kind="charge", service="charges", method="create", params={}, key=charge.idempotency_key
    )
    StripeCharge.objects.filter(pk=charge.pk).update(attempt_started_at=timezone.now())
    journal.claim(operation)  # another worker holds it, its lease running

    with pytest.raises(StripeOperationInProgress) as raised:
        StripeCharge.objects.get(pk=charge.pk).charge()

    assert isinstance(raised.value, StripeMethodNotAllowed)  # hosts' except clauses still catch it
    assert fake_stripe.proxy.calls("POST", "/v1/charges") == []
    out = StringIO()
    call_command("charge_stripe", stdout=out)  # leaves the row to the worker sending it
    assert "charge_stripe: 0 charged, 0 declined, 0 left for retry, 0 errors" in out.getvalue()
    assert fake_stripe.proxy.calls("POST", "/v1/charges") == []


def test_a_worker_whose_lease_ran_out_is_taken_over(fake_stripe, customer, user, sent):
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Order #8")
    fake_stripe.proxy.inject("drop_before", method="POST", path_prefix="/v1/charges")
    with pytest.raises(StripeInternalError):
        charge.charge()
    # As a killed worker leaves it: sending, its lease not run out yet.
    StripeOperation.objects.filter(kind="charge", object_id=str(charge.pk)).update(
        state=StripeOperation.SENDING, lease_until=timezone.now() + timedelta(seconds=60)
    )
    assert "0 succeeded, 0 refused, 0 still unresolved, 0 in progress" in reconcile()

    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        assert "1 succeeded" in reconcile()

    charge.refresh_from_db()
    assert charge.is_charged and len(charges_at_fake(fake_stripe, customer)) == 1
    assert sent["succeeded"] == 1


# --- reconcile_stripe_operations -----------------------------------------------------------------------


def test_reconcile_finishes_a_lost_charge_once_and_a_second_run_does_nothing(
    fake_stripe, customer, user, sent
):
    charge = lost_charge(fake_stripe, user)

    out = StringIO()
    call_command("reconcile_stripe_operations", "--dry-run", stdout=out)
    assert "would finish operation #" in out.getvalue() and f"charge:{charge.uuid}:1" in out.getvalue()
    assert "1 succeeded, 0 refused, 0 still unresolved" in reconcile()
    assert "0 succeeded, 0 refused, 0 still unresolved" in reconcile()

    charge.refresh_from_db()
    assert charge.is_charged and sent["succeeded"] == 1
    assert len(charges_at_fake(fake_stripe, customer)) == 1
    with pytest.raises(StripeMethodNotAllowed, match="Already charged"):
        charge.charge()


def test_reconcile_exits_non_zero_while_stripe_is_down_and_alerts_after_the_threshold(
    fake_stripe, customer, user, settings, mailoutbox
):
    # Django 6 takes plain addresses (tuples are deprecated), older versions (name, address).
    settings.ADMINS = ["ops@example.com"] if django.VERSION >= (6,) else [("Ops", "ops@example.com")]
    settings.STRIPE_OPERATIONS_ALERT_AFTER = 3600
    charge = lost_charge(fake_stripe, user)
    fake_stripe.proxy.inject("status", status=503, times=100)

    with pytest.raises(CommandError, match="0 succeeded, 0 refused, 1 still unresolved"):
        reconcile()
    assert mailoutbox == []  # not unresolved for long yet

    with time_machine.travel(timezone.now() + timedelta(hours=2)), pytest.raises(CommandError):
        reconcile()

    [mail] = mailoutbox
    assert "1 Stripe operations unresolved" in mail.subject and f"charge:{charge.uuid}:1" in mail.body
    fake_stripe.proxy.reset()
    assert "1 succeeded" in reconcile()
    charge.refresh_from_db()
    assert charge.is_charged and len(charges_at_fake(fake_stripe, customer)) == 1


def test_a_declined_charge_found_by_lookup_is_recorded_as_declined(fake_stripe, user):
    from tests.conftest import make_customer

    make_customer(fake_stripe, user, "4000000000000341")  # attaches, then declines charges
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Order #10")
    fake_stripe.proxy.inject("status_after", method="POST", path_prefix="/v1/charges", status=502)
    with pytest.raises(StripeInternalError):
        charge.charge()

    assert "0 succeeded, 1 refused" in reconcile()

    charge.refresh_from_db()
    assert (
        charge.charge_attempt_failed and not charge.is_charged and charge.stripe_charge_id.startswith("ch_")
    )
    assert len(fake_stripe.proxy.calls("POST", "/v1/charges")) == 1
    assert StripeRefund.objects.count() == 0


# --- upgrading with something in flight (migration 0034) ----------------------------------------------

in_flight_migration = importlib.import_module("aa_stripe.migrations.0034_in_flight_state_to_operations")


def run_migration_0034() -> None:
    in_flight_migration.in_flight_to_operations(django_apps, SimpleNamespace(connection=connection))


def test_an_upgraded_charge_whose_answer_was_lost_is_looked_up_before_anything_is_sent(
    fake_stripe, customer, user, sent
):
    """As an older version left it: Stripe made the charge (its metadata names the row's uuid and
    attempt, no operation), the answer never came, attempt_started_at says so."""
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Order #11", customer=customer)
    made = stripe_api.call(
        "charges",
        "create",
        params={
            "amount": 1000,
            "currency": "usd",
            "customer": customer.stripe_customer_id,
            "metadata": {"charge_uuid": str(charge.uuid), "attempt": "1"},
        },
        idempotency_key=charge.idempotency_key,
    )
    StripeCharge.objects.filter(pk=charge.pk).update(attempt_started_at=timezone.now() - timedelta(hours=2))

    run_migration_0034()

    operation = StripeOperation.objects.get(kind="charge", object_id=str(charge.pk))
    assert (operation.state, operation.needs_lookup, operation.key) == (
        "unknown",
        True,
        charge.idempotency_key,
    )
    charge.refresh_from_db()
    charge.charge()
    charge.refresh_from_db()
    assert charge.is_charged and charge.stripe_charge_id == made["id"]
    assert len(fake_stripe.proxy.calls("POST", "/v1/charges")) == 1  # only the older version's
    assert sent["succeeded"] == 1


def test_an_upgraded_unconfirmed_refund_is_looked_up_and_never_refunded_twice(fake_stripe, charged, sent):
    made = stripe_api.call(
        "refunds",
        "create",
        params={
            "charge": charged.stripe_charge_id,
            "amount": 300,
            "metadata": {"charge_uuid": str(charged.uuid)},
        },
    )
    StripeCharge.objects.filter(pk=charged.pk).update(pending_refund_amount=300)

    run_migration_0034()
    charged.refresh_from_db()
    with pytest.raises(StripeMethodNotAllowed, match="retry refund\\(300\\) first"):
        charged.refund(500)
    charged.refund(300)

    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.pending_refund_amount) == (300, None)
    assert list(charged.refunds.values_list("stripe_refund_id", flat=True)) == [made["id"]]
    assert len(fake_stripe.proxy.calls("POST", "/v1/refunds")) == 1 and sent["refunded"] == 1


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
