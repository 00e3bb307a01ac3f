"""GraphQL charge mutations over HTTP against the fake Stripe: createStripeCharge, refundStripeCharge."""

from __future__ import annotations

import pytest
from django.test import Client
from graphql_relay import to_global_id

from aa_stripe.models import StripeCharge
from tests.conftest import make_customer
from tests.graphql_helpers import assert_denied, codes, gql, signed_in, staff

pytestmark = pytest.mark.django_db

DECLINED_ON_CHARGE = "4000000000000341"
CHARGE_FIELDS = """
charge {
  id amount amountRefunded currency description comment statementDescriptor isCharged isRefunded
  chargeAttemptFailed stripeChargeId customer { id }
}
errors { field code message declineCode }
"""
CREATE = f"""
mutation($input: CreateStripeChargeInput!) {{
  createStripeCharge(input: $input) {{ clientMutationId {CHARGE_FIELDS} }}
}}
"""
REFUND = f"""
mutation($input: RefundStripeChargeInput!) {{ refundStripeCharge(input: $input) {{ {CHARGE_FIELDS} }} }}
"""


@pytest.fixture
def cashier() -> Client:
    return signed_in(staff("cashier", "add_stripecharge", "view_stripecharge", "view_stripecustomer"))


@pytest.fixture
def refunder() -> Client:
    return signed_in(staff("refunder", "change_stripecharge"))  # no view permission: not needed


def create_input(user, **extra) -> dict:
    return {"input": {"user": str(user.pk), "amount": 1000, "description": "Order #1", **extra}}


def create(client: Client, user, **extra) -> dict:
    return gql(client, CREATE, create_input(user, **extra))


def refund(client: Client, charge, amount: int | None = None) -> dict:
    charge_id = charge if isinstance(charge, str) else to_global_id("StripeCharge", charge.pk)
    return gql(client, REFUND, {"input": {"charge": charge_id, "amount": amount}})


@pytest.fixture
def charged(fake_stripe, charged) -> StripeCharge:
    """The shared ``charged`` (conftest), with the fixtures' calls forgotten."""
    fake_stripe.proxy.reset()
    return charged


# --- createStripeCharge -----------------------------------------------------------------------


def test_staff_charge_a_users_card(fake_stripe, customer, user, cashier):
    body = create(
        cashier, user, currency="EUR", comment="internal", statementDescriptor="SHOP 1", clientMutationId="c"
    )

    payload = body["data"]["createStripeCharge"]
    assert payload["errors"] == [] and payload["clientMutationId"] == "c"
    row = StripeCharge.objects.get()
    assert (row.user, row.customer, row.is_charged, row.currency, row.comment) == (
        user,
        customer,
        True,
        "eur",
        "internal",
    )
    assert payload["charge"] == {
        "id": to_global_id("StripeCharge", row.pk),
        "amount": 1000,
        "amountRefunded": 0,
        "currency": "eur",
        "description": "Order #1",
        "comment": "internal",
        "statementDescriptor": "SHOP 1",
        "isCharged": True,
        "isRefunded": False,
        "chargeAttemptFailed": False,
        "stripeChargeId": row.stripe_charge_id,
        "customer": {"id": to_global_id("StripeCustomer", customer.pk)},
    }
    at_fake = fake_stripe.get(f"/v1/charges/{row.stripe_charge_id}")
    assert (at_fake["amount"], at_fake["currency"], at_fake["customer"]) == (
        1000,
        "eur",
        customer.stripe_customer_id,
    )
    assert at_fake["description"] == "Order #1" and at_fake["status"] == "succeeded"


def test_charge_later_leaves_it_to_the_command(fake_stripe, customer, user, cashier):
    fake_stripe.proxy.reset()

    payload = create(cashier, user, chargeNow=False)["data"]["createStripeCharge"]

    assert payload["errors"] == [] and payload["charge"]["isCharged"] is False
    row = StripeCharge.objects.get()
    assert not row.is_charged and not row.is_manual_charge
    assert fake_stripe.proxy.calls() == []


