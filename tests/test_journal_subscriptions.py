"""The operations journal for subscriptions: subscribe(), create_at_stripe(), cancel(), the
``end_subscriptions`` command and createStripeSubscription over HTTP.

Each hole of issue 17 it closes is named in the test's docstring. The fake Stripe's fault proxy
plays Stripe's documented behaviour: a lost answer after Stripe acted (``drop_after``), a 5xx
stored and replayed for the key (``status_after``), keys forgotten after 24 hours
(``forget_keys``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone
from graphql_relay import to_global_id

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    StripeAlreadyCanceled,
    StripeCardError,
    StripeIdempotencyError,
    StripeInternalError,
    StripeOperationInProgress,
)
from aa_stripe.guard import StripeWriteInTransaction, library_atomic
from aa_stripe.models import StripeCoupon, StripeCustomer, StripeOperation, StripeSubscription
from aa_stripe.operations import journal
from aa_stripe_graphql.errors import error_code_for
from tests.conftest import make_customer
from tests.graphql_helpers import codes, gql, signed_in

pytestmark = pytest.mark.django_db

CREATE = """
mutation($input: CreateStripeSubscriptionInput!) {
  createStripeSubscription(input: $input) {
    subscription { id stripeSubscriptionId isCreatedAtStripe }
    errors { field code message }
  }
}
"""


def subscribe(client, plan, **extra) -> dict:
    variables = {"input": {"plan": to_global_id("StripeSubscriptionPlan", plan.pk), **extra}}
    return gql(client, CREATE, variables)["data"]["createStripeSubscription"]


def subscriptions_at_fake(fake_stripe) -> list[dict]:
    return fake_stripe.get("/v1/subscriptions", status="all", limit=100)["data"]


def reconcile() -> str:
    out = StringIO()
    call_command("reconcile_stripe_operations", stdout=out, stderr=out)
    return out.getvalue()


def operations(kind: str) -> list[StripeOperation]:
    return list(StripeOperation.objects.filter(kind=kind).order_by("id"))


@pytest.fixture
def while_sending() -> Iterator[Callable[[Callable[[], Any]], None]]:
    """``while_sending(act)``: run ``act()`` once, while the next write to Stripe is on its way
    (what another request or host would do meanwhile); the write then goes to the fake."""
    original = journal.stripe_api.call
    pending: list[Callable[[], Any]] = []

    def call(service, method, *ids, params=None, idempotency_key=None):
        if pending and method not in stripe_api.READ_METHODS:
            pending.pop()()
        return original(service, method, *ids, params=params, idempotency_key=idempotency_key)

    journal.stripe_api.call = call
    yield pending.append
    journal.stripe_api.call = original


def lost_subscription(fake_stripe, customer, plan, **fields) -> StripeSubscription:
    """A subscription Stripe made whose answer never arrived."""
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan, **fields)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/subscriptions")
    with pytest.raises(StripeInternalError):
        sub.create_at_stripe()
    return sub


# --- create: the request is frozen and committed before Stripe is called ---------------------------


def test_the_request_is_committed_before_stripe_is_called_and_names_the_row(
    fake_stripe, customer, plan, while_sending
):
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan, metadata={"ref": "r"})
    seen = {}

    def look():  # what another process finds while the request is on its way
        [operation] = operations("subscription_create")
        seen.update(state=operation.state, key=operation.key, params=operation.params)

    while_sending(look)
    sub.create_at_stripe()

    [operation] = operations("subscription_create")
    assert seen["state"] == StripeOperation.SENDING and seen["key"] == f"subscription:{sub.uuid}"
    assert seen["params"]["metadata"] == {
        "ref": "r",
        "subscription_uuid": str(sub.uuid),
        "operation": str(operation.uuid),
    }
    assert operation.state == StripeOperation.SUCCEEDED and operation.stripe_id == sub.stripe_subscription_id


def test_a_retry_sends_the_frozen_request_after_the_customer_was_deactivated(fake_stripe, customer, plan):
    """Hole 2: the retry rebuilt its parameters with the user's new customer, and Stripe answered
    an idempotency error: the subscription Stripe made was never recorded."""
    sub = lost_subscription(fake_stripe, customer, plan)
    StripeCustomer.objects.filter(pk=customer.pk).update(is_active=False)  # e.g. the card was removed
    make_customer(fake_stripe, customer.user)  # and another one added
    sub = StripeSubscription.objects.get(pk=sub.pk)  # the retry runs in another request or process

    sub.create_at_stripe()

    first, retry = fake_stripe.proxy.calls("POST", "/v1/subscriptions")
    assert retry.params == first.params and retry.idempotency_key == first.idempotency_key
    assert retry.replayed and first.params["customer"] == customer.stripe_customer_id
    sub.refresh_from_db()
    [only] = subscriptions_at_fake(fake_stripe)
    assert sub.is_created_at_stripe and sub.stripe_subscription_id == only["id"]
    assert sub.customer_id == customer.pk


def test_after_25_hours_a_lost_subscription_is_found_not_created_again(fake_stripe, customer, plan):
    """Hole 1: the uuid was not sent in metadata; after Stripe forgot the key nothing could find
    the subscription, and the retry made a second one."""
    sub = lost_subscription(fake_stripe, customer, plan)
    fake_stripe.proxy.forget_keys()  # Stripe keeps keys 24 hours

    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        sub.create_at_stripe()

    [only] = subscriptions_at_fake(fake_stripe)
    sub.refresh_from_db()
    assert sub.stripe_subscription_id == only["id"] and only["metadata"]["subscription_uuid"] == str(sub.uuid)
    assert len(fake_stripe.proxy.calls("POST", "/v1/subscriptions")) == 1
    [lookup] = fake_stripe.proxy.calls("GET", "/v1/subscriptions")
    assert lookup.query["status"] == "all" and lookup.query["customer"] == customer.stripe_customer_id
    assert int(lookup.query["created[gt]"]) < sub.created.timestamp()


def test_a_lost_subscription_canceled_meanwhile_is_still_found(fake_stripe, customer, plan):
    """The default list hides canceled subscriptions: the lookup asks for status=all."""
    sub = lost_subscription(fake_stripe, customer, plan)
    [made] = subscriptions_at_fake(fake_stripe)
    stripe_api.call("subscriptions", "cancel", made["id"])  # e.g. in the dashboard
    fake_stripe.proxy.forget_keys()

    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        sub.create_at_stripe()

    sub.refresh_from_db()
    assert (sub.stripe_subscription_id, sub.status) == (made["id"], StripeSubscription.STATUS_CANCELED)
    assert len(fake_stripe.proxy.calls("POST", "/v1/subscriptions")) == 1


def test_a_5xx_after_stripe_acted_is_looked_up_by_reconcile(fake_stripe, customer, plan):
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan)
    fake_stripe.proxy.inject("status_after", method="POST", path_prefix="/v1/subscriptions", status=500)
    with pytest.raises(StripeInternalError):
        sub.create_at_stripe()
    [operation] = operations("subscription_create")
    assert operation.state == StripeOperation.UNKNOWN and operation.needs_lookup

    assert "1 succeeded, 0 refused, 0 still unresolved" in reconcile()

    sub.refresh_from_db()
    [only] = subscriptions_at_fake(fake_stripe)
    assert sub.is_created_at_stripe and sub.stripe_subscription_id == only["id"]
    assert len(fake_stripe.proxy.calls("POST", "/v1/subscriptions")) == 1  # found, not sent again


def test_a_5xx_before_stripe_acted_is_sent_again_under_a_new_key(fake_stripe, customer, plan):
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan)
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/subscriptions", status=503)
    with pytest.raises(StripeInternalError):
        sub.create_at_stripe()

    sub.create_at_stripe()

    first, second = fake_stripe.proxy.calls("POST", "/v1/subscriptions")
    assert second.idempotency_key == f"subscription:{sub.uuid}~2" and second.params == first.params
    assert len(subscriptions_at_fake(fake_stripe)) == 1


def test_a_refused_attempt_keeps_the_row_and_the_next_call_is_a_new_attempt(fake_stripe, customer, plan):
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan)
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/subscriptions", status=402)
    with pytest.raises(StripeCardError):
        sub.create_at_stripe()
    sub.refresh_from_db()
    assert (
        not sub.is_created_at_stripe
        and sub.stripe_response["error"]["message"] == "Injected 402 from FaultProxy."
    )

    sub.create_at_stripe()

    first, second = fake_stripe.proxy.calls("POST", "/v1/subscriptions")
    assert (first.idempotency_key, second.idempotency_key) == (
        f"subscription:{sub.uuid}",
        f"subscription:{sub.uuid}:2",
    )
    assert [o.state for o in operations("subscription_create")] == ["refused", "succeeded"]


def test_an_older_versions_lost_subscription_is_found_not_made_twice(fake_stripe, customer, plan):
    """As an older version left it: Stripe made the subscription under ``subscription:<uuid>``
    (no uuid or operation in metadata), the answer never came, no operation exists."""
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan, metadata={"ref": "old"})
    made = stripe_api.call(
        "subscriptions",
        "create",
        params={
            "customer": customer.stripe_customer_id,
            "items": [{"plan": plan.stripe_plan_id}],
            "metadata": {"ref": "old"},
            "payment_behavior": "error_if_incomplete",
        },
        idempotency_key=f"subscription:{sub.uuid}",
    )

    # Stripe refuses the same key with other parameters; the operation is then looked up.
    with pytest.raises(StripeIdempotencyError):
        sub.create_at_stripe()
    sub.create_at_stripe()

    sub.refresh_from_db()
    assert sub.stripe_subscription_id == made["id"] and len(subscriptions_at_fake(fake_stripe)) == 1


def test_a_library_write_forced_into_its_own_transaction_trips_the_guard(fake_stripe, customer, plan):
    """Negative control: the guard sees the plan -> send -> record split, not just its absence."""
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan)
    fake_stripe.proxy.reset()

    with pytest.raises(StripeWriteInTransaction), library_atomic():
        sub.create_at_stripe()

    assert fake_stripe.proxy.calls("POST") == []


# --- createStripeSubscription: the retry policy is the domain's -------------------------------------


def test_graphql_retry_after_the_customer_changed_finishes_the_first_subscription(
    fake_stripe, customer, plan
):
    """Holes 1 and 2 together: the retry's idempotency error deleted the row of a subscription that
    was live at Stripe."""
    client = signed_in(customer.user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/subscriptions")
    first = subscribe(client, plan, metadata=json.dumps({"ref": "r"}))
    assert codes(first) == [(None, "STRIPE_API_ERROR")]
    StripeCustomer.objects.filter(pk=customer.pk).update(is_active=False)
    make_customer(fake_stripe, customer.user)

    again = subscribe(client, plan, metadata=json.dumps({"ref": "r"}))

    assert again["errors"] == [] and again["subscription"]["id"] == first["subscription"]["id"]
    [only] = subscriptions_at_fake(fake_stripe)
    row = StripeSubscription.objects.get()
    assert row.stripe_subscription_id == only["id"] == again["subscription"]["stripeSubscriptionId"]


def test_graphql_retry_after_25_hours_finds_the_subscription_even_if_stripe_would_now_refuse(
    fake_stripe, customer, plan
):
    """Hole 1: Stripe forgot the key and now refuses the request (its coupon was deleted at
    Stripe): the refusal deleted the row while the first subscription lived on."""
    StripeCoupon.objects.create(coupon_id="ONCE", duration=StripeCoupon.DURATION_FOREVER, percent_off=5)
    client = signed_in(customer.user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/subscriptions")
    first = subscribe(client, plan, coupon="ONCE")
    assert codes(first) == [(None, "STRIPE_API_ERROR")]
    stripe_api.call("coupons", "delete", "ONCE")  # in the dashboard; no webhook yet
    fake_stripe.proxy.forget_keys()

    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        again = subscribe(client, plan, coupon="ONCE")

    assert again["errors"] == [] and again["subscription"]["id"] == first["subscription"]["id"]
    [only] = subscriptions_at_fake(fake_stripe)
    assert StripeSubscription.objects.get().stripe_subscription_id == only["id"]
    assert len(fake_stripe.proxy.calls("POST", "/v1/subscriptions")) == 1


def test_graphql_a_refused_retry_never_deletes_the_row(fake_stripe, customer, plan):
    """Hole 1: any non-transient error on a retry deleted the reused row, although Stripe may have
    acted on the first attempt (here it had not: the connection dropped before; the row stays)."""
    StripeCoupon.objects.create(coupon_id="ONCE", duration=StripeCoupon.DURATION_FOREVER, percent_off=5)
    client = signed_in(customer.user)
    fake_stripe.proxy.inject("drop_before", method="POST", path_prefix="/v1/subscriptions")
    first = subscribe(client, plan, coupon="ONCE")
    assert codes(first) == [(None, "STRIPE_API_ERROR")]
    stripe_api.call("coupons", "delete", "ONCE")

    again = subscribe(client, plan, coupon="ONCE")

    assert codes(again) == [("coupon", "NOT_FOUND")]
    assert again["subscription"]["id"] == first["subscription"]["id"]
    row = StripeSubscription.objects.get()
    assert not row.is_created_at_stripe and subscriptions_at_fake(fake_stripe) == []
    assert [o.state for o in operations("subscription_create")] == ["refused"]


def test_graphql_two_identical_requests_at_once_make_one_subscription(
    fake_stripe, customer, plan, while_sending
):
    """Hole 1: each request made its own row and its own subscription."""
    client = signed_in(customer.user)
    second: dict = {}
    while_sending(lambda: second.update(subscribe(client, plan, metadata=json.dumps({"ref": "r"}))))

    first = subscribe(client, plan, metadata=json.dumps({"ref": "r"}))

    assert first["errors"] == [] and first["subscription"]["isCreatedAtStripe"]
    assert codes(second) == [(None, error_code_for(StripeOperationInProgress()).name)]
    assert second["subscription"]["id"] == first["subscription"]["id"]
    assert len(subscriptions_at_fake(fake_stripe)) == 1 and StripeSubscription.objects.count() == 1
    assert len(fake_stripe.proxy.calls("POST", "/v1/subscriptions")) == 1


def test_graphql_a_different_request_meanwhile_is_its_own_subscription(
    fake_stripe, customer, plan, while_sending
):
    client = signed_in(customer.user)
    second: dict = {}
    while_sending(lambda: second.update(subscribe(client, plan, metadata=json.dumps({"ref": "other"}))))

    first = subscribe(client, plan, metadata=json.dumps({"ref": "r"}))

    assert first["errors"] == [] and second["errors"] == []
    assert len(subscriptions_at_fake(fake_stripe)) == 2 and StripeSubscription.objects.count() == 2


# --- cancel -----------------------------------------------------------------------------------------


@pytest.fixture
def subscription(fake_stripe, customer, plan) -> StripeSubscription:
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan)
    sub.create_at_stripe()
    return sub


def cancels(fake_stripe, sub) -> list:
    return [
        c
        for c in fake_stripe.proxy.calls(path_prefix=f"/v1/subscriptions/{sub.stripe_subscription_id}")
        if c.method in ("POST", "DELETE")
    ]


def test_a_lost_cancel_at_period_end_is_found_by_reconcile_not_sent_again(fake_stripe, subscription):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/subscriptions/")
    with pytest.raises(StripeInternalError):
        subscription.cancel(at_period_end=True)
    subscription.refresh_from_db()
    assert not subscription.at_period_end  # not known yet

    # Asked again: Stripe has it set, cancel() says so; the operation is left to reconcile.
    with pytest.raises(StripeAlreadyCanceled):
        subscription.cancel(at_period_end=True)
    assert "1 succeeded" in reconcile()

    subscription.refresh_from_db()
    [sent] = cancels(fake_stripe, subscription)
    assert sent.params == {"cancel_at_period_end": "true"}  # no metadata: the creation's stays
    assert sent.idempotency_key == f"subscription-cancel-at-period-end:{subscription.uuid}:1"
    assert subscription.at_period_end
    assert [o.state for o in operations("subscription_cancel_at_period_end")] == ["succeeded"]


def test_a_lost_cancel_now_is_looked_up_never_deleted_twice(fake_stripe, subscription):
    """Stripe keeps no key for a DELETE and answers a second one 404: the retry looks first."""
    fake_stripe.proxy.inject("drop_after", method="DELETE", path_prefix="/v1/subscriptions/")
    with pytest.raises(StripeInternalError):
        subscription.cancel()
    [operation] = operations("subscription_cancel")
    assert operation.state == StripeOperation.UNKNOWN and operation.needs_lookup

    assert "1 succeeded" in reconcile()

    subscription.refresh_from_db()
    assert subscription.status == StripeSubscription.STATUS_CANCELED and subscription.canceled_at
    assert len(cancels(fake_stripe, subscription)) == 1


def test_a_subscription_canceled_at_stripe_while_our_cancel_is_on_its_way_counts_as_canceled(
    fake_stripe, subscription, while_sending
):
    """Stripe answers 404 to canceling a canceled subscription: that is the outcome asked for."""
    while_sending(lambda: stripe_api.call("subscriptions", "cancel", subscription.stripe_subscription_id))

    subscription.cancel()

    subscription.refresh_from_db()
    assert subscription.status == StripeSubscription.STATUS_CANCELED and subscription.canceled_at
    [operation] = operations("subscription_cancel")
    assert (operation.state, operation.error_code) == (StripeOperation.REFUSED, "resource_missing")


def test_a_new_cancel_at_period_end_after_reactivation_is_a_new_request(fake_stripe, subscription):
    """One key per deliberate request: the first one's stored answer must not be replayed."""
    subscription.cancel(at_period_end=True)
    stripe_api.call(
        "subscriptions", "update", subscription.stripe_subscription_id, params={"cancel_at_period_end": False}
    )
    subscription.refresh_from_stripe()

    subscription.cancel(at_period_end=True)

    ours = [c for c in cancels(fake_stripe, subscription) if c.idempotency_key.startswith("subscription-")]
    assert [c.idempotency_key for c in ours] == [
        f"subscription-cancel-at-period-end:{subscription.uuid}:1",
        f"subscription-cancel-at-period-end:{subscription.uuid}:2",
    ]
    assert not ours[1].replayed
    subscription.refresh_from_db()
    assert subscription.at_period_end


def test_a_cancel_while_another_is_unfinished_is_in_progress(fake_stripe, subscription):
    fake_stripe.proxy.inject("drop_before", method="POST", path_prefix="/v1/subscriptions/")
    with pytest.raises(StripeInternalError):
        subscription.cancel(at_period_end=True)
    fake_stripe.proxy.reset()

    with pytest.raises(StripeOperationInProgress):
        subscription.cancel()

    assert cancels(fake_stripe, subscription) == []
    subscription.cancel(at_period_end=True)  # the same request again: finished
    subscription.cancel()
    subscription.refresh_from_db()
    assert subscription.status == StripeSubscription.STATUS_CANCELED
