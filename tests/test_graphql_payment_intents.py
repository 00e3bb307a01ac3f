"""Charges that survive Strong Customer Authentication, over GraphQL (issue 20): createStripeCharge when
the bank asks the customer, payStripeCharge and refreshStripeCharge, and StripeCharge's status, refunds
and clientSecret.

Every request is GraphQL over HTTP against the fake Stripe through the real SDK. What stripe.js does in
the browser (confirm the PaymentIntent with its client secret, pass 3-D Secure) is done with direct
requests to the fake (``_post``, as in tests/test_payment_intents.py), never through our server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.apps import apps
from django.core import serializers
from django.test import Client
from graphql_relay import to_global_id

from aa_stripe.models import StripeCharge, StripeCustomer, StripePaymentMethod, StripeRefund
from aa_stripe.signals import (
    stripe_charge_card_exception,
    stripe_charge_requires_action,
    stripe_charge_succeeded,
)
from tests.graphql_helpers import assert_denied, codes, gql, signed_in, staff
from tests.test_payment_intents import _post, attached_card, new_charge, set_up_card

pytestmark = pytest.mark.django_db

PLAIN = "4242424242424242"
ALWAYS_ASKS = "4000002760003184"
ASKS_THEN_DECLINES = "4000008260003178"  # insufficient funds after authentication

REFUNDS = "refunds { stripeRefundId amount status failureCode created }"
CHARGE = (
    "id status isCharged chargeAttemptFailed stripeChargeId paymentIntentId paymentMethod failureCode "
    f"declineCode clientSecret amountRefunded {REFUNDS}"
)
ERRORS = "errors { field code message declineCode } clientMutationId"
CREATE = f"""
mutation($input: CreateStripeChargeInput!) {{
  createStripeCharge(input: $input) {{ charge {{ {CHARGE} }} {ERRORS} }}
}}
"""
PAY = f"""
mutation($input: PayStripeChargeInput!) {{
  payStripeCharge(input: $input) {{ charge {{ {CHARGE} }} {ERRORS} }}
}}
"""
REFRESH = f"""
mutation($input: RefreshStripeChargeInput!) {{
  refreshStripeCharge(input: $input) {{ charge {{ {CHARGE} }} {ERRORS} }}
}}
"""
REFUND = f"""
mutation($input: RefundStripeChargeInput!) {{
  refundStripeCharge(input: $input) {{ charge {{ {CHARGE} }} {ERRORS} }}
}}
"""


@pytest.fixture
def sent() -> Iterator[dict[str, int]]:
    """How often each charge signal was sent."""
    counts = {"succeeded": 0, "declined": 0, "requires_action": 0}
    receivers = {}
    for signal, name in (
        (stripe_charge_succeeded, "succeeded"),
        (stripe_charge_card_exception, "declined"),
        (stripe_charge_requires_action, "requires_action"),
    ):

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            counts[_name] += 1

        signal.connect(receiver, weak=False)
        receivers[signal] = receiver
    yield counts
    for signal, receiver in receivers.items():
        signal.disconnect(receiver)


@pytest.fixture
def cashier() -> Client:
    return signed_in(staff("cashier", "add_stripecharge", "view_stripecharge", "view_stripecustomer"))


# --- the requests ---------------------------------------------------------------------------------


def _gid(charge: Any) -> str:
    return charge if isinstance(charge, str) else to_global_id("StripeCharge", charge.pk)


def create(client: Client, user: Any, **extra: Any) -> dict[str, Any]:
    variables = {"input": {"user": str(user.pk), "amount": 1500, "description": "Order #7", **extra}}
    return gql(client, CREATE, variables)["data"]["createStripeCharge"]


def pay(client: Client, charge: Any, **extra: Any) -> dict[str, Any]:
    return gql(client, PAY, {"input": {"charge": _gid(charge), **extra}})["data"]["payStripeCharge"]


def refresh(client: Client, charge: Any, **extra: Any) -> dict[str, Any]:
    return gql(client, REFRESH, {"input": {"charge": _gid(charge), **extra}})["data"]["refreshStripeCharge"]


def paid(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload's charge, checked for no errors."""
    assert payload["errors"] == [], payload
    return payload["charge"]


# --- the world ------------------------------------------------------------------------------------


def customer_with_card(fake_stripe: Any, user: Any, number: str) -> str:
    """A customer for the user whose default card is ``number`` (attached, as the dashboard would);
    the card's payment method id."""
    return attached_card(fake_stripe, StripeCustomer.get_or_create_for_user(user), number)


