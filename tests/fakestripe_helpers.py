"""Fixtures and helpers shared by the fake Stripe's tests (test_fakestripe.py, of payments,
subscriptions and invoices):
a module imports the fixtures it uses by name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from aa_stripe.testing.fakestripe.plugin import FakeStripe


@pytest.fixture
def make_client(fake_stripe: FakeStripe) -> Iterator:
    """Build StripeClients against the proxy (the secret key unless another is given, e.g. stripe.js's
    publishable one); their HTTP sessions are closed after the test."""
    http_clients: list[stripe.RequestsClient] = []

    def make(
        api_key: str = fake_stripe.api_key, *, retries: int = 0, timeout: float = 10
    ) -> stripe.StripeClient:
        http_client = stripe.RequestsClient(timeout=timeout)
        http_clients.append(http_client)
        return stripe.StripeClient(
            api_key,
            base_addresses={"api": fake_stripe.url},
            max_network_retries=retries,
            http_client=http_client,
        )

    yield make
    for http_client in http_clients:
        http_client.close()


@pytest.fixture
def client(make_client) -> stripe.StripeClient:
    return make_client()


@pytest.fixture
def customer(client: stripe.StripeClient) -> stripe.Customer:
    return client.v1.customers.create(params={"email": "jane@example.com"})


@pytest.fixture
def price(client: stripe.StripeClient) -> stripe.Price:
    return client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 1500,
            "recurring": {"interval": "month"},
            "product_data": {"name": "Tea club"},
        }
    )


def attached(client: stripe.StripeClient, customer: stripe.Customer, number: str) -> stripe.PaymentMethod:
    from tests.test_fakestripe_intents import (
        card,
    )  # here: that module imports test_fakestripe, which imports us

    return client.v1.payment_methods.attach(card(client, number).id, params={"customer": customer.id})
