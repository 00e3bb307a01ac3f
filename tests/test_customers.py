"""StripeCustomer: created from a stripe.js token, kept in step with Stripe."""

from __future__ import annotations

import pytest

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeCardError, StripeInternalError, StripeMethodNotAllowed
from aa_stripe.models import StripeCustomer
from tests.conftest import make_customer
from tests.stripe_fixtures import stripe_object

pytestmark = pytest.mark.django_db


def customers_at_fake(fake_stripe) -> list[dict]:
    return fake_stripe.get("/v1/customers")["data"]


def test_create_at_stripe_from_a_token(fake_stripe, user):
    token = fake_stripe.card_token()
    customer = StripeCustomer.objects.create(user=user, stripe_js_response=token)

    assert customer.create_at_stripe() is customer

    customer.refresh_from_db()
    assert customer.is_created_at_stripe and customer.is_active
    assert customer.stripe_customer_id.startswith("cus_")
    [card] = customer.sources
    assert card["last4"] == "4242" and customer.default_source == card["id"]
    assert customer.default_source_data == card
    [sent] = fake_stripe.proxy.calls("POST", "/v1/customers")
    assert sent.idempotency_key == f"customer:create:{token['id']}"
    assert sent.params["description"] == f"alice id: {user.pk}"
    assert [c["id"] for c in customers_at_fake(fake_stripe)] == [customer.stripe_customer_id]


def test_creating_twice_is_refused_and_without_a_token_makes_a_customer_without_cards(
    fake_stripe, user, customer
):
    with pytest.raises(StripeMethodNotAllowed):
        customer.create_at_stripe()
    assert len(fake_stripe.proxy.calls("POST", "/v1/customers")) == 1

    cardless = StripeCustomer.objects.create(user=user)
    cardless.create_at_stripe()  # for SetupIntents: cards are saved later

    cardless.refresh_from_db()
    assert cardless.is_created_at_stripe and cardless.stripe_customer_id.startswith("cus_")
    assert (cardless.sources, cardless.default_source, cardless.default_payment_method_id) == ([], "", "")
    second = fake_stripe.proxy.calls("POST", "/v1/customers")[1]
    assert "source" not in second.params
    assert second.idempotency_key.startswith(f"customer:create:row:{cardless.pk}:")
    with pytest.raises(StripeMethodNotAllowed):
        cardless.create_at_stripe()


def test_declined_card_leaves_no_customer_at_stripe(fake_stripe, user):
    customer = StripeCustomer(user=user, stripe_js_response=fake_stripe.card_token("4000000000000002"))

    with pytest.raises(StripeCardError) as raised:
        customer.create_at_stripe()

    assert raised.value.code == "card_declined"
    assert customer.pk is None and not StripeCustomer.objects.exists()
    assert StripeCustomer.get_latest_active_customer_for_user(user) is None


def test_lost_answer_on_create_replays_the_same_customer(fake_stripe, user):
    customer = StripeCustomer.objects.create(user=user, stripe_js_response=fake_stripe.card_token())
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/customers")

    with pytest.raises(StripeInternalError):
        customer.create_at_stripe()
    customer.refresh_from_db()
    assert not customer.is_created_at_stripe
    customer.create_at_stripe()

    assert len(customers_at_fake(fake_stripe)) == 1
    assert customers_at_fake(fake_stripe)[0]["id"] == customer.stripe_customer_id


def test_latest_active_customer_skips_inactive_and_uncreated_ones(fake_stripe, user, other_user):
    older = make_customer(fake_stripe, user)
    newer = make_customer(fake_stripe, user)
    StripeCustomer.objects.create(user=user)  # not created at Stripe
    make_customer(fake_stripe, other_user)

    assert StripeCustomer.get_latest_active_customer_for_user(user) == newer
    newer.is_active = False
    newer.save()
    assert StripeCustomer.get_latest_active_customer_for_user(user) == older


def test_change_description(fake_stripe, customer):
    customer.change_description("VIP customer")
    assert fake_stripe.get(f"/v1/customers/{customer.stripe_customer_id}")["description"] == "VIP customer"


def test_add_new_source_makes_it_the_default(fake_stripe, customer):
    token = fake_stripe.card_token("5555555555554444")

    customer.add_new_source(token["id"], stripe_js_response=token)

    customer.refresh_from_db()
    # Stripe replaces the old default card when ``source`` is updated.
    assert [card["last4"] for card in customer.sources] == ["4444"]
    assert customer.default_source_data["last4"] == "4444"
    assert customer.stripe_js_response["id"] == token["id"]


def test_refresh_from_stripe_picks_up_changes_made_elsewhere(fake_stripe, customer):
    token = fake_stripe.card_token("5555555555554444")
    # A change made behind our back (dashboard, another service): straight at the fake.
    stripe_api.call("customers", "update", customer.stripe_customer_id, params={"source": token["id"]})

    returned = customer.refresh_from_stripe()

    customer.refresh_from_db()
    assert returned["id"] == customer.stripe_customer_id
    assert customer.default_source_data["last4"] == "4444"


def test_retrieve_from_stripe_returns_plain_json_data(fake_stripe, customer):
    data = customer.retrieve_from_stripe()
    assert type(data) is dict and data["id"] == customer.stripe_customer_id
    assert type(data["sources"]["data"][0]) is dict


def test_current_api_shape_without_sources_is_tolerated(customer):
    """Newer API versions omit ``sources`` unless expanded, and ``default_source`` may be null."""
    before = customer.sources
    customer.update_from_stripe_data(stripe_object("customer", id=customer.stripe_customer_id))

    customer.refresh_from_db()
    assert customer.sources == before
    assert customer.default_source == "" and customer.default_source_data is None
    assert customer.is_active


def test_deleted_customer_becomes_inactive(fake_stripe, customer):
    stripe_api.call("customers", "delete", customer.stripe_customer_id)

    try:
        customer.refresh_from_stripe()
    except Exception as err:  # the fake answers 404 for deleted customers, Stripe a deleted object
        assert getattr(err, "code", None) == "resource_missing"

    customer.refresh_from_db()
    assert not customer.is_active
    assert StripeCustomer.get_latest_active_customer_for_user(customer.user) is None