def waiting_charge(fake_stripe: Any, user: Any, number: str = ALWAYS_ASKS) -> StripeCharge:
    """A charge of ``user`` sent off-session that waits for the customer (Stripe's 402
    authentication_required)."""
    if not StripeCustomer.objects.filter(user=user).exists():
        customer_with_card(fake_stripe, user, number)
    charge = new_charge(user)
    assert charge.charge() is None
    charge.refresh_from_db()
    assert charge.status == StripeCharge.REQUIRES_PAYMENT_METHOD, charge.status
    return charge


def browser_confirms(fake_stripe: Any, charge: dict[str, Any], success: bool = True) -> dict[str, Any]:
    """stripe.js: confirmCardPayment(clientSecret, {payment_method}) and the 3-D Secure dialog passed
    (or failed); returns the intent as the browser last saw it."""
    intent_id, secret = charge["paymentIntentId"], charge["clientSecret"]
    confirmed = _post(
        fake_stripe,
        f"/v1/payment_intents/{intent_id}/confirm",
        {"payment_method": charge["paymentMethod"], "client_secret": secret},
    )
    assert confirmed.ok and confirmed.json()["status"] == "requires_action", confirmed.text
    passed = _post(
        fake_stripe,
        f"/v1/payment_intents/{intent_id}/_authenticate",
        {"client_secret": secret, "success": "true" if success else "false"},
    )
    if passed.status_code == 402:  # the bank declined after authentication: stripe.js shows the error
        return passed.json()["error"]["payment_intent"]
    assert passed.ok, passed.text
    return passed.json()


def server_confirmations(fake_stripe: Any) -> list[Any]:
    return [call for call in fake_stripe.proxy.calls("POST") if call.path.endswith("/confirm")]


def creations(fake_stripe: Any) -> list[Any]:
    return [call for call in fake_stripe.proxy.calls("POST") if call.path == "/v1/payment_intents"]


def rows() -> dict[str, list[dict[str, Any]]]:
    """The charges and payment methods, as plain values (for "nothing changed")."""
    return {
        model.__name__: list(model.objects.order_by("pk").values())
        for model in (StripeCharge, StripePaymentMethod, StripeRefund)
    }


# --- 1. staff charge a card that asks for authentication ------------------------------------------


def test_a_card_that_asks_returns_the_charge_with_authentication_required(fake_stripe, user, cashier, sent):
    method = customer_with_card(fake_stripe, user, ALWAYS_ASKS)
    fake_stripe.proxy.reset()

    payload = create(cashier, user, clientMutationId="c-1")

    assert codes(payload) == [(None, "AUTHENTICATION_REQUIRED")]
    [error] = payload["errors"]
    assert "authenticate" in error["message"] and error["declineCode"] is None
    assert payload["clientMutationId"] == "c-1"
    row = StripeCharge.objects.get()
    charge = payload["charge"]
    assert charge["id"] == _gid(row)
    assert (charge["status"], charge["failureCode"], charge["declineCode"]) == (
        "REQUIRES_PAYMENT_METHOD",
        "authentication_required",
        "authentication_required",  # as Stripe says it off-session
    )
    assert (charge["isCharged"], charge["chargeAttemptFailed"], charge["stripeChargeId"]) == (
        False,
        False,
        None,
    )
    assert charge["paymentIntentId"] == row.payment_intent_id and row.payment_intent_id.startswith("pi_")
    assert charge["paymentMethod"] == method == row.payment_method
    assert charge["clientSecret"] is None  # staff never get it: Stripe is not even asked
    assert charge["refunds"] == []
    assert [call.path for call in fake_stripe.proxy.calls("GET")] == []
    assert sent == {"succeeded": 0, "declined": 0, "requires_action": 1}
    assert (row.status, row.is_charged, row.charge_attempt_failed) == (
        "requires_payment_method",
        False,
        False,
    )


# --- 2. the owner pays on-session -----------------------------------------------------------------


