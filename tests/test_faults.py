"""Fault scenarios end to end: the real stripe SDK, the fake Stripe, and a FaultProxy between them.

One test per scenario, named ``test_<scenario>__<outcome>`` so that the list of tests reads as a
table; each docstring says ``fault: ... / outcome: ...``. "Lost answer" is the proxy's ``drop_after``:
Stripe acted, the client never heard. Every retry must reuse the first request's idempotency key,
so that Stripe (here the proxy) replays the first outcome instead of acting twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from graphql_relay import to_global_id

from aa_stripe.exceptions import StripeInternalError, StripeMethodNotAllowed
from aa_stripe.models import StripeCharge, StripeCustomer, StripeRefund, StripeSubscription
from aa_stripe.signals import stripe_charge_refunded, stripe_charge_succeeded
from tests.graphql_helpers import codes, gql, signed_in
from tests.processes import shared_database_url

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parent.parent

CREATE_CUSTOMER = """
mutation($input: CreateStripeCustomerInput!) {
  createStripeCustomer(input: $input) {
    customer { id stripeCustomerId isActive isCreatedAtStripe }
    errors { field code message }
  }
}
"""
CREATE_SUBSCRIPTION = """
mutation($input: CreateStripeSubscriptionInput!) {
  createStripeSubscription(input: $input) {
    subscription { id stripeSubscriptionId status isCreatedAtStripe atPeriodEnd }
    errors { field code message }
  }
}
"""
CANCEL_SUBSCRIPTION = """
mutation($input: CancelStripeSubscriptionInput!) {
  cancelStripeSubscription(input: $input) {
    subscription { id status atPeriodEnd }
    errors { field code message }
  }
}
"""


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def signals():
    """Every ``stripe_charge_succeeded`` (pk) and ``stripe_charge_refunded`` (pk, amount) sent."""
    received: dict[str, list] = {"succeeded": [], "refunded": []}

    def on_success(sender, instance, **kwargs):
        received["succeeded"].append(instance.pk)

    def on_refund(sender, instance, **kwargs):
        received["refunded"].append((instance.pk, instance.amount_refunded))

    stripe_charge_succeeded.connect(on_success, sender=StripeCharge)
    stripe_charge_refunded.connect(on_refund, sender=StripeCharge)
    yield received
    stripe_charge_succeeded.disconnect(on_success, sender=StripeCharge)
    stripe_charge_refunded.disconnect(on_refund, sender=StripeCharge)


def pending(user, count: int = 1) -> list[StripeCharge]:
    return [
        StripeCharge.objects.create(user=user, amount=1000 + i, description=f"Order {i}")
        for i in range(count)
    ]


def charges_at_fake(fake_stripe) -> list[dict]:
    return fake_stripe.get("/v1/charges", limit=100)["data"]


def charge_posts(fake_stripe) -> list:
    return fake_stripe.proxy.calls("POST", "/v1/charges")


def run_command() -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("charge_stripe", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_command_failing() -> tuple[str, str, str]:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("charge_stripe", stdout=out, stderr=err)
    return str(raised.value), out.getvalue(), err.getvalue()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout}s")
        time.sleep(0.05)


def assert_retryable(*charges: StripeCharge) -> None:
    for charge in charges:
        charge.refresh_from_db()
        assert not charge.is_charged and not charge.charge_attempt_failed and charge.attempt == 1
        assert charge.stripe_charge_id == ""


def create_customer(client, token: dict) -> dict:
    body = gql(client, CREATE_CUSTOMER, {"input": {"stripeJsResponse": json.dumps(token)}})
    return body["data"]["createStripeCustomer"]


def create_subscription(client, plan) -> dict:
    variables = {"input": {"plan": to_global_id("StripeSubscriptionPlan", plan.pk)}}
    return gql(client, CREATE_SUBSCRIPTION, variables)["data"]["createStripeSubscription"]


def customers_at_fake(fake_stripe) -> list[dict]:
    return fake_stripe.get("/v1/customers", limit=100)["data"]


def subscriptions_at_fake(fake_stripe) -> list[dict]:
    return fake_stripe.get("/v1/subscriptions", status="all")["data"]


# --- a. charge, lost answer, SDK retry ----------------------------------------------------------


def test_a_charge_answer_lost_with_sdk_retries__same_key_replayed_charged_once_one_signal(
    fake_stripe, customer, user, settings, signals
):
    """fault: the charge's answer is lost (drop_after); STRIPE_MAX_NETWORK_RETRIES = 2 /
    outcome: the SDK retries in the same call with the same key, the fake replays; one charge,
    the row charged, stripe_charge_succeeded sent once."""
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    [charge] = pending(user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")

    result = charge.charge()

    first, retry = charge_posts(fake_stripe)
    assert first.idempotency_key == retry.idempotency_key == f"charge:{charge.uuid}:1"
    assert (first.fault, first.replayed, retry.fault, retry.replayed) == ("drop_after", False, None, True)
    [at_fake] = charges_at_fake(fake_stripe)
    charge.refresh_from_db()
    assert charge.is_charged and charge.stripe_charge_id == result["id"] == at_fake["id"]
    assert signals["succeeded"] == [charge.pk]


# --- b. charge, lost answer, no retry: next charge_stripe run --------------------------------------


def test_b_charge_answer_lost_without_retries__command_fails_retryable_then_next_run_replays(
    fake_stripe, customer, user, signals
):
    """fault: the charge's answer is lost (drop_after); no SDK retries /
    outcome: charge_stripe exits non-zero naming 1 left for retry, the row stays retryable; the next
    run sends the same key, the fake replays: one charge, the row charged, one signal."""
    [charge] = pending(user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")

    message, _out, err = run_command_failing()

    assert message == "charge_stripe: 0 charged, 0 declined, 1 left for retry, 0 errors"
    assert f"charge #{charge.pk} " in err and "left for retry: " in err and "Network error" in err
    assert_retryable(charge)
    assert charge.attempt_started_at is not None
    assert len(charges_at_fake(fake_stripe)) == 1  # Stripe acted; we never heard
    assert signals["succeeded"] == []

    out, err = run_command()

    assert "charge_stripe: 1 charged, 0 declined, 0 left for retry, 0 errors" in out and err == ""
    first, retry = charge_posts(fake_stripe)
    assert first.idempotency_key == retry.idempotency_key == f"charge:{charge.uuid}:1"
    assert retry.replayed
    [at_fake] = charges_at_fake(fake_stripe)
    charge.refresh_from_db()
    assert charge.is_charged and charge.stripe_charge_id == at_fake["id"]
    assert signals["succeeded"] == [charge.pk]


# --- c. charge slower than the client's timeout ------------------------------------------------------


def test_c_charge_slower_than_the_client_timeout__unknown_outcome_retried_with_same_key_charged_once(
    fake_stripe, customer, user, settings, signals
):
    """fault: the charge POST is held 6 s by the proxy, the client times out after 1 s; the request
    then reaches Stripe anyway / outcome: an unknown outcome (StripeInternalError), the row stays
    retryable; the retry sends the same key, the fake replays: one charge, one signal."""
    settings.STRIPE_HTTP_TIMEOUT = 1
    [charge] = pending(user)
    fake_stripe.proxy.inject("delay", seconds=6, method="POST", path_prefix="/v1/charges")

    started = time.monotonic()
    with pytest.raises(StripeInternalError):
        charge.charge()

    assert time.monotonic() - started < 5  # the client gave up; it did not wait for the 6 s answer
    assert_retryable(charge)
    assert signals["succeeded"] == []
    wait_until(lambda: charge_posts(fake_stripe)[0].status is not None)  # the held request lands...
    assert len(charges_at_fake(fake_stripe)) == 1  # ...and Stripe charges

    result = charge.charge()

    first, retry = charge_posts(fake_stripe)
    assert (first.fault, first.status) == ("delay", 200)
    assert first.idempotency_key == retry.idempotency_key == f"charge:{charge.uuid}:1" and retry.replayed
    [at_fake] = charges_at_fake(fake_stripe)
    charge.refresh_from_db()
    assert charge.is_charged and charge.stripe_charge_id == result["id"] == at_fake["id"]
    assert signals["succeeded"] == [charge.pk]


# --- d. refund, lost answer ----------------------------------------------------------------------


def test_d_refund_answer_lost__retry_replays_never_refunds_twice_amounts_and_rows_right(
    fake_stripe, charged, signals
):
    """fault: the answer to a partial refund (400 of 1000) is lost (drop_after) /
    outcome: nothing recorded until confirmed; another amount is refused, a retry (even "refund the
    rest") replays the 400; the full refund then refunds 600: amount_refunded 1000, is_refunded,
    StripeRefund rows [400, 600], 1000 refunded at the fake."""
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/refunds")

    with pytest.raises(StripeInternalError):
        charged.refund(400)

    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.is_refunded, charged.pending_refund_amount) == (0, False, 400)
    assert not StripeRefund.objects.exists()
    assert fake_stripe.get(f"/v1/charges/{charged.stripe_charge_id}")["amount_refunded"] == 400
    with pytest.raises(StripeMethodNotAllowed, match="not confirmed"):
        charged.refund(500)  # a different amount could refund twice: refused before calling Stripe

    charged.refund()  # "refund the rest" while 400 is unconfirmed: the 400 is replayed first

    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.is_refunded, charged.pending_refund_amount) == (400, False, None)

    charged.refund()

    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.is_refunded, charged.pending_refund_amount) == (1000, True, None)
    assert list(charged.refunds.values_list("amount", flat=True)) == [400, 600]
    at_fake = fake_stripe.get("/v1/refunds", charge=charged.stripe_charge_id)["data"]
    assert sorted(r["amount"] for r in at_fake) == [400, 600]
    assert {r.stripe_refund_id for r in charged.refunds.all()} == {r["id"] for r in at_fake}
    assert fake_stripe.get(f"/v1/charges/{charged.stripe_charge_id}")["amount_refunded"] == 1000
    posts = fake_stripe.proxy.calls("POST", "/v1/refunds")
    assert [(p.idempotency_key, p.replayed) for p in posts] == [
        (f"refund:{charged.uuid}:0:400", False),
        (f"refund:{charged.uuid}:0:400", True),
        (f"refund:{charged.uuid}:400:600", False),
    ]
    assert signals["refunded"] == [(charged.pk, 400), (charged.pk, 1000)]
    with pytest.raises(StripeMethodNotAllowed, match="Already refunded"):
        charged.refund()


# --- e. 500, 502, 429 once each, with retries ----------------------------------------------------


def test_e_500_502_429_once_each_with_retries__backoff_then_success_four_attempts_one_charge(
    fake_stripe, customer, user, settings, signals
):
    """fault: the charge POST gets 500, then 502, then 429 (Retry-After: 1, Stripe-Should-Retry:
    true), then goes through; STRIPE_MAX_NETWORK_RETRIES = 3 / outcome: the SDK backs off and
    retries with the same key; 4 attempts recorded, one charge, charged, one signal."""
    settings.STRIPE_MAX_NETWORK_RETRIES = 3
    [charge] = pending(user)
    proxy = fake_stripe.proxy
    proxy.inject("status", status=500, method="POST", path_prefix="/v1/charges")
    proxy.inject("status", status=502, method="POST", path_prefix="/v1/charges")
    proxy.inject(
        "status", status=429, retry_after=1, should_retry=True, method="POST", path_prefix="/v1/charges"
    )

    started = time.monotonic()
    result = charge.charge()
    elapsed = time.monotonic() - started

    posts = charge_posts(fake_stripe)
    assert [(p.status, p.fault, p.replayed) for p in posts] == [
        (500, "status", False),
        (502, "status", False),
        (429, "status", False),
        (200, None, False),
    ]
    assert {p.idempotency_key for p in posts} == {f"charge:{charge.uuid}:1"}
    assert elapsed >= 1.5  # backed off: the SDK sleeps at least 0.5 s before each retry
    [at_fake] = charges_at_fake(fake_stripe)
    charge.refresh_from_db()
    assert charge.is_charged and charge.stripe_charge_id == result["id"] == at_fake["id"]
    assert signals["succeeded"] == [charge.pk]


@pytest.mark.parametrize(
    ("should_retry", "attempts"),
    [
        pytest.param(True, 3, id="should-retry-true"),
        pytest.param(None, 3, id="no-header"),
        pytest.param(False, 1, id="should-retry-false"),
    ],
)
def test_e_429_every_time__at_most_max_retries_plus_one_attempts_then_retryable(
    fake_stripe, customer, user, settings, signals, should_retry, attempts
):
    """fault: every charge POST gets 429 (Retry-After: 0), with Stripe-Should-Retry true, absent or
    false; STRIPE_MAX_NETWORK_RETRIES = 2 / outcome: 3 attempts (1 with "false": Stripe says retrying
    is pointless), all with the same key; no charge, the row left retryable, no signal. Before the
    fix, 429s the SDK had retried were retried again by stripe_api: 9 attempts, and 3 for "false"."""
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    [charge] = pending(user)
    fake_stripe.proxy.inject(
        "status", status=429, retry_after=0, should_retry=should_retry, times=100, method="POST"
    )

    with pytest.raises(StripeInternalError) as raised:
        charge.charge()

    assert raised.value.http_status == 429
    posts = charge_posts(fake_stripe)
    assert [p.status for p in posts] == [429] * attempts
    assert {p.idempotency_key for p in posts} == {f"charge:{charge.uuid}:1"}
    assert_retryable(charge)
    assert charges_at_fake(fake_stripe) == [] and signals["succeeded"] == []


# --- f. persistent outage during charge_stripe ------------------------------------------------------


def _run_command_process(fake_stripe) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AA_STRIPE_TEST_DATABASE_URL": shared_database_url(),
        "AA_STRIPE_TEST_API_BASE": fake_stripe.url,
    }
    return subprocess.run(
        [sys.executable, "-m", "django", "charge_stripe", "--settings=tests.subprocess_settings"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="a separate process needs a shared database")
def test_f_outage_503_while_3_pending_os_process__exits_nonzero_all_retryable_next_run_charges(
    fake_stripe, customer, user
):
    """fault: Stripe answers 503 to every request while 3 charges are pending; charge_stripe runs
    as an OS process / outcome: exit status 1, stderr names "3 left for retry"; all 3 rows stay
    retryable (not charged, not failed); once Stripe is back the next run charges each once with
    the same keys."""
    charges = pending(user, 3)
    fake_stripe.proxy.inject("status", status=503, times=1000)

    outage = _run_command_process(fake_stripe)

    assert outage.returncode == 1, outage.stderr
    assert "CommandError: charge_stripe: 0 charged, 0 declined, 3 left for retry, 0 errors" in outage.stderr
    for charge in charges:
        assert f"charge #{charge.pk} " in outage.stderr
    assert outage.stderr.count("left for retry: ") == 3
    assert_retryable(*charges)
    assert charges_at_fake(fake_stripe) == []
    keys = [(p.idempotency_key, p.status) for p in charge_posts(fake_stripe)]
    assert keys == [(f"charge:{c.uuid}:1", 503) for c in charges]

    fake_stripe.proxy.reset()  # Stripe is back
    back = _run_command_process(fake_stripe)

    assert back.returncode == 0, back.stderr
    assert "charge_stripe: 3 charged, 0 declined, 0 left for retry, 0 errors" in back.stdout
    # A 503 could have been stored for the key (Stripe replays it): each charge was looked up, was
    # not at Stripe, and was sent under a new key.
    assert [p.idempotency_key for p in charge_posts(fake_stripe)] == [f"charge:{c.uuid}:1~2" for c in charges]
    assert len(charges_at_fake(fake_stripe)) == 3
    assert StripeCharge.objects.filter(is_charged=True).count() == 3


def test_f_outage_503_while_3_pending_in_process__command_fails_all_retryable_next_run_charges(
    fake_stripe, customer, user, signals
):
    """fault: Stripe answers 503 to every request while 3 charges are pending; charge_stripe runs
    through call_command / outcome: CommandError naming "3 left for retry", one line per row; all 3
    rows stay retryable; once Stripe is back the next run looks each up and charges it once."""
    charges = pending(user, 3)
    fake_stripe.proxy.inject("status", status=503, times=1000)

    message, out, err = run_command_failing()

    assert message == "charge_stripe: 0 charged, 0 declined, 3 left for retry, 0 errors"
    assert out == ""
    assert [line.split(":")[0] for line in err.splitlines()] == [
        f"charge #{c.pk} ({c.amount} usd, user {user.pk})" for c in charges
    ]
    assert err.count("left for retry: ") == 3
    assert_retryable(*charges)
    assert charges_at_fake(fake_stripe) == [] and signals["succeeded"] == []
    outage_keys = [p.idempotency_key for p in charge_posts(fake_stripe)]

    fake_stripe.proxy.reset()  # Stripe is back
    out, err = run_command()

    assert "charge_stripe: 3 charged, 0 declined, 0 left for retry, 0 errors" in out and err == ""
    assert outage_keys == [f"charge:{c.uuid}:1" for c in charges]
    # A 503 could have been stored for the key (Stripe replays it): each charge is looked up, is
    # not at Stripe, and is sent under a new key.
    assert [p.idempotency_key for p in charge_posts(fake_stripe)] == [f"{key}~2" for key in outage_keys]
    assert len(charges_at_fake(fake_stripe)) == 3
    assert signals["succeeded"] == [c.pk for c in charges]


# --- g. customer creation, lost answer, same token -------------------------------------------------


def test_g_customer_answer_lost_graphql_same_token_again__one_customer_one_row_subscribing_works(
    fake_stripe, user, plan
):
    """fault: createStripeCustomer's POST /v1/customers answer is lost (drop_after), no SDK retry /
    outcome: the first call answers STRIPE_API_ERROR and keeps a row out of use (not created at
    Stripe, not the latest active customer) for the operation; asking again with the same token
    finishes that row by replaying: one customer at the fake, one active local row, which is the
    user's latest active customer; createStripeSubscription then works with it."""
    client = signed_in(user)
    token = fake_stripe.card_token()
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/customers")

    first = create_customer(client, token)

    assert first["customer"] is None and codes(first) == [(None, "STRIPE_API_ERROR")]
    [pending] = StripeCustomer.objects.all()
    assert not pending.is_created_at_stripe and pending.stripe_customer_id == ""
    assert StripeCustomer.get_latest_active_customer_for_user(user) is None
    assert len(customers_at_fake(fake_stripe)) == 1  # Stripe acted

    again = create_customer(client, token)

    assert again["errors"] == []
    [row] = StripeCustomer.objects.all()
    assert row.user == user and row.is_active and row.is_created_at_stripe
    assert again["customer"]["id"] == to_global_id("StripeCustomer", row.pk)
    assert [c["id"] for c in customers_at_fake(fake_stripe)] == [row.stripe_customer_id]
    sent, retry = fake_stripe.proxy.calls("POST", "/v1/customers")
    assert sent.idempotency_key == retry.idempotency_key == f"customer:create:{token['id']}"
    assert retry.replayed
    assert StripeCustomer.get_latest_active_customer_for_user(user) == row

    subscribed = create_subscription(client, plan)

    assert subscribed["errors"] == [] and subscribed["subscription"]["status"] == "ACTIVE"
    [subscription] = subscriptions_at_fake(fake_stripe)
    assert subscription["customer"] == row.stripe_customer_id
    assert StripeSubscription.objects.get().customer == row


# --- h. subscription creation, lost answer ---------------------------------------------------------


def test_h_subscription_answer_lost_graphql_ask_again__replayed_one_subscription_one_row_cancelable(
    fake_stripe, customer, plan
):
    """fault: createStripeSubscription's POST /v1/subscriptions answer is lost (drop_after) /
    outcome: the first call answers STRIPE_API_ERROR with the pending row; asking again replays the
    same key: one subscription at the fake, one local row; cancelStripeSubscription then works."""
    client = signed_in(customer.user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/subscriptions")

    first = create_subscription(client, plan)

    assert codes(first) == [(None, "STRIPE_API_ERROR")]
    assert first["subscription"]["isCreatedAtStripe"] is False
    assert len(subscriptions_at_fake(fake_stripe)) == 1  # Stripe acted

    again = create_subscription(client, plan)

    assert again["errors"] == [] and again["subscription"]["id"] == first["subscription"]["id"]
    [row] = StripeSubscription.objects.all()
    [at_fake] = subscriptions_at_fake(fake_stripe)
    assert row.is_created_at_stripe and row.stripe_subscription_id == at_fake["id"]
    assert row.customer == customer and at_fake["customer"] == customer.stripe_customer_id
    sent, retry = fake_stripe.proxy.calls("POST", "/v1/subscriptions")
    assert sent.idempotency_key == retry.idempotency_key == f"subscription:{row.uuid}" and retry.replayed

    variables = {"input": {"subscription": again["subscription"]["id"]}}
    canceled = gql(client, CANCEL_SUBSCRIPTION, variables)["data"]["cancelStripeSubscription"]

    assert canceled["errors"] == [] and canceled["subscription"]["atPeriodEnd"] is True
    assert fake_stripe.get(f"/v1/subscriptions/{row.stripe_subscription_id}")["cancel_at_period_end"] is True
    row.refresh_from_db()
    assert row.at_period_end and row.canceled_at is not None


# --- i. customer creation lost, then another card ---------------------------------------------------


def test_i_customer_answer_lost_then_another_card__one_active_local_customer_subscribing_works(
    fake_stripe, user, plan
):
    """fault: createStripeCustomer's answer is lost (drop_after); the user gives up and sends a
    different card token / outcome: the second card's customer is active and the latest;
    createStripeSubscription uses it. The lost one's row stays out of use until
    reconcile_stripe_operations records the customer Stripe made from it: every customer at Stripe
    has its row, and the latest stays the second card's."""
    client = signed_in(user)
    lost_token, other_token = fake_stripe.card_token(), fake_stripe.card_token("5555555555554444")
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/customers")

    first = create_customer(client, lost_token)

    assert codes(first) == [(None, "STRIPE_API_ERROR")]

    other = create_customer(client, other_token)

    assert other["errors"] == []
    lost, row = StripeCustomer.objects.order_by("id")
    assert not lost.is_created_at_stripe and lost.stripe_js_response["id"] == lost_token["id"]
    assert row.is_active and row.is_created_at_stripe and row.stripe_js_response["id"] == other_token["id"]
    assert row.default_source_data["last4"] == "4444"
    assert StripeCustomer.get_latest_active_customer_for_user(user) == row

    subscribed = create_subscription(client, plan)

    assert subscribed["errors"] == []
    [subscription] = subscriptions_at_fake(fake_stripe)
    assert subscription["customer"] == row.stripe_customer_id

    call_command("reconcile_stripe_operations", stdout=StringIO())

    lost.refresh_from_db()
    assert lost.is_created_at_stripe and lost.default_source_data["last4"] == "4242"
    at_fake = {customer["id"] for customer in customers_at_fake(fake_stripe)}
    assert at_fake == {lost.stripe_customer_id, row.stripe_customer_id}
    assert StripeCustomer.get_latest_active_customer_for_user(user) == row


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
