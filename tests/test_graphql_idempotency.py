"""``idempotencyKey`` on the mutations (GRAPHQL.md, "Idempotent mutations"), over HTTP.

The same key from the same user for the same mutation replays the first payload; another input
with the key is IDEMPOTENCY_KEY_REUSED; a call while the first runs waits, then replays or answers
IN_PROGRESS. The PostgreSQL test sends one key from 8 threads at once, each with its own
connection and session.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from django.test import Client
from graphql_relay import to_global_id

from aa_stripe.models import StripeCharge, StripeOperation, StripeRequestKey
from aa_stripe.operations import journal
from tests.conftest import make_customer
from tests.graphql_helpers import codes, gql, signed_in, staff

CHARGE = """
mutation($input: CreateStripeChargeInput!) {
  createStripeCharge(input: $input) {
    charge { id amount isCharged stripeChargeId }
    errors { field code message }
  }
}
"""
REFUND = """
mutation($input: RefundStripeChargeInput!) {
  refundStripeCharge(input: $input) { charge { id amountRefunded } errors { field code message } }
}
"""


def cashier(name: str = "cashier") -> Client:
    return signed_in(staff(name, "add_stripecharge", "change_stripecharge", "view_stripecharge"))


def charge_input(user, key: str | None, amount: int = 1000) -> dict:
    data = {"user": str(user.pk), "amount": amount, "description": "Order #1"}
    if key is not None:
        data["idempotencyKey"] = key
    return {"input": data}


def pay(client: Client, user, key: str | None, amount: int = 1000) -> dict:
    return gql(client, CHARGE, charge_input(user, key, amount))["data"]["createStripeCharge"]


def charge_posts(fake_stripe) -> list:
    return fake_stripe.proxy.calls("POST", "/v1/charges")


@pytest.mark.django_db
def test_a_double_submitted_charge_with_one_key_charges_once_and_replays_the_payload(
    fake_stripe, customer, user
):
    client = cashier()

    first = pay(client, user, "order-1-pay")
    second = pay(client, user, "order-1-pay")

    assert first["errors"] == [] and first["charge"]["isCharged"]
    assert second == first
    assert len(charge_posts(fake_stripe)) == 1 and StripeCharge.objects.count() == 1


@pytest.mark.django_db
def test_the_same_key_with_another_input_is_refused(fake_stripe, customer, user):
    client = cashier()
    pay(client, user, "order-2-pay")

    payload = pay(client, user, "order-2-pay", amount=2000)

    assert codes(payload) == [("idempotencyKey", "IDEMPOTENCY_KEY_REUSED")] and payload["charge"] is None
    assert len(charge_posts(fake_stripe)) == 1 and StripeCharge.objects.count() == 1


@pytest.mark.django_db
def test_another_users_key_never_replays_to_someone_else(fake_stripe, customer, user):
    mine = pay(cashier("cashier_a"), user, "shared-key")
    theirs = pay(cashier("cashier_b"), user, "shared-key")

    assert mine["charge"]["id"] != theirs["charge"]["id"]
    assert len(charge_posts(fake_stripe)) == 2


@pytest.mark.django_db
def test_without_a_key_nothing_changes(fake_stripe, customer, user):
    client = cashier()
    pay(client, user, None)
    pay(client, user, None)
    assert len(charge_posts(fake_stripe)) == 2 and not StripeRequestKey.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
def test_a_key_that_is_not_1_to_255_printable_characters_is_invalid(fake_stripe, customer, user, key):
    payload = pay(cashier(), user, key)
    assert codes(payload) == [("idempotencyKey", "INVALID")] and not StripeCharge.objects.exists()


@pytest.mark.django_db
def test_a_call_while_the_first_runs_waits_then_answers_in_progress(fake_stripe, customer, user, settings):
    settings.STRIPE_GRAPHQL_IDEMPOTENCY_WAIT = 0.2
    client = cashier()
    first = pay(client, user, "slow-key")
    # As if the first call were still running elsewhere: claimed, not answered yet.
    StripeRequestKey.objects.filter(key="slow-key").update(state=StripeRequestKey.RUNNING)

    payload = pay(client, user, "slow-key")

    assert codes(payload) == [("idempotencyKey", "IN_PROGRESS")] and payload["charge"] is None
    StripeRequestKey.objects.filter(key="slow-key").update(state=StripeRequestKey.DONE)
    assert pay(client, user, "slow-key") == first  # answered once the first call is done
    assert len(charge_posts(fake_stripe)) == 1


@pytest.mark.django_db
def test_a_first_call_refused_before_acting_gives_the_key_back(fake_stripe, customer, user):
    nobody = signed_in(staff("nobody"))  # signed in, no permission: PERMISSION_DENIED
    body = gql(nobody, CHARGE, charge_input(user, "retry-me"))
    assert body["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"
    assert not StripeRequestKey.objects.exists()


@pytest.mark.django_db
def test_a_refund_with_one_key_sent_twice_refunds_once(fake_stripe, charged):
    client = cashier()
    variables = {
        "input": {"charge": to_global_id("StripeCharge", charged.pk), "amount": 300, "idempotencyKey": "r1"}
    }

    first = gql(client, REFUND, variables)["data"]["refundStripeCharge"]
    second = gql(client, REFUND, variables)["data"]["refundStripeCharge"]

    assert first == second and first["charge"]["amountRefunded"] == 300
    assert len(fake_stripe.proxy.calls("POST", "/v1/refunds")) == 1


@pytest.mark.django_db
def test_a_refund_while_another_refund_of_the_charge_is_in_flight_is_in_progress(fake_stripe, charged):
    operation = journal.plan(
        charged,
        kind="refund",
        service="refunds",
        method="create",
        params={},
        key=f"refund:{charged.uuid}:0:500",
    )
    StripeCharge.objects.filter(pk=charged.pk).update(pending_refund_amount=500)
    journal.claim(operation)  # another worker is sending it right now

    payload = gql(
        cashier(), REFUND, {"input": {"charge": to_global_id("StripeCharge", charged.pk), "amount": 500}}
    )["data"]["refundStripeCharge"]

    assert [error["code"] for error in payload["errors"]] == ["IN_PROGRESS"]
    assert fake_stripe.proxy.calls("POST", "/v1/refunds") == []
    assert StripeOperation.objects.get(pk=operation.pk).state == StripeOperation.SENDING


# --- PostgreSQL: one key from 8 threads at once --------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent connections need PostgreSQL")
def test_eight_threads_sending_one_key_at_once_charge_once_with_eight_identical_payloads(fake_stripe, user):
    make_customer(fake_stripe, user)
    staff("cashier", "add_stripecharge", "change_stripecharge", "view_stripecharge")
    fake_stripe.proxy.reset()
    start = threading.Barrier(8)

    def send(_: int) -> dict:
        try:
            client = Client()
            client.login(username="cashier", password="pw")  # a session of its own
            start.wait(timeout=30)
            return pay(client, user, "one-key")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(8) as pool:
        payloads = list(pool.map(send, range(8)))

    assert all(payload == payloads[0] for payload in payloads), payloads
    assert payloads[0]["errors"] == [] and payloads[0]["charge"]["isCharged"]
    assert len(charge_posts(fake_stripe)) == 1 and StripeCharge.objects.count() == 1
    other = pay(signed_in_again("cashier"), user, "one-key", amount=1500)
    assert codes(other) == [("idempotencyKey", "IDEMPOTENCY_KEY_REUSED")]


def signed_in_again(username: str) -> Client:
    client = Client()
    client.login(username=username, password="pw")
    return client


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent connections need PostgreSQL")
def test_eight_threads_refunding_with_one_key_at_once_refund_once(fake_stripe, user):
    make_customer(fake_stripe, user)
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Order #1")
    charge.charge()
    staff("cashier", "add_stripecharge", "change_stripecharge", "view_stripecharge")
    fake_stripe.proxy.reset()
    start = threading.Barrier(8)
    variables = {
        "input": {"charge": to_global_id("StripeCharge", charge.pk), "amount": 300, "idempotencyKey": "k"}
    }

    def send(_: int) -> dict:
        try:
            client = signed_in_again("cashier")
            start.wait(timeout=30)
            return gql(client, REFUND, variables)["data"]["refundStripeCharge"]
        finally:
            connections.close_all()

    with ThreadPoolExecutor(8) as pool:
        payloads = list(pool.map(send, range(8)))

    assert all(payload == payloads[0] for payload in payloads), payloads
    assert payloads[0]["errors"] == [] and payloads[0]["charge"]["amountRefunded"] == 300
    assert len(fake_stripe.proxy.calls("POST", "/v1/refunds")) == 1
    variables["input"]["amount"] = 200
    other = gql(signed_in_again("cashier"), REFUND, variables)["data"]["refundStripeCharge"]
    assert codes(other) == [("idempotencyKey", "IDEMPOTENCY_KEY_REUSED")]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent connections need PostgreSQL")
def test_eight_threads_subscribing_with_one_key_at_once_subscribe_once(fake_stripe, user, plan):
    from aa_stripe.models import StripeSubscription

    make_customer(fake_stripe, user)
    fake_stripe.proxy.reset()
    start = threading.Barrier(8)
    query = (
        "mutation($input: CreateStripeSubscriptionInput!) { createStripeSubscription(input: $input) "
        "{ subscription { id status } errors { field code } } }"
    )
    variables = {
        "input": {"plan": to_global_id("StripeSubscriptionPlan", plan.pk), "idempotencyKey": "sub-1"}
    }

    def send(_: int) -> dict:
        try:
            client = Client()
            client.force_login(user)
            start.wait(timeout=30)
            return gql(client, query, variables)["data"]["createStripeSubscription"]
        finally:
            connections.close_all()

    with ThreadPoolExecutor(8) as pool:
        payloads = list(pool.map(send, range(8)))

    assert all(payload == payloads[0] for payload in payloads), payloads
    assert payloads[0]["errors"] == [] and payloads[0]["subscription"]["status"] == "ACTIVE"
    assert len(fake_stripe.proxy.calls("POST", "/v1/subscriptions")) == 1
    assert StripeSubscription.objects.count() == 1
    variables["input"]["metadata"] = json.dumps({"other": "input"})
    client = Client()
    client.force_login(user)
    other = gql(client, query, variables)["data"]["createStripeSubscription"]
    assert codes(other) == [("idempotencyKey", "IDEMPOTENCY_KEY_REUSED")]


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