def test_the_owner_pays_on_session_and_refreshes_the_outcome(fake_stripe, user, sent):
    charge = waiting_charge(fake_stripe, user)
    owner = signed_in(user)

    paying = paid(pay(owner, charge, clientMutationId="pay-1"))

    assert paying["id"] == _gid(charge) and paying["status"] == "REQUIRES_PAYMENT_METHOD"
    assert paying["clientSecret"].startswith(f"{charge.payment_intent_id}_secret_")
    assert paying["paymentMethod"] == charge.payment_method
    assert browser_confirms(fake_stripe, paying)["status"] == "succeeded"

    done = paid(refresh(owner, charge))

    row = StripeCharge.objects.get()
    assert (done["status"], done["isCharged"], done["chargeAttemptFailed"]) == ("SUCCEEDED", True, False)
    assert done["clientSecret"] is None and done["failureCode"] is None
    assert done["stripeChargeId"] == row.stripe_charge_id and row.stripe_charge_id.startswith("ch_")
    assert sent == {"succeeded": 1, "declined": 0, "requires_action": 1}

    again = paid(refresh(owner, charge))  # recorded once

    assert again == done and sent["succeeded"] == 1
    assert codes(pay(owner, charge)) == [("charge", "NOT_ALLOWED")]  # paid: nothing left to pay
    assert server_confirmations(fake_stripe) == [] and len(creations(fake_stripe)) == 1


# --- 3. paying twice at once ----------------------------------------------------------------------


def test_paying_twice_hands_out_one_intent_that_is_confirmed_once(fake_stripe, user, sent):
    charge = waiting_charge(fake_stripe, user)
    tab_1, tab_2 = signed_in(user), signed_in(user)  # two tabs, each with its payment form

    first = paid(pay(tab_1, charge))
    second = paid(pay(tab_2, charge, idempotencyKey="tab-2"))

    assert first["clientSecret"] == second["clientSecret"] and first["clientSecret"]
    assert first["paymentIntentId"] == second["paymentIntentId"] == charge.payment_intent_id
    assert browser_confirms(fake_stripe, first)["status"] == "succeeded"
    late = _post(  # the second tab confirms with the secret both got: Stripe refuses, it succeeded
        fake_stripe,
        f"/v1/payment_intents/{second['paymentIntentId']}/confirm",
        {"payment_method": second["paymentMethod"], "client_secret": second["clientSecret"]},
    )
    assert late.status_code == 400 and late.json()["error"]["code"] == "payment_intent_unexpected_state"

    for tab in (tab_1, tab_2):
        assert paid(refresh(tab, charge))["status"] == "SUCCEEDED"

    assert len(creations(fake_stripe)) == 1  # the off-session attempt only: no second intent
    assert server_confirmations(fake_stripe) == []  # only the browser confirms
    assert len(fake_stripe.get("/v1/payment_intents")["data"]) == 1
    assert sent == {"succeeded": 1, "declined": 0, "requires_action": 1}
    replayed = pay(tab_2, charge, idempotencyKey="tab-2")  # the same key replays, never acts again
    assert replayed["errors"] == [] and replayed["charge"]["status"] == "SUCCEEDED"
    assert replayed["charge"]["clientSecret"] is None


# --- 4. bad input ---------------------------------------------------------------------------------


def test_another_users_charge_or_payment_method_is_not_found(fake_stripe, user, other_user):
    mine = waiting_charge(fake_stripe, user)
    theirs = waiting_charge(fake_stripe, other_user)
    their_method = StripePaymentMethod.objects.get(
        stripe_payment_method_id=set_up_card(fake_stripe, StripeCustomer.objects.get(user=other_user), PLAIN)
    )
    viewer = signed_in(staff("carol", "view_stripecharge", "view_stripecustomer", "change_stripecharge"))
    owner = signed_in(user)
    before = rows()
    fake_stripe.proxy.reset()

    for payload in (
        pay(owner, theirs),
        pay(viewer, mine),  # staff who may see the charge do not pay it
        pay(owner, to_global_id("StripeCharge", 999_999)),
        pay(owner, "nonsense"),
        pay(owner, to_global_id("StripePaymentMethod", their_method.pk)),
        refresh(owner, theirs),
    ):
        assert codes(payload) == [("charge", "NOT_FOUND")] and payload["charge"] is None

    payload = pay(owner, mine, paymentMethod=to_global_id("StripePaymentMethod", their_method.pk))

    assert codes(payload) == [("paymentMethod", "NOT_FOUND")] and payload["charge"] is None
    assert rows() == before and fake_stripe.proxy.calls() == []
    seen = paid(refresh(viewer, mine))  # staff with view_stripecharge may read the outcome
    assert seen["status"] == "REQUIRES_PAYMENT_METHOD" and seen["clientSecret"] is None


def test_a_paid_canceled_or_unsent_charge_cannot_be_paid(fake_stripe, user):
    paid_charge = new_charge(user, is_charged=True, status=StripeCharge.SUCCEEDED, payment_intent_id="pi_1")
    canceled = new_charge(user, status=StripeCharge.CANCELED, payment_intent_id="pi_gone")
    unsent = new_charge(user)
    owner = signed_in(user)
    before = rows()
    fake_stripe.proxy.reset()

    for charge in (paid_charge, canceled, unsent):
        payload = pay(owner, charge)
        assert codes(payload) == [("charge", "NOT_ALLOWED")] and payload["charge"] is None

    assert rows() == before and fake_stripe.proxy.calls() == []


