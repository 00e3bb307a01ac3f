"""Subscriptions to prices over GraphQL (issue 21): createStripeSubscription with price, paymentMethod and
idempotencyKey, its payload's clientSecret and AUTHENTICATION_REQUIRED, and StripeSubscription's price,
billing period and clientSecret.

Every request is GraphQL over HTTP against the fake Stripe through the real SDK. What stripe.js does in
the browser (pass 3-D Secure for the first invoice) is done with direct requests to the fake, never
through our server. The model side is in ``test_subscriptions_prices``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from graphql_relay import to_global_id

from aa_stripe.models import (
    StripeCustomer,
    StripePaymentMethod,
    StripePrice,
    StripeProduct,
    StripeRequestKey,
    StripeSubscription,
    StripeSubscriptionPlan,
)
from tests.graphql_helpers import codes, gql, signed_in, staff
from tests.test_payment_intents import _post, set_up_card
from tests.test_payment_methods import saved_card

pytestmark = pytest.mark.django_db

PLAIN = "4242424242424242"
ALWAYS_AUTHENTICATE = "4000002760003184"

PRICE = "id stripePriceId currency active recurring { interval intervalCount } product { id name }"
SUBSCRIPTION = (
    f"id stripeSubscriptionId status isCreatedAtStripe plan {{ id }} price {{ {PRICE} }} "
    "currentPeriodStart currentPeriodEnd trialEnd clientSecret"
)
CREATE = f"""
mutation($input: CreateStripeSubscriptionInput!) {{
  createStripeSubscription(input: $input) {{
    subscription {{ {SUBSCRIPTION} }}
    clientSecret
    errors {{ field code message declineCode }}
    clientMutationId
  }}
}}
"""
NODE = f"query($id: ID!) {{ node(id: $id) {{ ... on StripeSubscription {{ {SUBSCRIPTION} }} }} }}"
LIST = f"{{ stripeSubscriptions {{ edges {{ node {{ {SUBSCRIPTION} }} }} }} }}"
WAITS_MESSAGE = (
    "The first payment waits for the customer (authentication, or another card): "
    "confirm it with clientSecret."
)


# --- the world ------------------------------------------------------------------------------------------


@pytest.fixture
def product(fake_stripe: Any) -> StripeProduct:
    product = StripeProduct.objects.create(name="Tea club")
    product.create_at_stripe()
    return product


def made_price(product: StripeProduct, **fields: Any) -> StripePrice:
    values = {"unit_amount": 1500, "currency": "usd", "recurring_interval": "month", **fields}
    price = StripePrice(product=product, **values)
    price.create_at_stripe()
    return price


@pytest.fixture
def monthly(product: StripeProduct) -> StripePrice:
    return made_price(product)


@pytest.fixture
def cardless(fake_stripe: Any, user: Any) -> StripeCustomer:
    return StripeCustomer.get_or_create_for_user(user)


def gid(row: Any) -> str:
    names = {
        StripePrice: "StripePrice",
        StripePaymentMethod: "StripePaymentMethod",
        StripeSubscription: "StripeSubscription",
    }
    return to_global_id(names.get(type(row), "StripeSubscriptionPlan"), row.pk)


def subscribe(client: Client, **values: Any) -> dict[str, Any]:
    body = gql(client, CREATE, {"input": values})
    assert "errors" not in body, body
    return body["data"]["createStripeSubscription"]


def creations(fake_stripe: Any) -> list[Any]:
    return [
        call
        for call in fake_stripe.proxy.calls("POST", "/v1/subscriptions")
        if call.path == "/v1/subscriptions"
    ]


def subscriptions_at_fake(fake_stripe: Any) -> list[dict[str, Any]]:
    return fake_stripe.get("/v1/subscriptions", status="all", limit=100)["data"]


def authenticate(fake_stripe: Any, secret: str) -> None:
    """The customer passes 3-D Secure in stripe.js's dialog for the first invoice. The fake's
    confirmation secrets are its PaymentIntents' client secrets, ``<pi id>_secret_<x>``."""
    intent = secret.split("_secret_")[0]
    response = _post(
        fake_stripe,
        f"/v1/payment_intents/{intent}/_authenticate",
        {"client_secret": secret, "success": "true"},
    )
    assert response.ok, response.text


def node(client: Client, row: StripeSubscription) -> dict[str, Any] | None:
    body = gql(client, NODE, {"id": gid(row)})
    assert "errors" not in body, body
    return body["data"]["node"]


# --- paying at once, or waiting for the customer ----------------------------------------------------------


