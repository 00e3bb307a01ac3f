"""Shared fixtures. The fake Stripe server fixtures (``fake_stripe``, ``fault_proxy``,
``localstripe_server``) come from the ``aa_stripe.testing.fakestripe.plugin`` pytest plugin."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from aa_stripe.models import StripeCharge, StripeCustomer, StripeSubscriptionPlan, StripeWebhook
from aa_stripe.signals import webhook_pre_parse


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


@pytest.fixture
def charged(fake_stripe: Any, customer: StripeCustomer, user: Any) -> StripeCharge:
    """A 1000-cent charge of ``user``'s card made at the fake Stripe."""
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Order #1")
    charge.charge()
    return charge


@pytest.fixture
def staff_client(client: Any, db: Any) -> Any:
    """The test client logged in as a superuser (``support``), for the admin pages."""
    admin = get_user_model().objects.create_superuser(
        username="support", email="support@example.com", password="pw"
    )
    client.force_login(admin)
    return client


@pytest.fixture
def parse_counts() -> Iterator[Counter[str]]:
    """How often ``webhook_pre_parse`` was sent per event id, from any thread of this process."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def count(sender: Any, instance: StripeWebhook, **kwargs: Any) -> None:
        with lock:
            counts[instance.id] += 1

    webhook_pre_parse.connect(count, weak=False, dispatch_uid="tests.conftest.parse_counts")
    yield counts
    webhook_pre_parse.disconnect(dispatch_uid="tests.conftest.parse_counts")


# Lets a fixture see its test's outcome (request.node.rep_call), e.g. the demo browser test's
# screenshot on failure. Hooks only count in conftest.py or plugins, not in a test module.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def charges_api(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``STRIPE_CHARGE_API = "charges"``: charge with the Charges API, as aa-stripe did (the path kept
    for hosts that need it), also in commands a test runs as separate processes."""
    settings.STRIPE_CHARGE_API = "charges"
    monkeypatch.setenv("AA_STRIPE_TEST_CHARGE_API", "charges")