def test_declined_charge_keeps_the_row_and_says_why(fake_stripe, user, cashier):
    make_customer(fake_stripe, user, DECLINED_ON_CHARGE)

    payload = create(cashier, user)["data"]["createStripeCharge"]

    [error] = payload["errors"]
    assert error["code"] == "CARD_DECLINED" and error["declineCode"] and error["field"] is None
    row = StripeCharge.objects.get()
    assert payload["charge"]["id"] == to_global_id("StripeCharge", row.pk)
    assert payload["charge"]["chargeAttemptFailed"] is True and payload["charge"]["isCharged"] is False
    assert row.charge_attempt_failed and not row.is_charged


def test_unknown_outcome_returns_the_charge_with_a_stripe_api_error(fake_stripe, customer, user, cashier):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")

    payload = create(cashier, user)["data"]["createStripeCharge"]

    assert codes(payload) == [(None, "STRIPE_API_ERROR")]
    assert payload["charge"]["isCharged"] is False
    row = StripeCharge.objects.get()
    assert not row.is_charged and not row.charge_attempt_failed and row.attempt_started_at is not None
    row.charge()  # what the charge_stripe command does later: the same key replays the first charge
    assert len(fake_stripe.get("/v1/charges", customer=customer.stripe_customer_id)["data"]) == 1
    assert fake_stripe.proxy.calls("POST", "/v1/charges")[-1].replayed


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"amount": 0}, ("amount", "INVALID")),
        ({"amount": -5}, ("amount", "INVALID")),
        ({"currency": "xyz"}, ("currency", "INVALID")),
        ({"description": ""}, ("description", "REQUIRED")),
        ({"statementDescriptor": "x" * 23}, ("statementDescriptor", "INVALID")),
    ],
    ids=["zero", "negative", "currency", "description", "statement-descriptor"],
)
def test_invalid_input_saves_and_sends_nothing(fake_stripe, customer, user, cashier, extra, expected):
    fake_stripe.proxy.reset()

    payload = create(cashier, user, **extra)["data"]["createStripeCharge"]

    assert payload["charge"] is None and codes(payload) == [expected]
    assert not StripeCharge.objects.exists() and fake_stripe.proxy.calls() == []


@pytest.mark.parametrize("pk", ["999", "abc"])
def test_unknown_user_is_not_found(fake_stripe, cashier, pk):
    payload = gql(cashier, CREATE, {"input": {"user": pk, "amount": 100, "description": "x"}})

    assert codes(payload["data"]["createStripeCharge"]) == [("user", "NOT_FOUND")]
    assert not StripeCharge.objects.exists()


def test_a_user_without_a_card_has_no_active_customer(fake_stripe, user, cashier):
    payload = create(cashier, user)["data"]["createStripeCharge"]

    assert codes(payload) == [("user", "NO_ACTIVE_CUSTOMER")]
    assert not StripeCharge.objects.exists() and fake_stripe.proxy.calls() == []


@pytest.mark.parametrize("who", ["anonymous", "owner", "other-user", "staff-without", "staff-view-only"])
def test_create_charge_needs_add_stripecharge(fake_stripe, customer, user, other_user, who):
    clients = {
        "anonymous": Client(),
        "owner": signed_in(user),
        "other-user": signed_in(other_user),
        "staff-without": signed_in(staff("carol")),
        "staff-view-only": signed_in(staff("dave", "view_stripecharge")),
    }
    fake_stripe.proxy.reset()

    assert_denied(create(clients[who], user), "createStripeCharge")
    unknown_user = {"input": {"user": "999", "amount": 100, "description": "x"}}
    assert_denied(gql(clients[who], CREATE, unknown_user), "createStripeCharge")  # refused before any lookup
    assert not StripeCharge.objects.exists() and fake_stripe.proxy.calls() == []


def test_the_comment_is_hidden_without_the_view_permission(fake_stripe, customer, user):
    client = signed_in(staff("carol", "add_stripecharge"))

    payload = create(client, user, comment="internal")["data"]["createStripeCharge"]

    assert payload["errors"] == [] and payload["charge"]["comment"] is None
    assert StripeCharge.objects.get().comment == "internal"


# --- refundStripeCharge -----------------------------------------------------------------------


