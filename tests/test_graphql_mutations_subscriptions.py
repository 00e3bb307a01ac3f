"""GraphQL subscription mutations over HTTP against the fake Stripe: createStripeSubscription,
cancelStripeSubscription."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from graphql_relay import to_global_id

from aa_stripe.models import StripeCoupon, StripeOperation, StripeSubscription, StripeSubscriptionPlan
from tests.conftest import make_customer
from tests.graphql_helpers import assert_denied, codes, gql, signed_in, staff

pytestmark = pytest.mark.django_db

DECLINED_ON_CHARGE = "4000000000000341"  # attaches to a customer; every charge of it is declined

SUBSCRIPTION_FIELDS = """
subscription { id stripeSubscriptionId status isCreatedAtStripe atPeriodEnd canceledAt plan { id } }
errors { field code message declineCode }
"""
CREATE = f"""
mutation($input: CreateStripeSubscriptionInput!) {{
  createStripeSubscription(input: $input) {{ clientMutationId clientSecret {SUBSCRIPTION_FIELDS} }}
}}
"""
CANCEL = f"""
mutation($input: CancelStripeSubscriptionInput!) {{
  cancelStripeSubscription(input: $input) {{ {SUBSCRIPTION_FIELDS} }}
}}
"""


def subscribe(client: Client, plan, **extra) -> dict:
    plan_id = plan if isinstance(plan, str) else to_global_id("StripeSubscriptionPlan", plan.pk)
    return gql(client, CREATE, {"input": {"plan": plan_id, **extra}})["data"]["createStripeSubscription"]


def cancel(client: Client, subscription, **extra) -> dict:
    sub_id = (
        subscription if isinstance(subscription, str) else to_global_id("StripeSubscription", subscription.pk)
    )
    return gql(client, CANCEL, {"input": {"subscription": sub_id, **extra}})


def subscriptions_at_fake(fake_stripe) -> list[dict]:
    return fake_stripe.get("/v1/subscriptions", status="all")["data"]


@pytest.fixture
def subscription(customer, plan) -> StripeSubscription:
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan)
    sub.create_at_stripe()
    return sub


# --- createStripeSubscription -----------------------------------------------------------------


def test_subscribe_with_a_coupon_and_metadata(fake_stripe, customer, plan):
    StripeCoupon.objects.create(coupon_id="SUB20", duration=StripeCoupon.DURATION_FOREVER, percent_off=20)

    payload = subscribe(
        signed_in(customer.user),
        plan,
        coupon="SUB20",
        metadata=json.dumps({"ref": "x1"}),
        clientMutationId="s1",
    )

    assert payload["errors"] == [] and payload["clientMutationId"] == "s1"
    row = StripeSubscription.objects.get()
    assert (row.user, row.plan, row.coupon.coupon_id, row.customer) == (
        customer.user,
        plan,
        "SUB20",
        customer,
    )
    assert payload["subscription"] == {
        "id": to_global_id("StripeSubscription", row.pk),
        "stripeSubscriptionId": row.stripe_subscription_id,
        "status": "ACTIVE",
        "isCreatedAtStripe": True,
        "atPeriodEnd": False,
        "canceledAt": None,
        "plan": {"id": to_global_id("StripeSubscriptionPlan", plan.pk)},
    }
    [at_fake] = subscriptions_at_fake(fake_stripe)
    assert at_fake["id"] == row.stripe_subscription_id and at_fake["customer"] == customer.stripe_customer_id
    assert at_fake["metadata"] == {
        "ref": "x1",
        "subscription_uuid": str(row.uuid),
        "operation": str(StripeOperation.objects.get(kind="subscription_create").uuid),
    }
    assert at_fake["discount"]["coupon"]["id"] == "SUB20"


@pytest.mark.parametrize("deleted", [False, True], ids=["unknown", "deleted"])
def test_unknown_or_deleted_coupon_is_not_found_and_nothing_is_created(fake_stripe, customer, plan, deleted):
    if deleted:
        StripeCoupon.objects.create(
            coupon_id="GONE", duration=StripeCoupon.DURATION_ONCE, percent_off=5
        ).delete()
    fake_stripe.proxy.reset()

    payload = subscribe(signed_in(customer.user), plan, coupon="GONE")

    assert payload["subscription"] is None and codes(payload) == [("coupon", "NOT_FOUND")]
    assert not StripeSubscription.objects.exists()
    assert (
        fake_stripe.proxy.calls("POST", "/v1/subscriptions") == []
        and subscriptions_at_fake(fake_stripe) == []
    )


def test_no_active_customer_on_the_charges_api(fake_stripe, user, plan, charges_api):
    """The legacy path needs a card first; with PaymentIntents (the default) a user without a customer
    gets one and stripe.js collects the card (tests/test_graphql_subscriptions_prices.py)."""
    fake_stripe.proxy.reset()

    payload = subscribe(signed_in(user), plan)

    assert payload["subscription"] is None and codes(payload) == [(None, "NO_ACTIVE_CUSTOMER")]
    assert not StripeSubscription.objects.exists() and fake_stripe.proxy.calls() == []


def test_a_declined_first_payment_on_the_charges_api_makes_no_subscription(
    fake_stripe, user, plan, charges_api
):
    """As aa-stripe did: a first payment that fails is CARD_DECLINED and leaves nothing."""
    make_customer(fake_stripe, user, DECLINED_ON_CHARGE)

    payload = subscribe(signed_in(user), plan)

    assert payload["subscription"] is None and [e["code"] for e in payload["errors"]] == ["CARD_DECLINED"]
    assert payload["clientSecret"] is None
    assert not StripeSubscription.objects.exists()
    [sent] = [
        c for c in fake_stripe.proxy.calls("POST", "/v1/subscriptions") if c.path == "/v1/subscriptions"
    ]
    assert sent.params["payment_behavior"] == "error_if_incomplete"
    assert [s for s in subscriptions_at_fake(fake_stripe) if s["status"] != "incomplete_expired"] == []


def test_unknown_plans_and_plans_not_at_stripe_are_not_found(fake_stripe, customer, plan):
    draft = StripeSubscriptionPlan.objects.create(amount=100, name="draft", interval="month")
    client = signed_in(customer.user)

    for plan_id in [
        "nonsense",
        to_global_id("StripeSubscriptionPlan", 999),
        to_global_id("StripeCoupon", plan.pk),
    ]:
        assert codes(subscribe(client, plan_id)) == [("plan", "NOT_FOUND")]
    assert codes(subscribe(client, draft)) == [("plan", "NOT_FOUND")]  # hidden from users
    assert not StripeSubscription.objects.exists()


def test_staff_who_see_draft_plans_are_told_they_are_not_at_stripe(fake_stripe, plan):
    member = staff("carol", "view_stripesubscriptionplan")
    make_customer(fake_stripe, member)
    draft = StripeSubscriptionPlan.objects.create(amount=100, name="draft", interval="month")

    assert codes(subscribe(signed_in(member), draft)) == [("plan", "NOT_ALLOWED")]


def test_nested_metadata_is_invalid(fake_stripe, customer, plan):
    payload = subscribe(signed_in(customer.user), plan, metadata=json.dumps({"a": {"b": 1}}))

    assert codes(payload) == [("metadata", "INVALID")] and not StripeSubscription.objects.exists()


def test_a_refusal_at_stripe_leaves_no_row(fake_stripe, customer, plan):
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/subscriptions", status=402)

    payload = subscribe(signed_in(customer.user), plan)

    assert payload["subscription"] is None and [e["code"] for e in payload["errors"]] == ["CARD_DECLINED"]
    assert not StripeSubscription.objects.exists()


def test_unknown_outcome_keeps_the_row_and_asking_again_replays(fake_stripe, customer, plan):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/subscriptions")
    client = signed_in(customer.user)

    first = subscribe(client, plan, metadata=json.dumps({"ref": "r"}))

    assert codes(first) == [(None, "STRIPE_API_ERROR")]
    assert first["subscription"]["isCreatedAtStripe"] is False
    row = StripeSubscription.objects.get()
    assert row.customer == customer and len(subscriptions_at_fake(fake_stripe)) == 1  # Stripe acted

    again = subscribe(client, plan, metadata=json.dumps({"ref": "r"}))

    assert again["errors"] == [] and again["subscription"]["id"] == first["subscription"]["id"]
    [only] = subscriptions_at_fake(fake_stripe)
    row.refresh_from_db()
    assert row.stripe_subscription_id == only["id"] and StripeSubscription.objects.count() == 1
    sent, retry = fake_stripe.proxy.calls("POST", "/v1/subscriptions")
    assert sent.idempotency_key == retry.idempotency_key == f"subscription:{row.uuid}" and retry.replayed


def test_a_failure_after_stripe_acted_keeps_the_row_and_the_retry_replays(fake_stripe, customer, plan):
    """A database error on the save after Stripe's answer must not roll back the row (and its
    idempotency key): the retry then replays the same subscription instead of making a second."""
    from django.db import OperationalError
    from django.db.models.signals import pre_save

    def fail_once_after_stripe(sender, instance, **kwargs):  # the UPDATE itself fails
        if instance.is_created_at_stripe:
            pre_save.disconnect(fail_once_after_stripe, sender=StripeSubscription)
            raise OperationalError("lock timeout")

    pre_save.connect(fail_once_after_stripe, sender=StripeSubscription, weak=False)
    client = signed_in(customer.user)
    try:
        first = gql(client, CREATE, {"input": {"plan": to_global_id("StripeSubscriptionPlan", plan.pk)}})
    finally:
        pre_save.disconnect(fail_once_after_stripe, sender=StripeSubscription)
    assert first["errors"][0]["extensions"]["code"] == "INTERNAL_ERROR"
    assert StripeSubscription.objects.count() == 1  # the row survived
    # The failed recording freed the operation's claim: asking again re-sends the same request
    # at once, and Stripe replays the subscription it made.
    again = subscribe(client, plan)

    assert again["errors"] == [] and again["subscription"] is not None
    assert len(subscriptions_at_fake(fake_stripe)) == 1 and StripeSubscription.objects.count() == 1
    first_sent, retry = fake_stripe.proxy.calls("POST", "/v1/subscriptions")
    assert retry.replayed and retry.idempotency_key == first_sent.idempotency_key


def test_create_subscription_needs_a_signed_in_user(fake_stripe, plan):
    fake_stripe.proxy.reset()

    assert_denied(gql(Client(), CREATE, {"input": {"plan": "nonsense"}}), "createStripeSubscription")
    assert_denied(
        gql(Client(), CREATE, {"input": {"plan": to_global_id("StripeSubscriptionPlan", plan.pk)}}),
        "createStripeSubscription",
    )
    assert not StripeSubscription.objects.exists() and fake_stripe.proxy.calls() == []


@pytest.mark.parametrize("codenames", [(), ("add_stripesubscription",)], ids=["staff-without", "staff-with"])
def test_staff_subscribe_themselves(fake_stripe, plan, codenames):
    member = staff("carol", *codenames)
    make_customer(fake_stripe, member)

    payload = subscribe(signed_in(member), plan)

    assert payload["errors"] == [] and StripeSubscription.objects.get().user == member


# --- cancelStripeSubscription -----------------------------------------------------------------


def test_owner_cancels_at_the_period_end_by_default(fake_stripe, subscription):
    payload = cancel(signed_in(subscription.user), subscription)["data"]["cancelStripeSubscription"]

    assert payload["errors"] == []
    assert (payload["subscription"]["status"], payload["subscription"]["atPeriodEnd"]) == ("ACTIVE", True)
    subscription.refresh_from_db()
    assert subscription.at_period_end and subscription.canceled_at is not None
    at_fake = fake_stripe.get(f"/v1/subscriptions/{subscription.stripe_subscription_id}")
    assert at_fake["cancel_at_period_end"] is True and at_fake["status"] == "active"


def test_owner_cancels_now(fake_stripe, subscription):
    payload = cancel(signed_in(subscription.user), subscription, atPeriodEnd=False)

    assert payload["data"]["cancelStripeSubscription"]["subscription"]["status"] == "CANCELED"
    subscription.refresh_from_db()
    assert subscription.status == StripeSubscription.STATUS_CANCELED
    assert fake_stripe.get(f"/v1/subscriptions/{subscription.stripe_subscription_id}")["status"] == "canceled"


@pytest.mark.parametrize("at_period_end", [True, False])
def test_cancel_twice_is_not_allowed(fake_stripe, subscription, at_period_end):
    client = signed_in(subscription.user)
    cancel(client, subscription, atPeriodEnd=at_period_end)
    fake_stripe.proxy.reset()

    payload = cancel(client, subscription, atPeriodEnd=at_period_end)["data"]["cancelStripeSubscription"]

    assert codes(payload) == [("subscription", "NOT_ALLOWED")]
    assert fake_stripe.proxy.calls() == []


def test_cancel_now_after_cancel_at_period_end_is_allowed(fake_stripe, subscription):
    client = signed_in(subscription.user)
    cancel(client, subscription)

    payload = cancel(client, subscription, atPeriodEnd=False)["data"]["cancelStripeSubscription"]

    assert payload["errors"] == [] and payload["subscription"]["status"] == "CANCELED"


def test_a_subscription_not_at_stripe_cannot_be_canceled(fake_stripe, customer, plan):
    draft = StripeSubscription.objects.create(user=customer.user, plan=plan)
    fake_stripe.proxy.reset()

    payload = cancel(signed_in(customer.user), draft)["data"]["cancelStripeSubscription"]

    assert codes(payload) == [("subscription", "NOT_ALLOWED")] and fake_stripe.proxy.calls() == []


def test_another_users_subscription_is_not_found(fake_stripe, subscription, other_user):
    fake_stripe.proxy.reset()

    payload = cancel(signed_in(other_user), subscription)["data"]["cancelStripeSubscription"]

    assert payload["subscription"] is None and codes(payload) == [("subscription", "NOT_FOUND")]
    assert fake_stripe.proxy.calls() == []
    subscription.refresh_from_db()
    assert not subscription.at_period_end and subscription.status == "active"


@pytest.mark.parametrize(
    "codenames", [(), ("view_stripesubscription",)], ids=["staff-without", "staff-view-only"]
)
def test_staff_without_the_change_permission_cannot_cancel_others(fake_stripe, subscription, codenames):
    fake_stripe.proxy.reset()

    payload = cancel(signed_in(staff("carol", *codenames)), subscription)["data"]["cancelStripeSubscription"]

    assert codes(payload) == [("subscription", "NOT_FOUND")] and fake_stripe.proxy.calls() == []


def test_staff_with_the_change_permission_cancel_others(fake_stripe, subscription):
    member = staff("carol", "change_stripesubscription")

    payload = cancel(signed_in(member), subscription, atPeriodEnd=False)["data"]["cancelStripeSubscription"]

    assert payload["errors"] == [] and payload["subscription"]["status"] == "CANCELED"
    assert fake_stripe.get(f"/v1/subscriptions/{subscription.stripe_subscription_id}")["status"] == "canceled"


def test_unknown_subscription_is_not_found(fake_stripe, user):
    for sub_id in ["nonsense", to_global_id("StripeSubscription", 999)]:
        errors = cancel(signed_in(user), sub_id)["data"]["cancelStripeSubscription"]["errors"]
        assert [(e["field"], e["code"]) for e in errors] == [("subscription", "NOT_FOUND")]


def test_a_stripe_failure_returns_the_subscription_unchanged(fake_stripe, subscription):
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/subscriptions/", status=500)

    payload = cancel(signed_in(subscription.user), subscription)["data"]["cancelStripeSubscription"]

    assert codes(payload) == [(None, "STRIPE_API_ERROR")]
    assert payload["subscription"]["atPeriodEnd"] is False
    subscription.refresh_from_db()
    assert not subscription.at_period_end and subscription.canceled_at is None


def test_cancel_needs_a_signed_in_user(fake_stripe, subscription):
    fake_stripe.proxy.reset()

    assert_denied(cancel(Client(), "nonsense"), "cancelStripeSubscription")
    assert_denied(cancel(Client(), subscription), "cancelStripeSubscription")
    assert fake_stripe.proxy.calls() == []
