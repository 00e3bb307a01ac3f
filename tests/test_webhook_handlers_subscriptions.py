"""customer.subscription.*: the local StripeSubscription's status and canceled_at stay true."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeAlreadyCanceled
from aa_stripe.models import StripeSubscription
from aa_stripe.testing import make_event
from tests.stripe_fixtures import stripe_object
from tests.test_webhook_handlers import StripeCalls, deliver, deliver_again, now, sent_a_minute_ago

pytestmark = pytest.mark.django_db


def dt(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


@pytest.fixture
def subscription(fake_stripe, customer, plan) -> StripeSubscription:
    sub = StripeSubscription.objects.create(user=customer.user, plan=plan, metadata={"order": "7"})
    sub.create_at_stripe()
    return sub


def subscription_object(sub: StripeSubscription, **overrides: Any) -> dict[str, Any]:
    """Stripe's subscription (current shape) for a subscription created at the fake."""
    made = sub.stripe_response
    values = {
        "id": sub.stripe_subscription_id,
        "customer": sub.customer.stripe_customer_id,
        "created": made["created"],
        "start_date": made["created"],
        "billing_cycle_anchor": made["created"],
        "metadata": sub.metadata,
        "status": "active",
        "cancel_at_period_end": False,
        "cancel_at": None,
        "canceled_at": None,
        "ended_at": None,
    }
    return stripe_object("subscription", **{**values, **overrides})


def updated_event(data: dict[str, Any], previous: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return make_event(
        "customer.subscription.updated",
        data,
        data={"object": data, "previous_attributes": previous},
        **fields,
    )


def test_created_event_for_our_subscription_changes_nothing_but_its_time(client, fake_stripe, subscription):
    event = make_event("customer.subscription.created", subscription_object(subscription))
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, event)

    subscription.refresh_from_db()
    assert (subscription.status, subscription.canceled_at, subscription.at_period_end) == (
        "active",
        None,
        False,
    )
    assert subscription.last_event_at == dt(event["created"])
    assert stripe_calls() == []


def test_updated_to_past_due_and_to_end_at_the_period_end(client, fake_stripe, subscription):
    t0 = now()
    data = subscription_object(
        subscription, status="past_due", cancel_at_period_end=True, canceled_at=t0, cancel_at=t0 + 86400 * 90
    )
    previous = {"status": "active", "cancel_at_period_end": False, "canceled_at": None, "cancel_at": None}
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, updated_event(data, previous, created=t0))

    subscription.refresh_from_db()
    assert (subscription.status, subscription.at_period_end) == ("past_due", True)
    assert subscription.canceled_at == dt(t0)  # as at Stripe: when the cancellation was asked for
    assert subscription.stripe_response == data
    assert stripe_calls() == []
    with pytest.raises(StripeAlreadyCanceled):
        subscription.cancel(at_period_end=True)
    assert stripe_calls() == []


@pytest.mark.parametrize("with_canceled_at", [True, False])
def test_deleted_cancels_the_subscription(client, fake_stripe, subscription, with_canceled_at):
    t0 = now()
    canceled_at = t0 - 30 if with_canceled_at else None
    data = subscription_object(subscription, status="canceled", canceled_at=canceled_at, ended_at=canceled_at)
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("customer.subscription.deleted", data, created=t0))

    subscription.refresh_from_db()
    assert subscription.status == StripeSubscription.STATUS_CANCELED
    assert subscription.canceled_at == dt(canceled_at if with_canceled_at else t0)  # else the event's time
    with pytest.raises(StripeAlreadyCanceled):
        subscription.cancel()
    assert stripe_calls() == []


def test_unknown_subscriptions_are_ignored(client, fake_stripe, subscription):
    before = list(StripeSubscription.objects.values())
    data = stripe_object("subscription", id="sub_1NotMadeHere000000", status="canceled")
    stripe_calls = StripeCalls(fake_stripe)

    for action in ("created", "updated", "deleted"):
        deliver(client, make_event(f"customer.subscription.{action}", data))

    assert list(StripeSubscription.objects.values()) == before
    assert stripe_calls() == []


def test_reactivated_at_stripe_clears_canceled_at(client, fake_stripe, subscription):
    t0 = now()
    ending = subscription_object(subscription, cancel_at_period_end=True, canceled_at=t0 - 60)
    deliver(client, updated_event(ending, {"cancel_at_period_end": False, "canceled_at": None}, created=t0))
    reactivated = subscription_object(subscription)
    deliver(
        client,
        updated_event(reactivated, {"cancel_at_period_end": True, "canceled_at": t0 - 60}, created=t0 + 5),
    )

    subscription.refresh_from_db()
    assert (subscription.status, subscription.at_period_end) == ("active", False)
    assert subscription.canceled_at is None


# --- order, ties, replays -----------------------------------------------------------------------