def test_refund_all_that_is_left(fake_stripe, charged, refunder):
    payload = refund(refunder, charged)["data"]["refundStripeCharge"]

    assert payload["errors"] == []
    assert (payload["charge"]["amountRefunded"], payload["charge"]["isRefunded"]) == (1000, True)
    charged.refresh_from_db()
    assert charged.is_refunded and charged.amount_refunded == 1000
    assert fake_stripe.get(f"/v1/charges/{charged.stripe_charge_id}")["amount_refunded"] == 1000


def test_partial_refunds_then_the_rest(fake_stripe, charged, refunder):
    assert refund(refunder, charged, 300)["data"]["refundStripeCharge"]["charge"]["amountRefunded"] == 300

    payload = refund(refunder, charged)["data"]["refundStripeCharge"]

    assert payload["charge"]["amountRefunded"] == 1000 and payload["charge"]["isRefunded"] is True
    assert list(charged.refunds.values_list("amount", flat=True)) == [300, 700]
    assert fake_stripe.get(f"/v1/charges/{charged.stripe_charge_id}")["amount_refunded"] == 1000


@pytest.mark.parametrize("amount", [1001, 0, -1])
def test_refund_above_the_rest_or_not_positive_is_invalid(fake_stripe, charged, refunder, amount):
    payload = refund(refunder, charged, amount)["data"]["refundStripeCharge"]

    assert payload["charge"] is None and codes(payload) == [("amount", "INVALID")]
    assert fake_stripe.proxy.calls() == []


def test_refund_above_what_is_left_after_a_partial_refund_is_invalid(fake_stripe, charged, refunder):
    refund(refunder, charged, 600)

    payload = refund(refunder, charged, 401)["data"]["refundStripeCharge"]

    assert codes(payload) == [("amount", "INVALID")] and "400" in payload["errors"][0]["message"]


def test_refunding_a_charge_not_charged_or_refunded_already_is_not_allowed(
    fake_stripe, charged, user, refunder
):
    pending = StripeCharge.objects.create(user=user, amount=500, description="later")
    refund(refunder, charged)
    fake_stripe.proxy.reset()

    for charge in (pending, charged):
        payload = refund(refunder, charge)["data"]["refundStripeCharge"]
        assert codes(payload) == [("charge", "NOT_ALLOWED")]
    assert fake_stripe.proxy.calls() == []


def test_refund_with_unknown_outcome_is_replayed_when_asked_again(fake_stripe, charged, refunder):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/refunds")

    first = refund(refunder, charged, 400)["data"]["refundStripeCharge"]

    assert codes(first) == [(None, "STRIPE_API_ERROR")] and first["charge"]["amountRefunded"] == 0
    charged.refresh_from_db()
    assert charged.pending_refund_amount == 400

    again = refund(refunder, charged)["data"]["refundStripeCharge"]  # null: the unconfirmed refund

    assert again["errors"] == [] and again["charge"]["amountRefunded"] == 400
    first_call, retry = fake_stripe.proxy.calls("POST", "/v1/refunds")
    assert first_call.idempotency_key == retry.idempotency_key and retry.replayed
    assert fake_stripe.get(f"/v1/charges/{charged.stripe_charge_id}")["amount_refunded"] == 400


def test_unknown_charge_is_not_found(fake_stripe, refunder):
    for charge_id in ["nonsense", to_global_id("StripeCharge", 999), to_global_id("StripeCustomer", 1)]:
        assert codes(refund(refunder, charge_id)["data"]["refundStripeCharge"]) == [("charge", "NOT_FOUND")]


@pytest.mark.parametrize("who", ["anonymous", "owner", "other-user", "staff-without", "staff-add-and-view"])
def test_refund_needs_change_stripecharge(fake_stripe, charged, user, other_user, who):
    clients = {
        "anonymous": Client(),
        "owner": signed_in(user),
        "other-user": signed_in(other_user),
        "staff-without": signed_in(staff("carol")),
        "staff-add-and-view": signed_in(staff("dave", "add_stripecharge", "view_stripecharge")),
    }

    assert_denied(refund(clients[who], charged), "refundStripeCharge")
    assert_denied(refund(clients[who], "nonsense"), "refundStripeCharge")  # before any lookup
    charged.refresh_from_db()
    assert charged.amount_refunded == 0 and fake_stripe.proxy.calls() == []