def test_a_saved_card_pays_at_once_and_the_subscription_is_to_the_price(fake_stripe, user, cardless, monthly):
    method = set_up_card(fake_stripe, cardless, PLAIN)

    payload = subscribe(signed_in(user), price=gid(monthly), clientMutationId="p1")

    assert payload["errors"] == [] and payload["clientMutationId"] == "p1"
    row = StripeSubscription.objects.get()
    assert (row.user, row.price, row.plan, row.customer, row.status) == (
        user,
        monthly,
        None,
        cardless,
        "active",
    )
    assert row.default_payment_method == method
    sub = payload["subscription"]
    assert (sub["status"], sub["plan"], sub["clientSecret"], payload["clientSecret"]) == (
        "ACTIVE",
        None,
        None,
        None,
    )
    assert sub["price"] == {
        "id": gid(monthly),
        "stripePriceId": monthly.stripe_price_id,
        "currency": "usd",
        "active": True,
        "recurring": {"interval": "MONTH", "intervalCount": 1},
        "product": {"id": to_global_id("StripeProduct", monthly.product.pk), "name": "Tea club"},
    }
    assert sub["currentPeriodStart"] and sub["currentPeriodEnd"] > sub["currentPeriodStart"]
    assert sub["trialEnd"] is None
    [at_fake] = subscriptions_at_fake(fake_stripe)
    assert at_fake["id"] == row.stripe_subscription_id == sub["stripeSubscriptionId"]
    assert at_fake["items"]["data"][0]["price"]["id"] == monthly.stripe_price_id


def test_the_owner_still_sees_the_price_once_it_is_archived(fake_stripe, user, cardless, monthly):
    set_up_card(fake_stripe, cardless, PLAIN)
    owner = signed_in(user)
    subscribe(owner, price=gid(monthly))
    StripePrice.objects.filter(pk=monthly.pk).update(active=False)  # archived (its event arrived)

    body = gql(owner, LIST)

    [edge] = body["data"]["stripeSubscriptions"]["edges"]
    assert edge["node"]["price"]["id"] == gid(monthly) and edge["node"]["price"]["active"] is False


def test_a_card_that_asks_returns_the_subscription_incomplete_with_its_secret(
    fake_stripe, user, cardless, monthly
):
    set_up_card(fake_stripe, cardless, ALWAYS_AUTHENTICATE)
    owner = signed_in(user)

    payload = subscribe(owner, price=gid(monthly))

    assert payload["errors"] == [
        {"field": None, "code": "AUTHENTICATION_REQUIRED", "message": WAITS_MESSAGE, "declineCode": None}
    ]
    sub = payload["subscription"]
    secret = payload["clientSecret"]
    assert sub["status"] == "INCOMPLETE" and secret and "_secret_" in secret
    assert sub["clientSecret"] == secret
    row = StripeSubscription.objects.get()
    assert row.status == StripeSubscription.STATUS_INCOMPLETE and secret not in str(row.stripe_response)

    authenticate(fake_stripe, secret)  # stripe.js: confirmCardPayment(clientSecret), 3-D Secure passed
    row.refresh_from_stripe()

    after = node(owner, row)
    assert (after["status"], after["clientSecret"]) == ("ACTIVE", None)
    assert [s["id"] for s in subscriptions_at_fake(fake_stripe)] == [row.stripe_subscription_id]
    assert len(creations(fake_stripe)) == 1


def test_without_any_card_stripe_js_collects_one(fake_stripe, user, monthly):
    """INCOMPLETE with the secret, and an error all the same: a client written before clientSecret
    existed must not show an unpaid subscription as done."""
    assert not StripeCustomer.objects.filter(user=user).exists()

    payload = subscribe(signed_in(user), price=gid(monthly))

    [error] = payload["errors"]
    assert (error["code"], error["field"]) == ("AUTHENTICATION_REQUIRED", None) and "card" in error["message"]
    assert payload["subscription"]["status"] == "INCOMPLETE"
    assert payload["clientSecret"] and payload["subscription"]["clientSecret"] == payload["clientSecret"]
    customer = StripeCustomer.objects.get(user=user)
    assert customer.is_created_at_stripe and StripeSubscription.objects.get().customer == customer
    [sent] = creations(fake_stripe)
    assert sent.params["payment_behavior"] == "default_incomplete"


def test_a_chosen_payment_method_pays(fake_stripe, user, cardless, monthly):
    default = set_up_card(fake_stripe, cardless, PLAIN)
    other = saved_card(fake_stripe, cardless, "5555555555554444")

    payload = subscribe(signed_in(user), price=gid(monthly), paymentMethod=gid(other))

    assert payload["errors"] == [] and payload["subscription"]["status"] == "ACTIVE"
    row = StripeSubscription.objects.get()
    assert row.default_payment_method == other.stripe_payment_method_id
    [sent] = creations(fake_stripe)
    assert sent.params["default_payment_method"] == other.stripe_payment_method_id
    cardless.refresh_from_db()
    assert cardless.default_payment_method == default


