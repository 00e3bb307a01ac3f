"""refresh_prices: products, then prices, from Stripe's lists (100 per request), written in bulk."""

from __future__ import annotations

import math

import pytest
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aa_stripe.exceptions import StripeInternalError
from aa_stripe.models import StripePrice, StripeProduct
from tests.test_command_refresh import PER_PAGE, PER_RUN, Direct, run, writes

pytestmark = pytest.mark.django_db

PRODUCTS, PRICES = 120, 250


@pytest.fixture
def catalog_at_stripe(fake_stripe) -> tuple[list[dict], list[dict]]:
    """120 products, 250 prices (recurring and one-time) at the fake, made in the dashboard."""
    direct = Direct(fake_stripe)
    for i in range(PRODUCTS):
        direct.post("/v1/products", id=f"prod_{i:03d}", name=f"Product {i}")
    for i in range(PRICES):
        recurring = {"recurring[interval]": "month"} if i % 2 else {}
        direct.post(
            "/v1/prices", product=f"prod_{i % PRODUCTS:03d}", currency="usd", unit_amount=100 + i, **recurring
        )
    return list(direct.list("/v1/products")), list(direct.list("/v1/prices"))


def mirrored(model, data: dict, **changes) -> object:
    row = model(is_created_at_stripe=True)
    row.update_from_stripe_data(data, commit=False)
    for name, value in changes.items():
        setattr(row, name, value)
    return row


def query_bound() -> int:
    pages = math.ceil(PRODUCTS / 100) + math.ceil(PRICES / 100)
    return pages * PER_PAGE + 2 * PER_RUN


def test_refresh_prices_creates_updates_and_marks_deleted_in_bulk(
    fake_stripe, catalog_at_stripe, django_assert_max_num_queries
):
    products, prices = catalog_at_stripe
    StripeProduct.objects.bulk_create(
        [mirrored(StripeProduct, p) for p in products[:50]]
        + [mirrored(StripeProduct, p, name="Old name") for p in products[50:60]]
        + [mirrored(StripeProduct, {"id": "prod_gone", "name": "Gone", "active": True})]
    )
    StripePrice.objects.bulk_create(
        [mirrored(StripePrice, p) for p in prices[:100]]
        + [mirrored(StripePrice, p, unit_amount=1, active=False) for p in prices[100:120]]
        + [mirrored(StripePrice, p, is_deleted=True) for p in prices[120:125]]
        + [
            mirrored(StripePrice, {"id": f"price_gone{i}", "product": "prod_000", "active": True})
            for i in range(7)
        ]
    )

    with django_assert_max_num_queries(query_bound()):
        out = run("refresh_prices", "-v", "2")

    assert (
        "refresh_prices: 120 products at Stripe, 60 created, 10 updated, 50 unchanged, 1 marked deleted; "
        "250 prices at Stripe, 125 created, 25 updated, 100 unchanged, 7 marked deleted"
    ) in out
    assert "250 prices read from Stripe" in out
    assert len(fake_stripe.proxy.calls("GET", "/v1/products")) == math.ceil(PRODUCTS / 100)
    assert len(fake_stripe.proxy.calls("GET", "/v1/prices")) == math.ceil(PRICES / 100)
    assert all(call.query["limit"] == "100" for call in fake_stripe.proxy.calls("GET"))
    stripe_prices = {p["id"]: p for p in prices}
    for price in StripePrice.objects.filter(is_deleted=False).select_related("product"):
        data = stripe_prices[price.stripe_price_id]
        assert (price.unit_amount, price.active, price.product.stripe_product_id) == (
            data["unit_amount"],
            True,
            data["product"],
        )
        assert price.recurring_interval == ((data["recurring"] or {}).get("interval") or "")
    assert StripePrice.objects.filter(is_deleted=True).count() == 7
    assert StripeProduct.objects.get(stripe_product_id="prod_gone").is_deleted
    assert not StripeProduct.objects.filter(name="Old name").exists()


def test_refresh_prices_twice_changes_nothing(fake_stripe, catalog_at_stripe):
    run("refresh_prices")
    fake_stripe.proxy.reset()

    with CaptureQueriesContext(connection) as queries:
        out = run("refresh_prices")

    assert "120 products at Stripe, 0 created, 0 updated, 120 unchanged, 0 marked deleted" in out
    assert "250 prices at Stripe, 0 created, 0 updated, 250 unchanged, 0 marked deleted" in out
    assert writes(queries) == []


def test_rows_a_newer_webhook_wrote_and_unfinished_creations_are_left_alone(fake_stripe):
    direct = Direct(fake_stripe)
    direct.post("/v1/products", id="prod_fresh", name="From Stripe")
    StripeProduct.objects.bulk_create(
        [StripeProduct(stripe_product_id="prod_fresh", name="From a webhook", last_event_at=timezone.now())]
    )
    StripeProduct.objects.filter(stripe_product_id="prod_fresh").update(is_created_at_stripe=True)
    tea = StripeProduct.objects.create(name="Tea")
    tea.create_at_stripe()
    lost = StripePrice(product=tea, unit_amount=500, currency="usd")
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/prices")
    with pytest.raises(StripeInternalError):
        lost.create_at_stripe()

    out = run("refresh_prices")

    assert "2 products at Stripe, 0 created, 0 updated, 1 unchanged, 0 marked deleted, 1 left" in out
    assert "1 prices at Stripe, 0 created, 0 updated, 0 unchanged, 0 marked deleted, 1 left" in out
    assert StripeProduct.objects.get(stripe_product_id="prod_fresh").name == "From a webhook"
    assert StripePrice.objects.get() == lost and lost.creation_unfinished  # the journal finishes it
    lost.create_at_stripe()
    assert StripePrice.objects.get().is_created_at_stripe


def test_refresh_prices_reports_stripe_errors_and_marks_nothing_deleted(fake_stripe):
    StripePrice.objects.bulk_create(
        [mirrored(StripePrice, {"id": "price_kept", "product": "prod_x", "active": True})]
    )
    fake_stripe.proxy.inject("status", method="GET", path_prefix="/v1/prices", status=500)

    with pytest.raises(CommandError, match=r"refresh_prices: Stripe error after 0 prices .*Injected 500"):
        run("refresh_prices")

    assert not StripePrice.objects.get().is_deleted