def test_a_charge_the_cron_took_first_is_returned_not_deleted(fake_stripe, customer, user, cashier):
    """The new row is committed before charge(): charge_stripe on another host may charge it first.
    The mutation must return that charge, never delete the row of money Stripe already took."""
    from django.core.management import call_command
    from django.db.models.signals import post_save

    def cron_runs_now(sender, instance, created, **kwargs):
        if created:
            post_save.disconnect(cron_runs_now, sender=StripeCharge)
            call_command("charge_stripe", verbosity=0)

    post_save.connect(cron_runs_now, sender=StripeCharge, weak=False)
    try:
        payload = create(cashier, user)["data"]["createStripeCharge"]
    finally:
        post_save.disconnect(cron_runs_now, sender=StripeCharge)

    assert payload["errors"] == [] and payload["charge"]["isCharged"] is True
    row = StripeCharge.objects.get()
    assert row.is_charged
    assert len(fake_stripe.get("/v1/charges", customer=customer.stripe_customer_id)["data"]) == 1


# --- input limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"amount": 100_000_000}, "amount", "at most 99999999"),
        ({"amount": 150, "currency": "ISK"}, "amount", "multiples of 100"),
        ({"amount": 1005, "currency": "kwd"}, "amount", "multiples of 10"),
        ({"currency": "ab"}, "currency", "'ab'"),
        ({"statementDescriptor": "abcd"}, "statementDescriptor", "at least 5"),
        ({"statementDescriptor": "12345"}, "statementDescriptor", "letter"),
        ({"statementDescriptor": "Shop <3"}, "statementDescriptor", "<"),
        ({"statementDescriptor": 'say "hi"'}, "statementDescriptor", '"'),
        ({"statementDescriptor": "a*b cd"}, "statementDescriptor", "*"),
        ({"statementDescriptor": "Café Shop"}, "statementDescriptor", "ASCII"),
    ],
)
def test_stripes_limits_are_payload_errors(fake_stripe, customer, user, cashier, extra, field, words):
    fake_stripe.proxy.reset()

    payload = create(cashier, user, **extra)["data"]["createStripeCharge"]

    assert payload["charge"] is None and codes(payload) == [(field, "INVALID")]
    assert words in payload["errors"][0]["message"]
    assert not StripeCharge.objects.exists() and fake_stripe.proxy.calls() == []


def test_every_bad_field_is_reported_at_once(fake_stripe, customer, user, cashier):
    payload = create(cashier, user, amount=0, statementDescriptor="abcd")["data"]["createStripeCharge"]

    assert sorted(codes(payload)) == [("amount", "INVALID"), ("statementDescriptor", "INVALID")]
    assert not StripeCharge.objects.exists()


@pytest.mark.parametrize(("amount", "descriptor"), [(1, "abcde"), (99_999_999, "a" * 22)])
def test_the_limits_themselves_are_charged(fake_stripe, customer, user, cashier, amount, descriptor):
    body = create(cashier, user, amount=amount, statementDescriptor=descriptor)

    payload = body["data"]["createStripeCharge"]
    assert payload["errors"] == [] and payload["charge"]["isCharged"] is True
    [sent] = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert (sent.params["amount"], sent.params["statement_descriptor"]) == (str(amount), descriptor)


def test_a_refund_beyond_stripes_limit_is_invalid(fake_stripe, charged, refunder):
    payload = refund(refunder, charged, 100_000_000)["data"]["refundStripeCharge"]

    assert payload["charge"] is None and codes(payload) == [("amount", "INVALID")]
    assert fake_stripe.proxy.calls() == []


def test_a_refund_in_fractions_of_a_krona_is_invalid(fake_stripe, customer, user, refunder):
    charge = StripeCharge.objects.create(user=user, amount=10_000, currency="isk", description="ISK")
    charge.charge()
    fake_stripe.proxy.reset()

    payload = refund(refunder, charge, 150)["data"]["refundStripeCharge"]

    assert codes(payload) == [("amount", "INVALID")] and "multiples of 100" in payload["errors"][0]["message"]
    assert fake_stripe.proxy.calls() == []


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