def test_an_update_older_than_the_deletion_leaves_it_canceled(client, fake_stripe, subscription):
    t0 = now()
    canceled = subscription_object(subscription, status="canceled", canceled_at=t0 + 10, ended_at=t0 + 10)
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("customer.subscription.deleted", canceled, created=t0 + 10))
    past_due = subscription_object(subscription, status="past_due")
    deliver(client, updated_event(past_due, {"status": "active"}, created=t0 + 5))

    subscription.refresh_from_db()
    assert (subscription.status, subscription.canceled_at) == ("canceled", dt(t0 + 10))
    assert subscription.last_event_at == dt(t0 + 10)
    assert stripe_calls() == []


def test_a_tie_re_reads_the_subscription_from_stripe(client, fake_stripe, subscription):
    t0 = now()
    stripe_api.call(
        "subscriptions", "update", subscription.stripe_subscription_id, params={"cancel_at_period_end": True}
    )
    deliver(client, updated_event(subscription_object(subscription), {"metadata": {}}, created=t0))
    stripe_calls = StripeCalls(fake_stripe)

    # Same second: this event's data (cancel_at_period_end False) may be the older state.
    deliver(client, updated_event(subscription_object(subscription), {"description": None}, created=t0))

    assert stripe_calls() == [("GET", f"/v1/subscriptions/{subscription.stripe_subscription_id}")]
    subscription.refresh_from_db()
    assert (subscription.status, subscription.at_period_end) == ("active", True)
    assert subscription.stripe_response["cancel_at_period_end"] is True


def test_a_tie_on_a_deletion_re_reads_the_canceled_subscription(client, fake_stripe, subscription):
    t0 = now()
    stripe_api.call("subscriptions", "cancel", subscription.stripe_subscription_id)
    deliver(client, updated_event(subscription_object(subscription), {"metadata": {}}, created=t0))
    stripe_calls = StripeCalls(fake_stripe)

    deliver(
        client, make_event("customer.subscription.deleted", subscription_object(subscription), created=t0)
    )

    assert stripe_calls() == [("GET", f"/v1/subscriptions/{subscription.stripe_subscription_id}")]
    subscription.refresh_from_db()
    assert subscription.status == "canceled" and subscription.canceled_at is not None


def test_a_replayed_event_changes_nothing_twice(client, fake_stripe, subscription):
    # Canceled at Stripe behind the library's back, so a re-read agrees with the event.
    stripe_api.call("subscriptions", "cancel", subscription.stripe_subscription_id)
    canceled = fake_stripe.get(f"/v1/subscriptions/{subscription.stripe_subscription_id}")
    event = make_event("customer.subscription.deleted", canceled)
    deliver(client, event)
    before = StripeSubscription.objects.filter(pk=subscription.pk).values().get()
    stripe_calls = StripeCalls(fake_stripe)

    deliver_again(client, event)

    after = StripeSubscription.objects.filter(pk=subscription.pk).values().get()
    assert {**after, "updated": None} == {**before, "updated": None}
    assert before["status"] == "canceled" and stripe_calls.writes() == []


# --- events made before our own cancellation, delivered after it ---------------------------------


def test_an_older_event_cannot_make_a_subscription_we_canceled_active_again(
    client, fake_stripe, subscription
):
    made_before = now() - 1
    stale = subscription_object(subscription, metadata={"order": "8"})  # active, as it was
    subscription.cancel(at_period_end=False)
    subscription.refresh_from_db()
    assert subscription.status == "canceled"
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, updated_event(stale, {"metadata": {"order": "7"}}, created=made_before))

    subscription.refresh_from_db()
    assert subscription.status == "canceled" and subscription.canceled_at is not None
    # canceled is final at Stripe: the subscription was read from Stripe instead
    assert stripe_calls() == [("GET", f"/v1/subscriptions/{subscription.stripe_subscription_id}")]


def test_an_older_event_cannot_undo_our_cancellation_at_the_period_end(client, fake_stripe, subscription):
    made_before = now() - 1
    stale = subscription_object(subscription, metadata={"order": "8"})  # cancel_at_period_end false
    subscription.cancel(at_period_end=True)
    subscription.refresh_from_db()
    assert subscription.at_period_end

    deliver(client, updated_event(stale, {"metadata": {"order": "7"}}, created=made_before))

    subscription.refresh_from_db()
    assert subscription.at_period_end and subscription.status == "active"


def test_a_later_change_in_the_dashboard_can_undo_a_cancellation_at_the_period_end(
    client, fake_stripe, subscription
):
    subscription.cancel(at_period_end=True)
    sent_a_minute_ago()  # our cancellation was a minute ago; the dashboard takes it back now
    undone = stripe_api.call(
        "subscriptions", "update", subscription.stripe_subscription_id, params={"cancel_at_period_end": False}
    )

    deliver(client, updated_event(undone, {"cancel_at_period_end": True}, created=now()))

    subscription.refresh_from_db()
    assert not subscription.at_period_end and subscription.status == "active"