# --- refused before anything is sent ------------------------------------------------------------------


def assert_nothing_made(fake_stripe: Any) -> None:
    assert creations(fake_stripe) == [] and subscriptions_at_fake(fake_stripe) == []
    assert not StripeSubscription.objects.exists()


def test_a_payment_method_of_another_user_is_not_found(fake_stripe, user, other_user, cardless, monthly):
    set_up_card(fake_stripe, cardless, PLAIN)
    theirs = saved_card(fake_stripe, StripeCustomer.get_or_create_for_user(other_user))

    for method_id in [gid(theirs), "nonsense", to_global_id("StripePaymentMethod", 999)]:
        payload = subscribe(signed_in(user), price=gid(monthly), paymentMethod=method_id)
        assert payload["subscription"] is None and codes(payload) == [("paymentMethod", "NOT_FOUND")]
    assert_nothing_made(fake_stripe)


def test_an_expired_payment_method_is_invalid(fake_stripe, user, cardless, monthly):
    card = saved_card(fake_stripe, cardless)
    StripePaymentMethod.objects.filter(pk=card.pk).update(card_exp_year=2020)

    payload = subscribe(signed_in(user), price=gid(monthly), paymentMethod=gid(card))

    assert codes(payload) == [("paymentMethod", "INVALID")]
    assert_nothing_made(fake_stripe)


def test_a_payment_method_of_a_replaced_customer_is_invalid(fake_stripe, user, cardless, monthly):
    card = saved_card(fake_stripe, cardless)
    StripeCustomer.objects.filter(pk=cardless.pk).update(is_active=False)  # replaced by a newer one

    payload = subscribe(signed_in(user), price=gid(monthly), paymentMethod=gid(card))

    assert codes(payload) == [("paymentMethod", "INVALID")]
    assert_nothing_made(fake_stripe)


def test_unknown_prices_are_not_found(fake_stripe, user, cardless, monthly):
    set_up_card(fake_stripe, cardless, PLAIN)
    client = signed_in(user)

    for price_id in [
        "nonsense",
        to_global_id("StripePrice", 999),
        to_global_id("StripeProduct", monthly.pk),  # another type's id
        to_global_id("StripeSubscriptionPlan", monthly.pk),
    ]:
        payload = subscribe(client, price=price_id)
        assert payload["subscription"] is None and codes(payload) == [("price", "NOT_FOUND")], price_id
    assert_nothing_made(fake_stripe)


@pytest.mark.parametrize(
    "change",
    [{"active": False}, {"is_deleted": True}, {"recurring_interval": "", "recurring_interval_count": None}],
    ids=["archived", "deleted", "one-time"],
)
def test_a_price_that_cannot_be_subscribed_to_is_invalid(fake_stripe, user, cardless, monthly, change):
    """Found among every price (not only those for sale): the domain says why (INVALID), not NOT_FOUND."""
    set_up_card(fake_stripe, cardless, PLAIN)
    StripePrice.objects.filter(pk=monthly.pk).update(**change)

    payload = subscribe(signed_in(user), price=gid(monthly))

    assert payload["subscription"] is None and codes(payload) == [("price", "INVALID")]
    assert_nothing_made(fake_stripe)


def test_a_price_in_another_currency_than_the_running_subscription_is_invalid(
    fake_stripe, user, cardless, product
):
    set_up_card(fake_stripe, cardless, PLAIN)
    client = signed_in(user)
    assert subscribe(client, price=gid(made_price(product, currency="usd")))["errors"] == []
    in_euros = made_price(product, currency="eur")

    payload = subscribe(client, price=gid(in_euros))

    assert payload["subscription"] is None and codes(payload) == [("price", "INVALID")]
    assert "usd" in payload["errors"][0]["message"]
    assert len(creations(fake_stripe)) == 1 and StripeSubscription.objects.count() == 1


def test_neither_or_both_of_price_and_plan(fake_stripe, user, cardless, monthly, plan):
    set_up_card(fake_stripe, cardless, PLAIN)
    client = signed_in(user)

    assert codes(subscribe(client)) == [("price", "REQUIRED")]
    assert codes(subscribe(client, metadata=json.dumps({"a": "b"}))) == [("price", "REQUIRED")]
    assert codes(subscribe(client, price=gid(monthly), plan=gid(plan))) == [("price", "INVALID")]
    assert_nothing_made(fake_stripe)


# --- the old API keeps working -------------------------------------------------------------------------