def test_paying_and_refreshing_need_a_signed_in_user(fake_stripe, user):
    charge = waiting_charge(fake_stripe, user)
    anonymous = Client()
    before = rows()
    fake_stripe.proxy.reset()

    for query, name in ((PAY, "payStripeCharge"), (REFRESH, "refreshStripeCharge")):
        for extra in ({}, {"idempotencyKey": "k-1"}):
            body = gql(anonymous, query, {"input": {"charge": _gid(charge), **extra}})
            assert_denied(body, name)
            assert "must be signed in" in body["errors"][0]["message"]

    assert rows() == before and fake_stripe.proxy.calls() == []


# --- 5. the bank declines after authentication ----------------------------------------------------


def test_a_decline_after_authentication_ends_failed_with_the_decline_code(fake_stripe, user, sent):
    charge = waiting_charge(fake_stripe, user, ASKS_THEN_DECLINES)
    owner = signed_in(user)
    paying = paid(pay(owner, charge))

    assert browser_confirms(fake_stripe, paying)["status"] == "requires_payment_method"
    failed = paid(refresh(owner, charge))

    assert (failed["status"], failed["isCharged"], failed["chargeAttemptFailed"]) == ("FAILED", False, True)
    assert failed["declineCode"] == "insufficient_funds" and failed["failureCode"] == "card_declined"
    # the owner may try again on-session (another card): the intent still takes a payment method
    assert failed["clientSecret"] == paying["clientSecret"]
    assert sent == {"succeeded": 0, "declined": 1, "requires_action": 1}
    assert paid(pay(owner, charge))["clientSecret"] == paying["clientSecret"]
    assert len(creations(fake_stripe)) == 1


# --- 6. refunds -----------------------------------------------------------------------------------


def test_a_refund_is_listed_on_its_charge(fake_stripe, user):
    set_up_card(fake_stripe, StripeCustomer.get_or_create_for_user(user), PLAIN)
    cashier = signed_in(staff("cashier", "add_stripecharge", "change_stripecharge", "view_stripecharge"))
    charge = paid(create(cashier, user))
    assert (charge["status"], charge["isCharged"], charge["refunds"]) == ("SUCCEEDED", True, [])

    refunded = gql(cashier, REFUND, {"input": {"charge": charge["id"], "amount": 400}})

    result = paid(refunded["data"]["refundStripeCharge"])
    row = StripeRefund.objects.get()
    assert row.stripe_refund_id.startswith("re_")
    assert [(r["stripeRefundId"], r["amount"], r["status"], r["failureCode"]) for r in result["refunds"]] == [
        (row.stripe_refund_id, 400, "succeeded", None)
    ]
    assert result["amountRefunded"] == 400
    listed = gql(
        signed_in(user),
        "{ stripeCharges { edges { node { id refunds { stripeRefundId amount status } } } } }",
    )
    assert listed["data"]["stripeCharges"]["edges"] == [
        {
            "node": {
                "id": charge["id"],
                "refunds": [{"stripeRefundId": row.stripe_refund_id, "amount": 400, "status": "succeeded"}],
            }
        }
    ]


# --- 7. the client secret is never stored ---------------------------------------------------------


def test_the_client_secret_is_stored_nowhere(fake_stripe, user, cashier):
    customer_with_card(fake_stripe, user, ALWAYS_ASKS)
    waiting = create(cashier, user)["charge"]
    owner = signed_in(user)
    secrets = {
        paid(pay(owner, waiting["id"]))["clientSecret"],
        paid(pay(owner, waiting["id"], idempotencyKey="k"))["clientSecret"],
        paid(pay(owner, waiting["id"], idempotencyKey="k"))["clientSecret"],  # replayed: read again
    }
    [secret] = secrets
    assert secret and secret.startswith(waiting["paymentIntentId"])
    browser_confirms(fake_stripe, {**waiting, "clientSecret": secret})
    assert paid(refresh(owner, waiting["id"]))["status"] == "SUCCEEDED"

    dumped = {
        model._meta.label: serializers.serialize("json", model._base_manager.all())
        for model in apps.get_models()
        if model._meta.managed  # django-rq's dashboard model has no table
    }

    assert [label for label, text in dumped.items() if secret in text] == []
    assert [label for label, text in dumped.items() if "_secret_" in text] == []
