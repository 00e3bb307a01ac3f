"""StripeSubscription against the fake Stripe server: create, refresh, cancel, end by end_date."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    StripeAlreadyCanceled,
    StripeInternalError,
    StripeInvalidRequestError,
    StripeMethodNotAllowed,
    StripeNoActiveCustomer,
)
from aa_stripe.models import StripeCoupon, StripeOperation, StripeSubscription, StripeSubscriptionPlan
from tests.conftest import make_customer

pytestmark = pytest.mark.django_db


def at_fake(subscription: StripeSubscription) -> dict:
    return stripe_api.call("subscriptions", "retrieve", subscription.stripe_subscription_id)


def subscriptions_at_fake(fake_stripe) -> list[dict]:
    return fake_stripe.get("/v1/subscriptions", status="all")["data"]


@pytest.fixture
def subscription(customer, plan) -> StripeSubscription:
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan, metadata={"name": "test"})
    sub.create_at_stripe()
    return sub


# --- create_at_stripe -------------------------------------------------------------------------


def test_create_uses_the_users_latest_active_customer(fake_stripe, user, plan):
    make_customer(fake_stripe, user)
    latest = make_customer(fake_stripe, user)
    sub = StripeSubscription.objects.create(user=user, plan=plan, metadata={"name": "test"})

    returned = sub.create_at_stripe()

    sub.refresh_from_db()
    assert sub.customer == latest
    assert sub.is_created_at_stripe is True
    assert sub.stripe_subscription_id == returned["id"]
    assert sub.status == StripeSubscription.STATUS_ACTIVE
    assert sub.stripe_response["id"] == returned["id"]
    stripe_sub = at_fake(sub)
    assert stripe_sub["customer"] == latest.stripe_customer_id
    operation = StripeOperation.objects.get(kind="subscription_create", object_id=str(sub.pk))
    # The row's uuid and the operation's id let a lookup find it after a lost answer.
    assert stripe_sub["metadata"] == {
        "name": "test",
        "subscription_uuid": str(sub.uuid),
        "operation": str(operation.uuid),
    }
    assert operation.state == StripeOperation.SUCCEEDED and operation.stripe_id == returned["id"]
    assert stripe_sub["items"]["data"][0]["plan"]["id"] == plan.stripe_plan_id
    assert stripe_sub["status"] == "active"
    (sent,) = fake_stripe.proxy.calls("POST", "/v1/subscriptions")
    assert not any(key.startswith(("tax_percent", "discounts", "coupon")) for key in sent.params)


def test_create_with_an_explicit_customer(fake_stripe, user, plan):
    chosen = make_customer(fake_stripe, user)
    make_customer(fake_stripe, user)  # newer, but not the one asked for
    sub = StripeSubscription.objects.create(user=user, customer=chosen, plan=plan)

    sub.create_at_stripe()

    assert at_fake(sub)["customer"] == chosen.stripe_customer_id
    sub.refresh_from_db()
    assert sub.customer == chosen


def test_an_inactive_explicit_customer_falls_back_to_the_latest_active(fake_stripe, user, plan):
    active = make_customer(fake_stripe, user)
    inactive = make_customer(fake_stripe, user)  # the newest, and the one asked for, but inactive
    inactive.is_active = False
    inactive.save()
    sub = StripeSubscription.objects.create(user=user, customer=inactive, plan=plan)

    sub.create_at_stripe()

    assert at_fake(sub)["customer"] == active.stripe_customer_id


def test_create_with_a_coupon_sends_a_discount(fake_stripe, customer, plan):
    coupon = StripeCoupon.objects.create(
        coupon_id="SUB20", duration=StripeCoupon.DURATION_FOREVER, percent_off=20
    )
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan, coupon=coupon)

    returned = sub.create_at_stripe()

    (sent,) = fake_stripe.proxy.calls("POST", "/v1/subscriptions")
    assert sent.params["discounts[0][coupon]"] == "SUB20"
    assert "coupon" not in sent.params
    stripe_sub = at_fake(sub)
    assert stripe_sub["discount"]["source"]["coupon"] == "SUB20"
    assert stripe_sub["discount"]["coupon"]["percent_off"] == 20
    assert returned["discount"]["coupon"]["id"] == "SUB20"
    assert sub.stripe_response["discount"]["coupon"]["id"] == "SUB20"


def test_create_with_a_deleted_coupon_is_refused_before_calling_stripe(fake_stripe, customer, plan):
    coupon = StripeCoupon.objects.create(coupon_id="GONE", duration=StripeCoupon.DURATION_ONCE, percent_off=5)
    coupon.delete()
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan, coupon=coupon)
    fake_stripe.proxy.reset()

    with pytest.raises(StripeMethodNotAllowed, match="GONE is deleted"):
        sub.create_at_stripe()

    assert fake_stripe.proxy.calls() == []
    assert subscriptions_at_fake(fake_stripe) == []


def test_create_with_a_coupon_deleted_at_stripe_behind_our_back_is_refused(fake_stripe, customer, plan):
    coupon = StripeCoupon.objects.create(coupon_id="GONE", duration=StripeCoupon.DURATION_ONCE, percent_off=5)
    stripe_api.call("coupons", "delete", "GONE")  # e.g. in the dashboard; no webhook yet
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan, coupon=coupon)

    with pytest.raises(StripeInvalidRequestError) as excinfo:
        sub.create_at_stripe()

    assert excinfo.value.code == "resource_missing"
    assert subscriptions_at_fake(fake_stripe) == []
    sub.refresh_from_db()
    assert (sub.is_created_at_stripe, sub.stripe_subscription_id) == (False, "")


def test_no_active_customer_raises_and_sends_nothing(fake_stripe, user, plan):
    sub = StripeSubscription.objects.create(user=user, plan=plan)
    fake_stripe.proxy.reset()

    with pytest.raises(StripeNoActiveCustomer):
        sub.create_at_stripe()

    assert fake_stripe.proxy.calls() == []
    sub.refresh_from_db()
    assert (sub.is_created_at_stripe, sub.stripe_subscription_id, sub.status) == (False, "", "")


def test_customer_of_another_user_is_not_used(fake_stripe, user, other_user, plan):
    make_customer(fake_stripe, other_user)
    sub = StripeSubscription.objects.create(user=user, plan=plan)

    with pytest.raises(StripeNoActiveCustomer):
        sub.create_at_stripe()

    assert subscriptions_at_fake(fake_stripe) == []


def test_plan_not_created_at_stripe_raises(fake_stripe, customer):
    plan = StripeSubscriptionPlan.objects.create(amount=100, name="draft", interval="month")
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan)
    fake_stripe.proxy.reset()

    with pytest.raises(StripeMethodNotAllowed):
        sub.create_at_stripe()

    assert fake_stripe.proxy.calls() == []
    assert subscriptions_at_fake(fake_stripe) == []


def test_second_create_raises(fake_stripe, subscription):
    with pytest.raises(StripeMethodNotAllowed):
        subscription.create_at_stripe()

    assert len(fake_stripe.proxy.calls("POST", "/v1/subscriptions")) == 1
    assert len(subscriptions_at_fake(fake_stripe)) == 1


def test_lost_answer_on_create_then_retry_replays(fake_stripe, customer, plan):
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/subscriptions")

    with pytest.raises(StripeInternalError):
        sub.create_at_stripe()

    sub.refresh_from_db()
    assert (sub.is_created_at_stripe, sub.stripe_subscription_id) == (False, "")
    assert len(subscriptions_at_fake(fake_stripe)) == 1  # Stripe acted, we never heard

    returned = sub.create_at_stripe()

    (only,) = subscriptions_at_fake(fake_stripe)
    assert returned["id"] == only["id"] == sub.stripe_subscription_id
    first, retry = fake_stripe.proxy.calls("POST", "/v1/subscriptions")
    assert first.idempotency_key == retry.idempotency_key == f"subscription:{sub.uuid}"
    assert retry.replayed is True


# --- refresh_from_stripe ----------------------------------------------------------------------


def test_refresh_from_stripe_applies_changes_made_at_stripe(fake_stripe, subscription):
    stripe_api.call(
        "subscriptions",
        "update",
        subscription.stripe_subscription_id,
        params={"cancel_at_period_end": True},  # (the fake ignores metadata updates of subscriptions)
    )
    assert subscription.at_period_end is False

    returned = subscription.refresh_from_stripe()

    assert returned["cancel_at_period_end"] is True
    subscription.refresh_from_db()
    assert subscription.at_period_end is True
    assert subscription.status == StripeSubscription.STATUS_ACTIVE
    assert subscription.stripe_response["cancel_at_period_end"] is True


def test_refresh_from_stripe_before_create_raises(fake_stripe, customer, plan):
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan)

    with pytest.raises(StripeMethodNotAllowed):
        sub.refresh_from_stripe()

    assert fake_stripe.proxy.calls("GET", "/v1/subscriptions") == []


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_now(fake_stripe, subscription):
    before = timezone.now()

    subscription.cancel()

    subscription.refresh_from_db()
    assert subscription.status == StripeSubscription.STATUS_CANCELED
    assert subscription.canceled_at is not None
    assert subscription.canceled_at >= before.replace(microsecond=0)
    assert subscription.at_period_end is False
    assert at_fake(subscription)["status"] == "canceled"
    assert len(fake_stripe.proxy.calls("DELETE", "/v1/subscriptions")) == 1


def test_cancel_at_period_end(fake_stripe, subscription):
    subscription.cancel(at_period_end=True)

    subscription.refresh_from_db()
    assert subscription.at_period_end is True
    assert subscription.status == StripeSubscription.STATUS_ACTIVE
    assert subscription.canceled_at is not None  # as at Stripe: the time the cancellation was asked for
    stripe_sub = at_fake(subscription)
    assert stripe_sub["cancel_at_period_end"] is True
    assert stripe_sub["status"] == "active"
    assert fake_stripe.proxy.calls("DELETE", "/v1/subscriptions") == []


def test_cancel_before_create_raises(fake_stripe, customer, plan):
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan)
    fake_stripe.proxy.reset()

    with pytest.raises(StripeMethodNotAllowed):
        sub.cancel()

    assert fake_stripe.proxy.calls() == []
    sub.refresh_from_db()
    assert (sub.status, sub.canceled_at) == ("", None)


def test_cancel_twice_raises(fake_stripe, subscription):
    subscription.cancel()
    calls_before = len(fake_stripe.proxy.calls())

    with pytest.raises(StripeAlreadyCanceled):
        subscription.cancel()

    assert len(fake_stripe.proxy.calls()) == calls_before


def test_cancel_at_period_end_twice_raises(fake_stripe, subscription):
    subscription.cancel(at_period_end=True)

    with pytest.raises(StripeAlreadyCanceled):
        subscription.cancel(at_period_end=True)

    assert (
        len(fake_stripe.proxy.calls("POST", f"/v1/subscriptions/{subscription.stripe_subscription_id}")) == 1
    )


def test_cancel_now_after_cancel_at_period_end(fake_stripe, subscription):
    subscription.cancel(at_period_end=True)

    subscription.cancel()

    subscription.refresh_from_db()
    assert subscription.status == StripeSubscription.STATUS_CANCELED
    assert at_fake(subscription)["status"] == "canceled"


def test_refresh_after_reactivation_at_stripe_clears_at_period_end(fake_stripe, subscription):
    subscription.cancel(at_period_end=True)
    stripe_api.call(
        "subscriptions", "update", subscription.stripe_subscription_id, params={"cancel_at_period_end": False}
    )

    subscription.refresh_from_stripe()

    subscription.refresh_from_db()
    assert subscription.status == StripeSubscription.STATUS_ACTIVE
    assert subscription.at_period_end is False


def test_cancel_syncs_a_subscription_canceled_behind_our_back(fake_stripe, subscription):
    stripe_api.call("subscriptions", "cancel", subscription.stripe_subscription_id)
    assert subscription.status == StripeSubscription.STATUS_ACTIVE

    with pytest.raises(StripeAlreadyCanceled):
        subscription.cancel()

    subscription.refresh_from_db()
    assert subscription.status == StripeSubscription.STATUS_CANCELED
    # The fake sets ended_at but no canceled_at on a canceled subscription.
    assert subscription.canceled_at is not None
    assert len(fake_stripe.proxy.calls("DELETE", "/v1/subscriptions")) == 1  # only ours, above


# --- get_subcriptions_for_cancel / end_subscriptions -----------------------------------------


def local_subscription(user, plan, **fields) -> StripeSubscription:
    """A row as if created at Stripe (no Stripe call); for the selection queries only."""
    values = {"status": StripeSubscription.STATUS_ACTIVE, "is_created_at_stripe": True}
    return StripeSubscription.objects.create(user=user, plan=plan, **{**values, **fields})


@pytest.fixture
def draft_plan(db) -> StripeSubscriptionPlan:
    return StripeSubscriptionPlan.objects.create(amount=100, name="local", interval="month")


@pytest.mark.parametrize("method", ["get_subcriptions_for_cancel", "get_subscriptions_for_cancel"])
@time_machine.travel(datetime(2030, 5, 10, 12, 0, tzinfo=UTC), tick=False)
def test_subscriptions_for_cancel_select_by_end_date(user, draft_plan, method):
    def make(end_date, **fields):
        return local_subscription(user, draft_plan, end_date=end_date, **fields)

    yesterday = make(date(2030, 5, 9))
    today = make(date(2030, 5, 10))
    trialing = make(date(2030, 5, 1), status=StripeSubscription.STATUS_TRIAL)
    past_due = make(date(2030, 5, 1), status=StripeSubscription.STATUS_PAST_DUE)
    make(date(2030, 5, 11))  # tomorrow
    make(None)  # no end date
    make(date(2030, 5, 1), status=StripeSubscription.STATUS_CANCELED)
    make(date(2030, 5, 1), at_period_end=True)  # already ending at the period end

    selected = getattr(StripeSubscription, method)()

    assert sorted(s.pk for s in selected) == sorted([yesterday.pk, today.pk, trialing.pk, past_due.pk])


@time_machine.travel(datetime(2030, 5, 10, 23, 30, tzinfo=UTC), tick=False)
def test_subscriptions_for_cancel_look_one_hour_ahead(user, draft_plan):
    # Kept from aa-stripe: "today" is the date one hour from now, so a cron run just before
    # midnight also ends the subscriptions whose end_date is the next day.
    tomorrow = local_subscription(user, draft_plan, end_date=date(2030, 5, 11))
    local_subscription(user, draft_plan, end_date=date(2030, 5, 12))

    assert list(StripeSubscription.get_subcriptions_for_cancel()) == [tomorrow]


def test_end_subscriptions_cancels_those_past_their_end_date(fake_stripe, customer, plan):
    today = timezone.localdate()

    def make(end_date):
        sub = StripeSubscription.objects.create(user=customer.user, plan=plan, end_date=end_date)
        sub.create_at_stripe()
        return sub

    ended, ends_today, running, no_end = (
        make(today - timedelta(days=3)),
        make(today),
        make(today + timedelta(days=5)),
        make(None),
    )

    assert StripeSubscription.end_subscriptions() == 2

    for sub in (ended, ends_today, running, no_end):
        sub.refresh_from_db()
    assert [ended.status, ends_today.status] == ["canceled", "canceled"]
    assert [at_fake(ended)["status"], at_fake(ends_today)["status"]] == ["canceled", "canceled"]
    assert [running.status, no_end.status] == ["active", "active"]
    assert [at_fake(running)["status"], at_fake(no_end)["status"]] == ["active", "active"]
    assert StripeSubscription.get_subscriptions_for_cancel().count() == 0
    assert StripeSubscription.end_subscriptions() == 0


def test_end_subscriptions_at_period_end(fake_stripe, customer, plan):
    sub = StripeSubscription.objects.create(
        user=customer.user, plan=plan, end_date=timezone.localdate() - timedelta(days=1)
    )
    sub.create_at_stripe()

    assert StripeSubscription.end_subscriptions(at_period_end=True) == 1

    sub.refresh_from_db()
    assert (sub.status, sub.at_period_end) == ("active", True)
    assert at_fake(sub)["cancel_at_period_end"] is True
    # Once set to end at the period end, it is no longer selected.
    assert StripeSubscription.end_subscriptions(at_period_end=True) == 0


def test_a_customer_of_another_user_is_refused(fake_stripe, customer, other_user, plan):
    sub = StripeSubscription.objects.create(user=other_user, plan=plan, customer=customer)
    fake_stripe.proxy.reset()

    with pytest.raises(StripeMethodNotAllowed, match="another user"):
        sub.create_at_stripe()

    assert fake_stripe.proxy.calls() == []
