"""The fake Stripe's catalog (aa_stripe/testing/fakestripe/catalog.py), driven by the real stripe SDK:
prices (which localstripe lacks), products' ids, lists and deletions, plan updates, and their events,
as Stripe's API reference describes them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from aa_stripe.testing.fakestripe.plugin import FakeStripe


@pytest.fixture
def client(fake_stripe: FakeStripe) -> Iterator[stripe.StripeClient]:
    http_client = stripe.RequestsClient(timeout=10)
    yield stripe.StripeClient(
        fake_stripe.api_key, base_addresses={"api": fake_stripe.url}, http_client=http_client
    )
    http_client.close()


@pytest.fixture
def tea(client: stripe.StripeClient) -> stripe.Product:
    return client.v1.products.create(params={"id": "prod_tea", "name": "Tea"})


def event_types(client: stripe.StripeClient) -> list[str]:
    return sorted(event.type for event in client.v1.events.list(params={"limit": 100}).data)


def test_prices_are_created_retrieved_updated_and_listed(client, tea):
    monthly = client.v1.prices.create(
        params={
            "product": tea.id,
            "currency": "usd",
            "unit_amount": 1500,
            "recurring": {"interval": "month", "interval_count": 3},
            "lookup_key": "tea-quarterly",
            "metadata": {"operation": "op-1"},
        }
    )
    once = client.v1.prices.create(
        params={"product_data": {"name": "Mug"}, "currency": "eur", "unit_amount": 0}
    )

    assert (
        monthly.id.startswith("price_")
        and monthly.type == "recurring"
        and monthly.recurring.interval_count == 3
    )
    assert (once.type, once.recurring, client.v1.products.retrieve(once.product).name) == (
        "one_time",
        None,
        "Mug",
    )
    assert client.v1.prices.retrieve(monthly.id).lookup_key == "tea-quarterly"
    archived = client.v1.prices.update(monthly.id, params={"active": False, "nickname": "Quarterly"})
    assert (archived.active, archived.nickname, archived.metadata["operation"]) == (
        False,
        "Quarterly",
        "op-1",
    )

    def ids(**params) -> list[str]:
        return [price.id for price in client.v1.prices.list(params={"limit": 100, **params}).data]

    assert ids() == [monthly.id, once.id]
    assert ids(product=tea.id) == [monthly.id] and ids(active=True) == [once.id]
    assert ids(lookup_keys=["tea-quarterly"]) == [monthly.id] and ids(type="one_time") == [once.id]
    assert ids(created={"gte": monthly.created}) == [monthly.id, once.id]
    assert ids(created={"gt": once.created + 10}) == []
    assert event_types(client) == [
        "price.created",
        "price.created",
        "price.updated",
        "product.created",
        "product.created",
    ]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"unit_amount": 100}, "product"),  # neither product nor product_data
        ({"product": "prod_none", "unit_amount": 100}, "product"),
        ({"product": "prod_tea", "unit_amount": -1}, "unit_amount"),
        ({"product": "prod_tea", "unit_amount": 100_000_000}, "unit_amount"),
        (
            {"product": "prod_tea", "unit_amount": 1, "recurring": {"interval": "fortnight"}},
            "recurring[interval]",
        ),
        (
            {
                "product": "prod_tea",
                "unit_amount": 1,
                "recurring": {"interval": "month", "interval_count": 37},
            },
            "recurring[interval_count]",
        ),
    ],
)
def test_prices_stripe_refuses(client, tea, params, param):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.prices.create(params={"currency": "usd", **params})
    assert caught.value.param == param and caught.value.http_status == 400
    assert client.v1.prices.list().data == []


def test_lookup_keys_are_unique_unless_transferred(client, tea):
    first = client.v1.prices.create(
        params={"product": tea.id, "currency": "usd", "unit_amount": 1, "lookup_key": "k"}
    )
    with pytest.raises(stripe.InvalidRequestError, match="already uses that lookup key") as caught:
        client.v1.prices.create(
            params={"product": tea.id, "currency": "usd", "unit_amount": 2, "lookup_key": "k"}
        )
    assert caught.value.param == "lookup_key"

    second = client.v1.prices.create(
        params={
            "product": tea.id,
            "currency": "usd",
            "unit_amount": 2,
            "lookup_key": "k",
            "transfer_lookup_key": True,
        }
    )

    assert second.lookup_key == "k" and client.v1.prices.retrieve(first.id).lookup_key is None


def test_products_take_our_ids_once_list_in_pages_and_keep_their_prices(client, tea):
    with pytest.raises(stripe.InvalidRequestError, match="already exists") as caught:
        client.v1.products.create(params={"id": "prod_tea", "name": "Another"})
    assert caught.value.code == "resource_already_exists"
    for i in range(120):
        client.v1.products.create(params={"name": f"P{i}"})
    first = client.v1.products.list(params={"limit": 100})
    rest = client.v1.products.list(params={"limit": 100, "starting_after": first.data[-1].id})
    assert (len(first.data), first.has_more, len(rest.data), rest.has_more) == (100, True, 21, False)

    client.v1.prices.create(params={"product": tea.id, "currency": "usd", "unit_amount": 1})
    with pytest.raises(stripe.InvalidRequestError, match="has one or more user-created prices"):
        client.v1.products.delete(tea.id)
    renamed = client.v1.products.update(tea.id, params={"name": "Green tea", "active": False})
    assert (renamed.name, renamed.active) == ("Green tea", False)
    assert [e.type for e in client.v1.events.list(params={"type": "product.updated"}).data] == [
        "product.updated"
    ]


def test_plans_update_what_stripe_lets_change_and_say_so(client):
    plan = client.v1.plans.create(
        params={
            "id": "plan_gold",
            "amount": 500,
            "currency": "usd",
            "interval": "month",
            "product": {"name": "Gold"},
        }
    )
    updated = client.v1.plans.update(plan.id, params={"active": False, "trial_period_days": 7})
    assert (updated.active, updated.trial_period_days) == (False, 7)
    with pytest.raises(stripe.InvalidRequestError, match="unknown parameter: amount"):
        client.v1.plans.update(plan.id, params={"amount": 600})

    client.v1.plans.delete(plan.id)

    assert {"plan.updated", "plan.deleted"} <= set(event_types(client))
