"""The admin of products and prices: pages render (a price whose product is not here yet too), search,
the action creates rows at Stripe, and what Stripe has is read-only."""

from __future__ import annotations

import pytest
from django.contrib import messages
from django.urls import reverse

from aa_stripe.models import StripePrice, StripeProduct
from tests.test_admin import change_url, changelist_url, run_action

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows() -> tuple[StripeProduct, StripePrice, StripePrice]:
    product = StripeProduct.objects.create(name="Tea")
    price = StripePrice.objects.create(
        product=product,
        unit_amount=1050,
        currency="eur",
        recurring_interval="month",
        recurring_interval_count=3,
    )
    orphan = StripePrice.objects.create(  # made in the dashboard; its product's events still to come
        stripe_price_id="price_dash", product_id="prod_not_here", unit_amount=500, is_created_at_stripe=True
    )
    return product, price, orphan


def test_pages_render_and_search(staff_client, rows):
    product, price, orphan = rows
    for model, count in ((StripeProduct, 1), (StripePrice, 2)):
        response = staff_client.get(changelist_url(model))
        assert response.status_code == 200 and response.context["cl"].result_count == count
    page = staff_client.get(changelist_url(StripePrice)).content.decode()
    assert "10.50 EUR" in page and "every 3 months" in page and "prod_not_here" in page
    for obj in (product, price, orphan):
        assert staff_client.get(change_url(obj)).status_code == 200
    for model in (StripeProduct, StripePrice):
        assert staff_client.get(reverse(f"admin:aa_stripe_{model._meta.model_name}_add")).status_code == 200
    assert staff_client.get(changelist_url(StripePrice), {"q": "price_dash"}).context["cl"].result_count == 1
    assert staff_client.get(changelist_url(StripePrice), {"q": "Tea"}).context["cl"].result_count == 1


def test_the_action_creates_them_at_stripe_then_they_are_read_only(staff_client, fake_stripe, rows):
    product, price, _orphan = rows

    shown = run_action(staff_client, StripeProduct, "create_at_stripe", [product])
    shown += run_action(staff_client, StripePrice, "create_at_stripe", [price])

    assert shown == [
        (messages.SUCCESS, "Created at Stripe: 1 stripe product."),
        (messages.SUCCESS, "Created at Stripe: 1 stripe price."),
    ]
    price.refresh_from_db()
    assert (
        price.is_created_at_stripe
        and fake_stripe.get(f"/v1/prices/{price.stripe_price_id}")["unit_amount"] == 1050
    )
    form = staff_client.get(change_url(price)).context["adminform"].form
    assert "unit_amount" not in form.fields and "product" not in form.fields

    again = run_action(staff_client, StripePrice, "create_at_stripe", [price])
    assert again == [
        (
            messages.ERROR,
            f"Could not create stripe price #{price.pk} “{price}”: "
            "This stripe price is already created at Stripe.",
        )
    ]
