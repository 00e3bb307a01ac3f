"""Webhooks of the catalog: product.*, price.* and plan.updated / plan.deleted, delivered signed to
the real endpoint. Every order of arrival is in tests/test_webhook_order_matrix.py; here: what each
event does, what unknown objects leave behind (the event stored, nothing invented), and a price of
ours whose creation answer was lost."""

from __future__ import annotations

import pytest
import requests

from aa_stripe.exceptions import StripeInternalError
from aa_stripe.models import (
    StripePrice,
    StripeProduct,
    StripeSubscriptionPlan,
    StripeTombstone,
    StripeWebhook,
)
from aa_stripe.testing import make_event
from tests.graphql_helpers import gql
from tests.stripe_fixtures import stripe_object
from tests.test_webhook_handlers import StripeCalls, deliver, now

pytestmark = pytest.mark.django_db


_START = [0]


@pytest.fixture(autouse=True)
def _start_of_test() -> None:
    _START[0] = now()


def at(seconds: int) -> int:
    """``seconds`` after the test started: two calls never tie or swap by crossing a second's edge."""
    return _START[0] + seconds


def dashboard(fake_stripe, method: str, path: str, **data) -> dict:
    response = requests.request(
        method,
        f"{fake_stripe.direct_url}{path}",
        data=data,
        headers={"Authorization": f"Bearer {fake_stripe.api_key}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def price_object(**overrides) -> dict:
    return stripe_object("price", **{"id": "price_dash", "product": "prod_dash", "metadata": {}, **overrides})


def product_object(**overrides) -> dict:
    return stripe_object("product", **{"id": "prod_dash", "name": "Coffee", "metadata": {}, **overrides})


def parsed(webhook: StripeWebhook) -> bool:
    return webhook.is_parsed and webhook.parse_error == ""


# --- products and prices made in the dashboard -------------------------------------------------------


def test_a_price_made_in_the_dashboard_is_mirrored_without_inventing_its_product(client, fake_stripe):
    stripe_calls = StripeCalls(fake_stripe)

    webhook = deliver(client, make_event("price.created", price_object(nickname="Monthly"), created=at(1)))

    assert parsed(webhook)
    price = StripePrice.objects.get()
    assert (price.stripe_price_id, price.product_id, price.unit_amount, price.nickname) == (
        "price_dash",
        "prod_dash",
        2000,
        "Monthly",
    )
    assert (price.recurring_interval, price.recurring_interval_count) == ("month", 1)
    assert price.is_created_at_stripe and price.is_sellable
    assert not StripeProduct.objects.exists()  # named by id only, never made up
    assert stripe_calls() == []  # the event's own data: Stripe was not asked
    body = gql(client, "{ stripePrices { edges { node { stripePriceId product { name } } } } }")
    assert body["data"]["stripePrices"]["edges"] == [
        {"node": {"stripePriceId": "price_dash", "product": None}}
    ]

    deliver(client, make_event("product.created", product_object(), created=at(2)))

    body = gql(client, "{ stripePrices { edges { node { product { name prices { stripePriceId } } } } } }")
    [edge] = body["data"]["stripePrices"]["edges"]
    assert edge["node"]["product"] == {"name": "Coffee", "prices": [{"stripePriceId": "price_dash"}]}


def test_dashboard_changes_of_a_product_reach_its_row(client, fake_stripe):
    deliver(client, make_event("product.created", product_object(), created=at(1)))
    deliver(
        client,
        make_event("product.updated", product_object(name="Coffee beans", active=False), created=at(2)),
    )

    product = StripeProduct.objects.get()
    assert (product.name, product.active, product.is_deleted) == ("Coffee beans", False, False)

    deliver(client, make_event("product.deleted", product_object(name="Coffee beans"), created=at(3)))

    product.refresh_from_db()
    assert product.is_deleted and product.name == "Coffee beans"
    assert StripeTombstone.objects.filter(object_type="product", stripe_id="prod_dash").exists()


def test_an_archived_price_leaves_the_list_and_an_older_event_does_not_bring_it_back(client, fake_stripe):
    deliver(client, make_event("price.updated", price_object(active=False), created=at(2)))
    deliver(client, make_event("price.created", price_object(active=True), created=at(1)))  # late

    assert StripePrice.objects.get().active is False
    body = gql(client, "{ stripePrices { totalCount } }")
    assert body["data"]["stripePrices"]["totalCount"] == 0


# --- unknown objects: the event is stored, nothing is invented ---------------------------------------


def test_the_deletion_of_an_unknown_price_is_stored_and_invents_nothing(client, fake_stripe):
    stripe_calls = StripeCalls(fake_stripe)

    deleted = deliver(client, make_event("price.deleted", price_object(), created=at(2)))
    late = deliver(client, make_event("price.updated", price_object(nickname="late"), created=at(1)))

    assert parsed(deleted) and parsed(late)
    assert StripeWebhook.objects.count() == 2
    assert not StripePrice.objects.exists() and not StripeProduct.objects.exists()
    assert StripeTombstone.objects.filter(object_type="price", stripe_id="price_dash").count() == 1
    assert stripe_calls() == []


def test_an_unknown_product_deleted_leaves_only_its_tombstone(client, fake_stripe):
    webhook = deliver(client, make_event("product.deleted", product_object(), created=at(1)))

    assert parsed(webhook) and not StripeProduct.objects.exists()
    assert StripeTombstone.objects.filter(object_type="product", stripe_id="prod_dash").exists()


@pytest.mark.parametrize("event_type", ["plan.updated", "plan.deleted"])
def test_events_of_a_plan_not_made_here_are_stored_and_change_nothing(client, fake_stripe, plan, event_type):
    before = list(StripeSubscriptionPlan.objects.values())
    other = stripe_object("plan", id="plan_elsewhere", active=False)

    webhook = deliver(client, make_event(event_type, other, created=at(1)))

    assert parsed(webhook)
    assert list(StripeSubscriptionPlan.objects.values()) == before


def test_an_event_without_an_object_id_is_stored_and_ignored(client, fake_stripe):
    for event_type in ("price.updated", "product.updated", "plan.updated"):
        assert parsed(deliver(client, make_event(event_type, {"object": event_type.split(".")[0]})))
    assert not StripePrice.objects.exists() and not StripeProduct.objects.exists()


# --- plans ---------------------------------------------------------------------------------------


def test_a_plan_archived_then_deleted_in_the_dashboard_follows(client, fake_stripe, plan):
    path = f"/v1/plans/{plan.stripe_plan_id}"
    archived = dashboard(
        fake_stripe, "POST", path, active="false", trial_period_days="7", **{"metadata[tier]": "old"}
    )
    assert archived["active"] is False

    deliver(client, make_event("plan.updated", archived, created=at(1)))

    plan.refresh_from_db()
    assert (plan.active, plan.trial_period_days, plan.metadata, plan.is_deleted) == (
        False,
        7,
        {"tier": "old"},
        False,
    )
    assert gql(client, "{ stripeSubscriptionPlans { totalCount } }")["data"]["stripeSubscriptionPlans"] == {
        "totalCount": 0
    }

    dashboard(fake_stripe, "DELETE", path)
    deliver(client, make_event("plan.deleted", archived, created=at(2)))

    plan.refresh_from_db()
    assert plan.is_deleted and plan.is_created_at_stripe and plan.amount == 5000
    assert StripeTombstone.objects.filter(object_type="plan", stripe_id=plan.stripe_plan_id).exists()


# --- a price of ours whose creation answer was lost ------------------------------------------------------


def test_the_price_created_event_of_a_lost_answer_lands_on_the_waiting_row(client, fake_stripe):
    product = StripeProduct.objects.create(name="Tea")
    product.create_at_stripe()
    price = StripePrice(product=product, unit_amount=900, currency="usd", recurring_interval="week")
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/prices")
    with pytest.raises(StripeInternalError):
        price.create_at_stripe()
    [made] = fake_stripe.get("/v1/prices")["data"]

    deliver(client, make_event("price.created", made, created=at(1)))

    price.refresh_from_db()
    assert StripePrice.objects.count() == 1  # the waiting row, not a second one
    assert price.stripe_price_id == made["id"] and price.creation_unfinished
    assert not price.is_created_at_stripe  # the journal's to record
    price.create_at_stripe()  # finishes: Stripe replays its answer
    assert price.is_created_at_stripe and not price.creation_unfinished
    assert len(fake_stripe.get("/v1/prices")["data"]) == 1
