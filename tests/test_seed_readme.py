"""The code examples of aa-stripe 0.9.2's README, run against the fake Stripe server.

The examples are copied here (the project never reads the seed README). The only adaptation:
aa-stripe's ``StripeToken`` became ``StripeCustomer``, created from the stripe.js token with
``StripeCustomer.objects.create(user=..., stripe_js_response=data).create_at_stripe()``, and
charges name it as ``customer=`` instead of ``token=``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeCardError
from aa_stripe.models import StripeCharge, StripeCustomer, StripeOperation, StripeSubscription
from aa_stripe.signals import stripe_charge_card_exception, stripe_charge_succeeded

pytestmark = pytest.mark.django_db


@pytest.fixture
def received() -> Iterator[list[tuple[str, dict]]]:
    """Every charge signal sent during the test, as (signal name, keyword arguments)."""
    events: list[tuple[str, dict]] = []

    def on_succeeded(sender, **kwargs):
        events.append(("stripe_charge_succeeded", {"sender": sender, **kwargs}))

    def on_card_exception(sender, **kwargs):
        events.append(("stripe_charge_card_exception", {"sender": sender, **kwargs}))

    stripe_charge_succeeded.connect(on_succeeded)
    stripe_charge_card_exception.connect(on_card_exception)
    try:
        yield events
    finally:
        stripe_charge_succeeded.disconnect(on_succeeded)
        stripe_charge_card_exception.disconnect(on_card_exception)


def customer_from_stripe_js(fake_stripe, user, number: str = "4242424242424242") -> StripeCustomer:
    # README "Creating a token for user" / "Charging", adapted from StripeToken:
    #   customer = stripe.Customer.create(source=data["id"])  # data: the stripe.js response
    #   token = StripeToken.objects.create(user=request.user, content=data, customer_id=customer["id"])
    data = fake_stripe.card_token(number)
    customer = StripeCustomer.objects.create(user=user, stripe_js_response=data).create_at_stripe()
    return customer


def test_creating_a_customer_from_a_stripe_js_token(fake_stripe, user):
    customer = customer_from_stripe_js(fake_stripe, user)

    (sent,) = fake_stripe.proxy.calls("POST", "/v1/customers")
    assert sent.params["source"] == customer.stripe_js_response["id"]
    at_stripe = stripe_api.call("customers", "retrieve", customer.stripe_customer_id)
    assert at_stripe["default_source"] == customer.stripe_js_response["card"]["id"]
    customer.refresh_from_db()
    assert customer.is_created_at_stripe is True
    assert customer.user == user


def test_charging(fake_stripe, user, received):
    customer = customer_from_stripe_js(fake_stripe, user)

    c = StripeCharge.objects.create(
        user=user,
        customer=customer,
        amount=500,  # in cents
        description="Charge for stuff",  # sent to Stripe
        comment="Comment for internal information",
        statement_descriptor="My Company",  # sent to Stripe
    )
    c.charge()

    c.refresh_from_db()
    assert c.is_charged is True
    assert c.charge_attempt_failed is False
    at_stripe = stripe_api.call("charges", "retrieve", c.stripe_charge_id)
    assert (at_stripe["amount"], at_stripe["currency"]) == (500, "usd")
    assert at_stripe["customer"] == customer.stripe_customer_id
    assert at_stripe["description"] == "Charge for stuff"
    assert at_stripe["statement_descriptor"] == "My Company"
    assert "Comment for internal information" not in str(fake_stripe.proxy.calls("POST", "/v1/charges"))
    # "Upon successful charge also sends signal, stripe_charge_succeeded with instance as single parameter."
    assert [name for name, _ in received] == ["stripe_charge_succeeded"]
    kwargs = received[0][1]
    assert kwargs["sender"] is StripeCharge
    assert kwargs["instance"].pk == c.pk
    assert kwargs["instance"].is_charged is True
    assert set(kwargs) == {"sender", "signal", "instance"}


def test_charging_with_a_declined_card(fake_stripe, user, received):
    customer = customer_from_stripe_js(fake_stripe, user, "4000000000000341")  # attaches, then declines

    c = StripeCharge.objects.create(
        user=user,
        customer=customer,
        amount=500,
        description="Charge for stuff",
        comment="Comment for internal information",
        statement_descriptor="My Company",
    )
    result = c.charge()

    assert result is None
    c.refresh_from_db()
    assert c.charge_attempt_failed is True
    assert c.is_charged is False
    # "Signal stripe_charge_card_exception with instance and exception will be sent."
    assert [name for name, _ in received] == ["stripe_charge_card_exception"]
    kwargs = received[0][1]
    assert kwargs["sender"] is StripeCharge
    assert kwargs["instance"].pk == c.pk
    assert isinstance(kwargs["exception"], StripeCardError)
    assert kwargs["exception"].code == "card_declined"
    assert len(fake_stripe.proxy.calls("POST", "/v1/charges")) == 1


def test_subscriptions(fake_stripe, user, plan):
    customer = customer_from_stripe_js(fake_stripe, user)

    subscription = StripeSubscription.objects.create(
        customer=customer,
        user=user,
        plan=plan,
        metadata={"name": "test subscription"},
    )
    # "The newly created object is not sent to Stripe just yet."
    assert fake_stripe.proxy.calls("POST", "/v1/subscriptions") == []

    subscription_data = subscription.create_at_stripe()

    # "returns whole subscription data sent by stripe, including, in example, discounts."
    assert subscription_data["object"] == "subscription"
    assert subscription_data["id"] == subscription.stripe_subscription_id
    operation = StripeOperation.objects.get(kind="subscription_create")
    assert subscription_data["metadata"] == {  # the host's, plus the ids the journal finds it by
        "name": "test subscription",
        "subscription_uuid": str(subscription.uuid),
        "operation": str(operation.uuid),
    }
    assert subscription_data["customer"] == customer.stripe_customer_id
    assert "discount" in subscription_data

    # Utility functions
    assert subscription.refresh_from_stripe()["id"] == subscription.stripe_subscription_id
    assert list(StripeSubscription.get_subcriptions_for_cancel()) == []
    assert StripeSubscription.end_subscriptions() == 0
    subscription.cancel()
    assert subscription.status == StripeSubscription.STATUS_CANCELED
    at_stripe = stripe_api.call("subscriptions", "retrieve", subscription.stripe_subscription_id)
    assert at_stripe["status"] == "canceled"


def test_subscription_plans(fake_stripe):
    from aa_stripe.models import StripeSubscriptionPlan

    plan = StripeSubscriptionPlan.objects.create(
        source={"a": "b"},
        amount=5000,
        name="gold-basic",
        interval=StripeSubscriptionPlan.INTERVAL_MONTH,
        interval_count=3,
    )
    # "As with Subscription, the object has to be sent to stripe."
    assert fake_stripe.proxy.calls("POST", "/v1/plans") == []

    plan_data = plan.create_at_stripe()

    assert plan_data["object"] == "plan"
    assert plan_data["id"] == plan.stripe_plan_id
    assert (plan_data["amount"], plan_data["interval"], plan_data["interval_count"]) == (5000, "month", 3)
    at_stripe = stripe_api.call("plans", "retrieve", plan.stripe_plan_id)
    assert stripe_api.call("products", "retrieve", at_stripe["product"])["name"] == "gold-basic"


def test_coupons(fake_stripe, capsys):
    from aa_stripe.models import StripeCoupon

    coupon = StripeCoupon.objects.create(
        coupon_id="SALE10",
        duration=StripeCoupon.DURATION_FOREVER,
        currency="usd",
        amount_off=10,  # in dollars
    )
    # coupon was created at Stripe
    assert stripe_api.call("coupons", "retrieve", "SALE10")["amount_off"] == 1000
    coupon.delete()
    # coupon was deleted from Stripe, but the StripeCoupon object is kept
    print(coupon.is_deleted)  # True

    assert capsys.readouterr().out == "True\n"
    assert fake_stripe.get("/v1/coupons")["data"] == []
    assert StripeCoupon.objects.all_with_deleted().get(pk=coupon.pk).is_deleted is True


def test_webhook_pre_parse_connect_example():
    from aa_stripe.models import StripeWebhook, webhook_pre_parse
    from aa_stripe.testing import make_event
    from tests.stripe_fixtures import stripe_object

    calls = []

    def stripewebhook_pre_parse(sender, instance, event_type, event_model, event_action, **kwargs):
        if not instance.is_parsed:
            calls.append((sender, instance, event_type, event_model, event_action))  # parse

    webhook_pre_parse.connect(stripewebhook_pre_parse, sender=StripeWebhook)
    try:
        assert webhook_pre_parse.has_listeners(StripeWebhook)
        event = make_event("coupon.created", stripe_object("coupon", id="SEED10"))
        webhook, created = StripeWebhook.store_event(event)
        assert created and calls == []  # stored only
        webhook.parse(save=True)  # as aa-stripe's save() did: the signal arrives through parse()
        assert calls == [(StripeWebhook, webhook, "coupon.created", "coupon", "created")]
        assert StripeWebhook.objects.get(pk=event["id"]).is_parsed
    finally:
        assert webhook_pre_parse.disconnect(stripewebhook_pre_parse, sender=StripeWebhook) is True
    # Gone: a second disconnect finds nothing (has_listeners() would also see other tests' receivers).
    assert webhook_pre_parse.disconnect(stripewebhook_pre_parse, sender=StripeWebhook) is False


def test_stripe_settings_import_path(settings):
    from aa_stripe.settings import stripe_settings

    assert stripe_settings.API_KEY == django_settings.STRIPE_API_KEY == "sk_test_aa_stripe_tests"
    settings.STRIPE_API_KEY = "sk_test_other"
    assert stripe_settings.API_KEY == "sk_test_other"


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """The seed README's charging examples as aa-stripe ran them: STRIPE_CHARGE_API = "charges"
    (tests/test_payment_intents.py and README.md's own examples cover the default)."""