def test_subscribing_to_a_plan_still_works_and_returns_the_plan(fake_stripe, customer, plan):
    payload = subscribe(signed_in(customer.user), plan=gid(plan))

    assert payload["errors"] == [] and payload["clientSecret"] is None
    sub = payload["subscription"]
    assert (sub["status"], sub["plan"], sub["price"]) == ("ACTIVE", {"id": gid(plan)}, None)
    row = StripeSubscription.objects.get()
    assert (row.plan, row.price) == (plan, None)
    [sent] = creations(fake_stripe)
    assert sent.params["items[0][plan]"] == plan.stripe_plan_id and "items[0][price]" not in sent.params


# --- who sees the client secret ---------------------------------------------------------------------------


def test_the_client_secret_is_the_owners_only_and_only_while_waiting(fake_stripe, user, cardless, product):
    set_up_card(fake_stripe, cardless, ALWAYS_AUTHENTICATE)
    owner = signed_in(user)
    subscribe(owner, price=gid(made_price(product)))
    waiting = StripeSubscription.objects.get()
    viewer = signed_in(staff("carol", "view_stripesubscription", "view_stripecustomer"))
    fake_stripe.proxy.reset()

    seen_by_staff = node(viewer, waiting)
    listed_by_staff = gql(viewer, LIST)["data"]["stripeSubscriptions"]["edges"]

    assert seen_by_staff["status"] == "INCOMPLETE" and seen_by_staff["clientSecret"] is None
    assert [edge["node"]["clientSecret"] for edge in listed_by_staff] == [None]
    assert fake_stripe.proxy.calls() == []  # not even read from Stripe for staff
    assert node(owner, waiting)["clientSecret"]

    set_up_card(fake_stripe, cardless, PLAIN)  # another card, the new default: the next one is paid
    StripeSubscription.objects.filter(pk=waiting.pk).update(status="incomplete_expired")
    paid = subscribe(owner, price=gid(made_price(product)))
    fake_stripe.proxy.reset()

    assert paid["errors"] == [] and paid["subscription"]["status"] == "ACTIVE"
    statuses = {
        e["node"]["status"]: e["node"]["clientSecret"]
        for e in gql(owner, LIST)["data"]["stripeSubscriptions"]["edges"]
    }
    assert statuses == {"ACTIVE": None, "INCOMPLETE_EXPIRED": None}
    assert fake_stripe.proxy.calls() == []  # nothing waits: nothing read from Stripe


# --- idempotencyKey ---------------------------------------------------------------------------------------


def test_a_replay_returns_the_same_subscription_and_reads_its_secret_again(
    fake_stripe, user, cardless, monthly
):
    set_up_card(fake_stripe, cardless, ALWAYS_AUTHENTICATE)
    owner = signed_in(user)

    first = subscribe(owner, price=gid(monthly), idempotencyKey="sub-1")
    again = subscribe(owner, price=gid(monthly), idempotencyKey="sub-1")

    assert codes(first) == codes(again) == [(None, "AUTHENTICATION_REQUIRED")]
    assert again["subscription"]["id"] == first["subscription"]["id"]
    secret = first["clientSecret"]
    assert secret and again["clientSecret"] == secret == again["subscription"]["clientSecret"]
    assert len(creations(fake_stripe)) == 1 and len(subscriptions_at_fake(fake_stripe)) == 1
    assert StripeSubscription.objects.count() == 1
    [key] = StripeRequestKey.objects.values()
    assert secret not in str(key) and "_secret_" not in str(key)  # recomputed, never stored


def test_a_legacy_plan_still_needs_a_card_on_file(fake_stripe, user):
    """As with aa-stripe: subscribing to a plan without a card is NO_ACTIVE_CUSTOMER, nothing made
    (only subscriptions to prices let stripe.js collect the card)."""
    trial = StripeSubscriptionPlan.objects.create(
        amount=900, name="trial", interval=StripeSubscriptionPlan.INTERVAL_MONTH, trial_period_days=14
    )
    trial.create_at_stripe()

    payload = subscribe(signed_in(user), plan=gid(trial))

    assert codes(payload) == [(None, "NO_ACTIVE_CUSTOMER")] and payload["subscription"] is None
    assert not StripeSubscription.objects.exists() and creations(fake_stripe) == []


def test_a_trial_without_a_card_shows_its_owner_the_setup_intent_secret(fake_stripe, user, monthly):
    """Nothing to pay now: the secret is the trial's SetupIntent's (stripe.js confirmCardSetup)."""
    row = StripeSubscription.subscribe(user, price=monthly, trial_period_days=14)

    sub = node(signed_in(user), row)

    assert sub["status"] == "TRIALING" and sub["trialEnd"] is not None
    assert sub["clientSecret"].startswith("seti_")
    assert sub["clientSecret"] not in str(StripeSubscription.objects.get().stripe_response)
