"""GraphQL over HTTP against the fake Stripe: stripeProducts, stripePrices, createStripeProduct and
createStripePrice, and every bad input of issue 21 answered in the payload with nothing saved or sent.
Who may call what is in tests/test_graphql_authz.py; SQL per page in tests/test_graphql_query_counts.py."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from graphql_relay import to_global_id

from aa_stripe.models import StripeOperation, StripePrice, StripeProduct
from tests.graphql_helpers import codes, gql, make_user, signed_in, staff

pytestmark = pytest.mark.django_db

PRICE = "id stripePriceId unitAmount currency nickname lookupKey active recurring { interval intervalCount }"
CREATE_PRODUCT = """
mutation($input: CreateStripeProductInput!) {
  createStripeProduct(input: $input) {
    product { id stripeProductId name description active prices { id } } errors { field code message }
  }
}
"""
CREATE_PRICE = f"""
mutation($input: CreateStripePriceInput!) {{
  createStripePrice(input: $input) {{
    price {{ {PRICE} product {{ id name }} }} errors {{ field code message }}
  }}
}}
"""


@pytest.fixture
def merchant() -> Client:
    return signed_in(staff("merchant", "add_stripeproduct", "add_stripeprice"))


def create_product(client: Client, **values) -> dict:
    return gql(client, CREATE_PRODUCT, {"input": {"name": "Tea", **values}})["data"]["createStripeProduct"]


def create_price(client: Client, product: str, **values) -> dict:
    variables = {"input": {"product": product, "unitAmount": 1500, "currency": "usd", **values}}
    return gql(client, CREATE_PRICE, variables)["data"]["createStripePrice"]


def gid(row) -> str:
    return to_global_id(type(row).__name__, row.pk)


@pytest.fixture
def tea(fake_stripe) -> StripeProduct:
    product = StripeProduct.objects.create(name="Tea")
    product.create_at_stripe()
    fake_stripe.proxy.reset()
    return product


# --- mutations ------------------------------------------------------------------------------------


def test_staff_create_a_product_and_a_monthly_price(fake_stripe, merchant):
    made = create_product(merchant, description="Green tea", metadata=json.dumps({"shelf": "3"}))

    assert made["errors"] == []
    product = StripeProduct.objects.get()
    assert made["product"] == {
        "id": gid(product),
        "stripeProductId": product.stripe_product_id,
        "name": "Tea",
        "description": "Green tea",
        "active": True,
        "prices": [],
    }
    at_fake = fake_stripe.get(f"/v1/products/{product.stripe_product_id}")
    assert (at_fake["name"], at_fake["description"], at_fake["metadata"]["shelf"]) == (
        "Tea",
        "Green tea",
        "3",
    )

    priced = create_price(
        merchant,
        made["product"]["id"],
        currency="EUR",
        recurring={"interval": "MONTH", "intervalCount": 3},
        nickname="Quarterly",
        lookupKey="tea-quarterly",
    )

    assert priced["errors"] == []
    price = StripePrice.objects.get()
    assert priced["price"] == {
        "id": gid(price),
        "stripePriceId": price.stripe_price_id,
        "unitAmount": 1500,
        "currency": "eur",
        "nickname": "Quarterly",
        "lookupKey": "tea-quarterly",
        "active": True,
        "recurring": {"interval": "MONTH", "intervalCount": 3},
        "product": {"id": gid(product), "name": "Tea"},
    }
    at_fake = fake_stripe.get(f"/v1/prices/{price.stripe_price_id}")
    assert (at_fake["product"], at_fake["recurring"]["interval_count"]) == (product.stripe_product_id, 3)


def test_a_one_time_price_has_no_recurring(fake_stripe, merchant, tea):
    priced = create_price(merchant, gid(tea), unitAmount=0)
    assert priced["errors"] == [] and priced["price"]["recurring"] is None
    assert fake_stripe.get(f"/v1/prices/{priced['price']['stripePriceId']}")["type"] == "one_time"


def test_an_idempotency_key_replays_the_price(fake_stripe, merchant, tea):
    first = create_price(merchant, gid(tea), idempotencyKey="k-1")
    again = create_price(merchant, gid(tea), idempotencyKey="k-1")
    other = create_price(merchant, gid(tea), unitAmount=1600, idempotencyKey="k-1")

    assert again == first and StripePrice.objects.count() == 1
    assert len(fake_stripe.proxy.calls("POST", "/v1/prices")) == 1
    assert codes(other) == [("idempotencyKey", "IDEMPOTENCY_KEY_REUSED")]


def test_a_lost_answer_keeps_the_row_and_asking_again_finishes_it(fake_stripe, merchant, tea):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/prices")

    lost = create_price(merchant, gid(tea))
    again = create_price(merchant, gid(tea))

    assert codes(lost) == [(None, "STRIPE_API_ERROR")] and lost["price"]["stripePriceId"] is None
    assert again["errors"] == [] and again["price"]["id"] == lost["price"]["id"]
    assert len(fake_stripe.get("/v1/prices")["data"]) == 1
    first, retry = fake_stripe.proxy.calls("POST", "/v1/prices")
    assert retry.idempotency_key == first.idempotency_key and retry.replayed


# --- bad input (issue 21): errors in the payload, nothing saved, nothing sent ------------------------


def nothing_done(fake_stripe) -> None:
    assert not StripePrice.objects.exists()
    assert not StripeOperation.objects.filter(kind="price.create").exists()
    assert fake_stripe.proxy.calls("POST") == []


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"unitAmount": -100}, ("unitAmount", "INVALID")),
        ({"unitAmount": 100_000_000}, ("unitAmount", "INVALID")),  # over 999,999.99 USD
        ({"unitAmount": 1050, "currency": "jpy"}, None),  # ¥1,050: fine
        ({"unitAmount": 150, "currency": "isk"}, ("unitAmount", "INVALID")),  # whole krónur only
        ({"currency": "xyz"}, ("currency", "INVALID")),
        ({"recurring": {"interval": "MONTH", "intervalCount": 37}}, ("recurring", "INVALID")),
        ({"recurring": {"interval": "WEEK", "intervalCount": 157}}, ("recurring", "INVALID")),
        ({"recurring": {"interval": "YEAR", "intervalCount": 0}}, ("recurring", "INVALID")),
        ({"lookupKey": "k" * 201}, ("lookupKey", "INVALID")),
    ],
)
def test_amounts_and_intervals_stripe_refuses(fake_stripe, merchant, tea, values, error):
    payload = create_price(merchant, gid(tea), **values)

    if error is None:
        assert payload["errors"] == [] and StripePrice.objects.get().currency == "jpy"
        return
    assert codes(payload) == [error] and payload["price"] is None
    nothing_done(fake_stripe)


def test_an_interval_stripe_does_not_know_is_refused_by_the_schema(fake_stripe, merchant, tea):
    body = gql(
        merchant,
        CREATE_PRICE,
        {"input": {"product": gid(tea), "unitAmount": 5, "recurring": {"interval": "FORTNIGHT"}}},
    )
    assert body["errors"] and "FORTNIGHT" in body["errors"][0]["message"]
    nothing_done(fake_stripe)


@pytest.mark.parametrize(
    "product", ["U3RyaXBlUHJvZHVjdDo5OTk=", to_global_id("StripeCoupon", 1), "not an id", ""]
)
def test_a_price_without_a_product(fake_stripe, merchant, product):
    payload = create_price(merchant, product)
    assert codes(payload) == [("product", "NOT_FOUND")]
    nothing_done(fake_stripe)


@pytest.mark.parametrize("state", [{"active": False}, {"is_deleted": True}, {"is_created_at_stripe": False}])
def test_an_inactive_product(fake_stripe, merchant, tea, state):
    StripeProduct.objects.filter(pk=tea.pk).update(**state)

    payload = create_price(merchant, gid(tea))

    assert codes(payload) == [("product", "NOT_ALLOWED")]
    nothing_done(fake_stripe)


def test_a_lookup_key_already_used(fake_stripe, merchant, tea):
    assert create_price(merchant, gid(tea), lookupKey="tea")["errors"] == []
    fake_stripe.proxy.reset()

    here = create_price(merchant, gid(tea), lookupKey="tea", unitAmount=1600)

    assert codes(here) == [("lookupKey", "ALREADY_EXISTS")] and fake_stripe.proxy.calls("POST") == []
    # Known only to Stripe (a price made in the dashboard, not mirrored yet): Stripe refuses it.
    StripePrice.objects.all().delete()
    at_stripe = create_price(merchant, gid(tea), lookupKey="tea", unitAmount=1700)
    assert codes(at_stripe) == [("lookupKey", "ALREADY_EXISTS")] and at_stripe["price"] is None
    assert not StripePrice.objects.exists()  # refused: no row kept
    assert len(fake_stripe.proxy.calls("POST", "/v1/prices")) == 1


def test_a_product_needs_a_name(fake_stripe, merchant):
    payload = create_product(merchant, name="")
    assert codes(payload) == [("name", "REQUIRED")] and not StripeProduct.objects.exists()
    assert fake_stripe.proxy.calls("POST") == []


@pytest.mark.parametrize(
    "metadata",
    [
        {"": "empty key"},
        {"a[b]": "brackets"},  # form-encoded as a nested key: Stripe refuses it
        {"k" * 41: "long key"},
        {"long": "v" * 501},
        {f"k{i}": "v" for i in range(51)},
        {"nested": {"a": "b"}},
    ],
)
def test_metadata_stripe_refuses_is_refused_before_anything_is_sent(fake_stripe, merchant, metadata):
    payload = create_product(merchant, metadata=json.dumps(metadata))

    assert codes(payload) == [("metadata", "INVALID")] and not StripeProduct.objects.exists()
    assert fake_stripe.proxy.calls("POST") == []


def test_metadata_at_stripes_limits_is_sent(fake_stripe, merchant):
    metadata = {f"{i:02d}" + "k" * 38: "v" * 500 for i in range(50)}

    payload = create_product(merchant, metadata=json.dumps(metadata))

    assert payload["errors"] == []
    assert StripeProduct.objects.get().metadata == metadata


# --- queries --------------------------------------------------------------------------------------

LIST = """
query($active: Boolean, $product: ID, $lookupKey: String) {
  stripePrices(active: $active, product: $product, lookupKey: $lookupKey) {
    totalCount edges { node { stripePriceId lookupKey active } }
  }
}
"""


@pytest.fixture
def catalog(fake_stripe, tea) -> dict[str, StripePrice]:
    """On sale: two prices of tea, one of coffee; archived: one of tea; not at Stripe: one of tea."""
    coffee = StripeProduct.objects.create(name="Coffee")
    coffee.create_at_stripe()
    prices = {}
    for name, product, extra in (
        ("monthly", tea, {"recurring_interval": "month"}),
        ("once", tea, {}),
        ("coffee", coffee, {}),
        ("archived", tea, {"active": False}),
    ):
        price = StripePrice(product=product, unit_amount=500, currency="usd", lookup_key=name, **extra)
        price.create_at_stripe()
        prices[name] = price
    prices["draft"] = StripePrice.objects.create(product=tea, unit_amount=1, lookup_key="draft")
    return prices


def listed(client: Client, **variables) -> list[str]:
    body = gql(client, LIST, variables)
    assert "errors" not in body, body
    return sorted(edge["node"]["lookupKey"] for edge in body["data"]["stripePrices"]["edges"])


def test_anyone_sees_what_is_for_sale(client, catalog, tea):
    assert listed(client) == ["coffee", "monthly", "once"]
    assert listed(client, product=gid(tea)) == ["monthly", "once"]
    assert listed(client, lookupKey="monthly") == ["monthly"]
    assert listed(client, active=False) == [] and listed(client, active=None) == ["coffee", "monthly", "once"]
    assert listed(client, product=to_global_id("StripeCoupon", tea.pk)) == []
    assert listed(client, product="garbage") == []


def test_staff_with_view_stripeprice_may_ask_for_the_others(client, catalog):
    client.force_login(make_user("viewer", "view_stripeprice", is_staff=True))
    assert listed(client) == ["coffee", "monthly", "once"]
    assert listed(client, active=False) == ["archived", "draft"]
    assert listed(client, active=None) == ["archived", "coffee", "draft", "monthly", "once"]
    client.force_login(make_user("other_staff", "view_stripeproduct", is_staff=True))
    assert listed(client, active=False) == []


def test_products_list_their_visible_prices_newest_first(client, catalog, tea):
    query = "{ stripeProducts { edges { node { name prices { lookupKey } } } } }"
    body = gql(client, query)
    assert body["data"]["stripeProducts"]["edges"] == [
        {"node": {"name": "Coffee", "prices": [{"lookupKey": "coffee"}]}},
        {"node": {"name": "Tea", "prices": [{"lookupKey": "once"}, {"lookupKey": "monthly"}]}},
    ]
    StripeProduct.objects.filter(pk=tea.pk).update(active=False)
    assert [e["node"]["name"] for e in gql(client, query)["data"]["stripeProducts"]["edges"]] == ["Coffee"]


def test_node_finds_hidden_rows_for_staff_only(client, catalog):
    query = "query($id: ID!) { node(id: $id) { ... on StripePrice { lookupKey product { name } } } }"
    draft = {"id": gid(catalog["draft"])}
    assert gql(client, query, draft)["data"]["node"] is None
    assert gql(client, query, {"id": gid(catalog["once"])})["data"]["node"] == {
        "lookupKey": "once",
        "product": {"name": "Tea"},
    }
    client.force_login(make_user("viewer", "view_stripeprice", is_staff=True))
    assert gql(client, query, draft)["data"]["node"]["lookupKey"] == "draft"
