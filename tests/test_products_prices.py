"""Products and prices through the model methods, against the fake Stripe: created through the
operations journal (found again after a lost answer, never made twice, no transaction open while
Stripe is written), and every bad input of issue 21 refused before anything is saved or sent (or,
when only Stripe knows, refused by Stripe and reported the same way)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
import requests
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    StripeInternalError,
    StripeInvalidInput,
    StripeInvalidRequestError,
    StripeLookupKeyInUse,
    StripeMethodNotAllowed,
    StripeProductNotSellable,
)
from aa_stripe.guard import StripeWriteInTransaction, library_atomic
from aa_stripe.models import StripeOperation, StripePrice, StripeProduct

pytestmark = pytest.mark.django_db


def made_product(**fields) -> StripeProduct:
    product = StripeProduct.objects.create(**{"name": "Tea", **fields})
    product.create_at_stripe()
    return product


def new_price(product: StripeProduct | None, **fields) -> StripePrice:
    values = {"unit_amount": 1500, "currency": "usd", "recurring_interval": "month", **fields}
    return StripePrice(product=product, **values)


def prices_at_fake(fake_stripe) -> list[dict]:
    return fake_stripe.get("/v1/prices", limit=100)["data"]


def sent(fake_stripe) -> list[tuple[str, str]]:
    return [(call.method, call.path) for call in fake_stripe.proxy.requests]


def dashboard(fake_stripe, path: str, **data) -> dict:
    """A change made in Stripe's dashboard: straight at the fake, past the library and the proxy."""
    response = requests.post(
        f"{fake_stripe.direct_url}{path}",
        data=data,
        headers={"Authorization": f"Bearer {fake_stripe.api_key}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


# --- creation -----------------------------------------------------------------------------------


def test_a_product_and_its_recurring_price_are_created_at_stripe(fake_stripe):
    product = StripeProduct.objects.create(name="Tea", description="Green", metadata={"shelf": "3"})
    made = product.create_at_stripe()

    price = new_price(product, nickname="Monthly tea", lookup_key="tea-monthly", recurring_interval_count=3)
    answer = price.create_at_stripe()

    assert made["id"] == product.stripe_product_id and product.stripe_product_id.startswith("prod_")
    assert product.is_created_at_stripe and product.is_sellable and product.metadata == {"shelf": "3"}
    at_stripe = fake_stripe.get(f"/v1/prices/{price.stripe_price_id}")
    assert answer["id"] == price.stripe_price_id == at_stripe["id"]
    assert at_stripe["product"] == product.stripe_product_id
    assert at_stripe["recurring"]["interval"] == "month" and at_stripe["recurring"]["interval_count"] == 3
    assert (at_stripe["unit_amount"], at_stripe["lookup_key"]) == (1500, "tea-monthly")
    price.refresh_from_db()
    assert price.is_created_at_stripe and price.product == product and price.stripe_response == answer
    assert list(product.prices.all()) == [price]
    operations = StripeOperation.objects.order_by("id")
    assert [(op.kind, op.state) for op in operations] == [
        ("product.create", "succeeded"),
        ("price.create", "succeeded"),
    ]
    assert operations[0].key.startswith("product:create:")
    assert operations[1].key.startswith("price:create:")
    assert at_stripe["metadata"] == {"operation": str(operations[1].uuid)}  # the journal's, hidden here
    assert price.metadata == {}


def test_a_one_time_free_price(fake_stripe):
    price = new_price(made_product(), unit_amount=0, recurring_interval="")
    price.create_at_stripe()

    at_stripe = fake_stripe.get(f"/v1/prices/{price.stripe_price_id}")
    assert (at_stripe["type"], at_stripe["recurring"], at_stripe["unit_amount"]) == ("one_time", None, 0)


def test_creating_twice_is_refused(fake_stripe):
    product = made_product()
    price = new_price(product)
    price.create_at_stripe()

    for row in (product, price, StripePrice.objects.get(pk=price.pk)):
        with pytest.raises(StripeMethodNotAllowed, match="already created at Stripe"):
            row.create_at_stripe()
    assert len(prices_at_fake(fake_stripe)) == 1


@pytest.mark.django_db(transaction=True)
def test_no_transaction_is_open_while_stripe_is_written(fake_stripe, monkeypatch):
    seen = []
    original = stripe_api.call

    def observed(service, method, *ids, params=None, idempotency_key=None):
        if method not in stripe_api.READ_METHODS:
            seen.append((f"{service}.{method}", connection.in_atomic_block))
        return original(service, method, *ids, params=params, idempotency_key=idempotency_key)

    monkeypatch.setattr(stripe_api, "call", observed)
    new_price(made_product()).create_at_stripe()

    assert seen == [("products.create", False), ("prices.create", False)]


def test_a_write_inside_a_library_transaction_trips_the_guard(fake_stripe):
    product = StripeProduct.objects.create(name="Tea")
    with pytest.raises(StripeWriteInTransaction), library_atomic():
        product.create_at_stripe()
    assert fake_stripe.proxy.calls("POST") == []


# --- unknown outcomes ---------------------------------------------------------------------------


def test_a_lost_price_is_finished_on_the_same_row_with_the_same_key(fake_stripe):
    product = made_product()
    price = new_price(product)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/prices")
    with pytest.raises(StripeInternalError):
        price.create_at_stripe()
    assert price.creation_unfinished and not price.is_created_at_stripe and price.pk

    again = StripePrice.unfinished_like(new_price(product))  # the same price asked for again
    assert again == price
    again.create_at_stripe()

    first, retry = fake_stripe.proxy.calls("POST", "/v1/prices")
    assert retry.idempotency_key == first.idempotency_key and retry.replayed
    [made] = prices_at_fake(fake_stripe)
    assert StripePrice.objects.get().stripe_price_id == made["id"]
    assert StripePrice.unfinished_like(new_price(product, unit_amount=1600)) is None


def test_reconcile_finds_a_price_whose_5xx_stripe_replays(fake_stripe):
    price = new_price(made_product())
    fake_stripe.proxy.inject("status_after", method="POST", path_prefix="/v1/prices", status=500)
    with pytest.raises(StripeInternalError):
        price.create_at_stripe()

    out = StringIO()
    call_command("reconcile_stripe_operations", stdout=out, stderr=out)

    assert "1 succeeded, 0 refused, 0 still unresolved" in out.getvalue()
    assert len(fake_stripe.proxy.calls("POST", "/v1/prices")) == 1  # looked up, not sent again
    [listed] = fake_stripe.proxy.calls("GET", "/v1/prices")
    assert listed.query["product"] == price.product_id and listed.query["created[gte]"]
    price.refresh_from_db()
    assert price.is_created_at_stripe and price.stripe_price_id == prices_at_fake(fake_stripe)[0]["id"]


def test_a_product_whose_key_stripe_forgot_is_retrieved_not_made_again(fake_stripe):
    product = StripeProduct.objects.create(name="Tea")
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/products")
    with pytest.raises(StripeInternalError):
        product.create_at_stripe()
    fake_stripe.proxy.forget_keys()

    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        product.create_at_stripe()

    assert len(fake_stripe.proxy.calls("POST", "/v1/products")) == 1
    assert len(fake_stripe.proxy.calls("GET", f"/v1/products/{product.stripe_product_id}")) == 1
    assert product.is_created_at_stripe


def test_another_products_id_at_stripe_is_refused(fake_stripe):
    dashboard(fake_stripe, "/v1/products", id="prod_taken", name="Theirs")
    product = StripeProduct.objects.create(name="Ours", stripe_product_id="prod_taken")

    with pytest.raises(StripeInvalidRequestError, match="Product already exists"):
        product.create_at_stripe()

    assert not product.is_created_at_stripe and not product.creation_unfinished
    assert fake_stripe.get("/v1/products/prod_taken")["name"] == "Theirs"


# --- bad input (issue 21): refused before anything is saved or sent --------------------------------


@pytest.fixture
def tea(fake_stripe) -> StripeProduct:
    product = made_product()
    fake_stripe.proxy.reset()
    return product


def refused_locally(fake_stripe, price: StripePrice, error: type[Exception], match: str) -> Exception:
    with pytest.raises(error, match=match) as caught:
        price.create_at_stripe()
    assert price.pk is None and not StripePrice.objects.exists()  # nothing saved
    assert sent(fake_stripe) == []  # nothing sent
    assert not StripeOperation.objects.filter(kind="price.create").exists()
    return caught.value


def test_a_price_without_a_product(fake_stripe):
    error = refused_locally(fake_stripe, new_price(None), StripeInvalidInput, "needs a product")
    assert (error.field, error.kind) == ("product", "invalid")


@pytest.mark.parametrize(
    ("amount", "currency", "code"),
    [
        (-1, "usd", "min_value"),
        (100_000_000, "usd", "max_value"),  # eight digits at most
        (1_000_000_000_000, "idr", "max_value"),  # twelve in IDR
        (150, "isk", "amount_multiple"),  # whole krónur only
    ],
)
def test_a_negative_or_over_limit_amount_in_the_currency(tea, fake_stripe, amount, currency, code):
    price = new_price(tea, unit_amount=amount, currency=currency)
    error = refused_locally(fake_stripe, price, StripeInvalidInput, "amount")
    assert (error.field, error.code) == ("unit_amount", code)


def test_the_largest_amount_of_a_currency_is_taken(tea, fake_stripe):
    price = new_price(tea, unit_amount=999_999_999_999, currency="idr")
    price.create_at_stripe()
    assert price.is_created_at_stripe


@pytest.mark.parametrize(
    ("interval", "count"),
    [("month", 37), ("week", 157), ("year", 4), ("day", 1096), ("month", 0), ("fortnight", 1), ("", 2)],
)
def test_a_recurring_price_with_an_interval_stripe_refuses(tea, fake_stripe, interval, count):
    price = new_price(tea, recurring_interval=interval, recurring_interval_count=count)
    error = refused_locally(fake_stripe, price, StripeInvalidInput, "interval")
    assert error.field == "recurring_interval_count"


@pytest.mark.parametrize(("interval", "count"), [("month", 36), ("week", 156), ("year", 3), ("day", 1095)])
def test_three_years_is_the_longest_period(tea, interval, count):
    new_price(tea, recurring_interval=interval, recurring_interval_count=count).create_at_stripe()


def test_a_lookup_key_already_used_here(tea, fake_stripe):
    new_price(tea, lookup_key="tea").create_at_stripe()
    fake_stripe.proxy.reset()

    with pytest.raises(StripeLookupKeyInUse, match="lookup key") as caught:
        new_price(tea, lookup_key="tea", unit_amount=1700).create_at_stripe()
    error = caught.value
    assert (error.kind, error.field) == ("already_exists", "lookup_key")
    assert sent(fake_stripe) == [] and StripePrice.objects.count() == 1


def test_a_lookup_key_already_used_at_stripe_only(tea, fake_stripe):
    """A price made in the dashboard, not mirrored here yet: only Stripe knows the key is taken."""
    dashboard(
        fake_stripe,
        "/v1/prices",
        product=tea.stripe_product_id,
        currency="usd",
        unit_amount=5,
        lookup_key="tea",
    )
    price = new_price(tea, lookup_key="tea")

    with pytest.raises(StripeLookupKeyInUse, match="already uses that lookup key"):
        price.create_at_stripe()

    assert not price.is_created_at_stripe and not price.creation_unfinished  # refused: nothing to finish
    assert [p["lookup_key"] for p in prices_at_fake(fake_stripe)] == ["tea"]
    assert StripeOperation.objects.get(kind="price.create").state == StripeOperation.REFUSED


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"active": False}, "archived"),
        ({"is_deleted": True}, "deleted"),
        ({"is_created_at_stripe": False}, "not created at Stripe"),
    ],
)
def test_an_inactive_product(tea, fake_stripe, state, match):
    StripeProduct.objects.filter(pk=tea.pk).update(**state)
    tea.refresh_from_db()

    error = refused_locally(fake_stripe, new_price(tea), StripeProductNotSellable, match)
    assert (error.kind, error.field) == ("not_allowed", "product")


def test_an_unknown_currency(tea, fake_stripe):
    error = refused_locally(fake_stripe, new_price(tea, currency="xyz"), StripeInvalidInput, "currency")
    assert error.field == "currency"


def test_a_product_without_a_name(fake_stripe):
    product = StripeProduct(name="  ")
    with pytest.raises(StripeInvalidInput, match="needs a name"):
        product.create_at_stripe()
    assert not StripeProduct.objects.exists() and sent(fake_stripe) == []


def test_full_clean_reports_the_same_limits(tea):
    price = new_price(tea, unit_amount=100_000_000, recurring_interval_count=40)
    with pytest.raises(ValidationError) as caught:
        price.full_clean()
    assert set(caught.value.error_dict) == {"unit_amount", "recurring_interval_count"}
