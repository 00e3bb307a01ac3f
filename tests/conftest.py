"""Shared fixtures. The fake Stripe server fixtures (``fake_stripe``, ``fault_proxy``,
``localstripe_server``) come from the ``aa_stripe.testing.fakestripe.plugin`` pytest plugin."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from aa_stripe.models import StripeCustomer, StripeSubscriptionPlan


@pytest.fixture
def user(db: Any) -> Any:
    return get_user_model().objects.create_user(username="alice", email="alice@example.com", password="pw")


@pytest.fixture
def other_user(db: Any) -> Any:
    return get_user_model().objects.create_user(username="bob", email="bob@example.com", password="pw")


def make_customer(fake_stripe: Any, user: Any, number: str = "4242424242424242") -> StripeCustomer:
    """A customer created at the fake Stripe from a real stripe.js-style card token."""
    token = fake_stripe.card_token(number)
    customer = StripeCustomer.objects.create(user=user, stripe_js_response=token)
    return customer.create_at_stripe()


@pytest.fixture
def customer(fake_stripe: Any, user: Any) -> StripeCustomer:
    return make_customer(fake_stripe, user)


@pytest.fixture
def plan(fake_stripe: Any, db: Any) -> StripeSubscriptionPlan:
    plan = StripeSubscriptionPlan.objects.create(
        amount=5000,
        name="gold-basic",
        interval=StripeSubscriptionPlan.INTERVAL_MONTH,
        interval_count=3,
        source={"a": "b"},
    )
    plan.create_at_stripe()
    return plan
