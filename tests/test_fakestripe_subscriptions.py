"""The fake Stripe's subscriptions (aa_stripe/testing/fakestripe/subscriptions.py), driven by the real stripe
SDK: prices as items, billing periods on items, the three payment behaviours of the first invoice (paid,
authentication asked, passed and failed, declined), the invoice's confirmation_secret, trials and their
pending SetupIntent, updates, expiry, and the events Stripe sends meanwhile.

Cards (https://docs.stripe.com/testing): 4242424242424242 pays; 4000002760003184 asks for authentication
every time; 4000002500003155 asks unless set up for off-session use; 4000000000000341 attaches, then is
declined."""

from __future__ import annotations

import time
from typing import Any

import pytest
import stripe

from tests import fakestripe_helpers
from tests.fakestripe_helpers import attached
from tests.test_fakestripe_intents import card, count_events
from tests.test_fakestripe_payment_intents import saved_through_setup_intent

# The shared fixtures (pytest finds them under these names).
make_client = fakestripe_helpers.make_client
client = fakestripe_helpers.client
customer = fakestripe_helpers.customer
price = fakestripe_helpers.price

PAYS = "4242424242424242"
ALWAYS_ASKS = "4000002760003184"
UNLESS_SET_UP = "4000002500003155"
DECLINED_WHEN_CHARGED = "4000000000000341"
EXPAND = ["latest_invoice.confirmation_secret", "pending_setup_intent"]
DAY = 86400


def as_default(client: stripe.StripeClient, customer: stripe.Customer, number: str) -> stripe.PaymentMethod:
    pm = attached(client, customer, number)
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    return pm


def subscribe(
    client: stripe.StripeClient, customer: stripe.Customer, item: dict[str, Any], **extra: Any
) -> Any:
    """What the library sends."""
    return client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [item],
            "metadata": {"subscription": "42"},
            "payment_settings": {"save_default_payment_method": "on_subscription"},
            "expand": EXPAND,
            **extra,
        }
    )


def intent_of(client: stripe.StripeClient, subscription: Any) -> stripe.PaymentIntent:
    """The first invoice's PaymentIntent, found from the confirmation secret as stripe.js does."""
    secret = subscription.latest_invoice.confirmation_secret.client_secret
    return client.v1.payment_intents.retrieve(secret.split("_secret_")[0])


def authenticate(client: stripe.StripeClient, intent: stripe.PaymentIntent, success: str) -> Any:
    return client.raw_request(
        "post",
        f"/v1/payment_intents/{intent.id}/_authenticate?client_secret={intent.client_secret}&success={success}",
    )


def retrieved(client: stripe.StripeClient, subscription: Any) -> Any:
    return client.v1.subscriptions.retrieve(subscription.id, params={"expand": EXPAND})


def last_event(client: stripe.StripeClient, type_: str) -> stripe.Event:
    events = client.v1.events.list(params={"type": type_, "limit": 100}).data
    return max(events, key=lambda event: event.created)


def error_of(caught: pytest.ExceptionInfo) -> dict[str, Any]:
    return caught.value.json_body["error"]


# --- Prices as items, periods on items -----------------------------------------------------------------


def test_a_price_is_subscribed_to_and_shown_as_price_and_plan(client, customer, price):
    pm = as_default(client, customer, PAYS)
    before = time.time()
    sub = subscribe(client, customer, {"price": price.id})

    assert (sub.status, sub.currency, sub.metadata.to_dict()) == ("active", "usd", {"subscription": "42"})
    [item] = sub["items"].data
    assert (item.price.id, item.price.object, item.price.unit_amount, item.price.type) == (
        price.id,
        "price",
        1500,
        "recurring",
    )
    assert (item.plan.id, item.plan.object, item.plan.amount, item.plan.interval) == (
        price.id,
        "plan",
        1500,
        "month",
    )
    assert (item.plan.product, item.price.product, item.subscription) == (
        price.product,
        price.product,
        sub.id,
    )
    assert before - 2 <= item.current_period_start <= time.time()
    assert 28 * DAY <= item.current_period_end - item.current_period_start <= 31 * DAY
    assert (sub.current_period_start, sub.current_period_end) == (
        item.current_period_start,
        item.current_period_end,
    )
    invoice = sub.latest_invoice
    assert (invoice.status, invoice.amount_paid, invoice.billing_reason) == (
        "paid",
        1500,
        "subscription_create",
    )
    assert sub.default_payment_method == pm.id  # on_subscription: the card that paid
    # The plan-shaped view is no plan of the catalog: not listed, not announced.
    assert client.v1.plans.list().data == []
    assert count_events(client, "plan.created") == 0


def test_a_legacy_plan_item_carries_a_price_with_the_plans_id(client, customer):
    as_default(client, customer, PAYS)
    plan = client.v1.plans.create(
        params={
            "id": "gold",
            "amount": 500,
            "currency": "usd",
            "interval": "month",
            "product": {"name": "Gold"},
        }
    )
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"plan": plan.id}],
            "payment_behavior": "error_if_incomplete",
        }
    )

    [item] = sub["items"].data
    assert (sub.status, item.plan.id, item.price.id, item.price.unit_amount) == (
        "active",
        "gold",
        "gold",
        500,
    )
    assert item.price.recurring.to_dict() == {
        "interval": "month",
        "interval_count": 1,
        "meter": None,
        "trial_period_days": None,
        "usage_type": "licensed",
    }


def test_the_period_lasts_interval_count_intervals(client, customer):
    as_default(client, customer, PAYS)
    quarterly = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 4000,
            "recurring": {"interval": "month", "interval_count": 3},
            "product_data": {"name": "Quarterly"},
        }
    )
    sub = subscribe(client, customer, {"price": quarterly.id})

    item = sub["items"].data[0]
    assert 89 * DAY <= item.current_period_end - item.current_period_start <= 92 * DAY


def test_prices_stripe_refuses_as_items(client, customer, price):
    one_time = client.v1.prices.create(
        params={"currency": "usd", "unit_amount": 100, "product": price.product}
    )
    archived = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 100,
            "product": price.product,
            "recurring": {"interval": "year"},
        }
    )
    client.v1.prices.update(archived.id, params={"active": False})
    cases = [
        ("price_nope", "No such price: 'price_nope'", "resource_missing"),
        (archived.id, "The price specified is inactive. This field only accepts active prices.", None),
        (
            one_time.id,
            "The price specified is set to `type=one_time` but this field only accepts prices with "
            "`type=recurring`.",
            None,
        ),
    ]
    for price_id, message, code in cases:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            subscribe(client, customer, {"price": price_id})
        assert caught.value.http_status == 400
        assert (error_of(caught)["message"], error_of(caught)["param"], error_of(caught).get("code")) == (
            message,
            "items[0][price]",
            code,
        )
    with pytest.raises(stripe.InvalidRequestError) as caught:
        subscribe(client, customer, {"price": price.id, "plan": "gold"})
    assert error_of(caught)["message"] == "You may only specify one of these parameters: plan, price."
    assert client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"}).data == []


def test_a_customer_keeps_one_currency(client, customer, price):
    as_default(client, customer, PAYS)
    subscribe(client, customer, {"price": price.id})
    in_euros = client.v1.prices.create(
        params={
            "currency": "eur",
            "unit_amount": 900,
            "product": price.product,
            "recurring": {"interval": "month"},
        }
    )

    with pytest.raises(stripe.InvalidRequestError) as caught:
        subscribe(client, customer, {"price": in_euros.id})
    assert error_of(caught)["message"] == (
        "You cannot combine currencies on a single customer. This customer has an active subscription, "
        "subscription schedule, discount, quote, or invoice item with currency usd."
    )
    assert len(client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"}).data) == 1


# --- allow_incomplete -----------------------------------------------------------------------------------


def test_allow_incomplete_with_a_plain_card_is_active_at_once(client, customer, price):
    pm = attached(client, customer, PAYS)
    sub = subscribe(
        client,
        customer,
        {"price": price.id},
        payment_behavior="allow_incomplete",
        default_payment_method=pm.id,
    )

    assert (sub.status, sub.latest_invoice.status, sub.default_payment_method) == ("active", "paid", pm.id)
    assert sub.payment_settings.save_default_payment_method == "on_subscription"
    assert intent_of(client, sub).status == "succeeded"
    for type_ in ("invoice.paid", "invoice.payment_succeeded", "customer.subscription.created"):
        assert count_events(client, type_) == 1, type_
    assert count_events(client, "customer.subscription.updated") == 0
    assert last_event(client, "customer.subscription.created").data.object.status == "active"


def test_allow_incomplete_with_a_card_asking_authentication_then_authenticated(client, customer, price):
    pm = attached(client, customer, ALWAYS_ASKS)
    sub = subscribe(
        client,
        customer,
        {"price": price.id},
        payment_behavior="allow_incomplete",
        default_payment_method=pm.id,
    )

    assert (sub.status, sub.latest_invoice.status) == ("incomplete", "open")
    secret = sub.latest_invoice.confirmation_secret
    assert secret.type == "payment_intent" and "_secret_" in secret.client_secret
    intent = intent_of(client, sub)
    assert (intent.status, intent.amount, intent.client_secret) == (
        "requires_action",
        1500,
        secret.client_secret,
    )
    assert count_events(client, "invoice.payment_action_required") == 1
    assert count_events(client, "payment_intent.requires_action") == 1

    authenticate(client, intent, "true")

    after = retrieved(client, sub)
    assert (after.status, after.latest_invoice.status, after.default_payment_method) == (
        "active",
        "paid",
        pm.id,
    )
    listed = client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"}).data
    assert [s.id for s in listed] == [sub.id]
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method is None
    updated = last_event(client, "customer.subscription.updated")
    assert (updated.data.object.status, updated.data.previous_attributes.status) == ("active", "incomplete")
    assert count_events(client, "invoice.paid") == 1


def test_failed_authentication_leaves_the_subscription_incomplete_for_another_card(client, customer, price):
    pm = as_default(client, customer, ALWAYS_ASKS)
    sub = subscribe(client, customer, {"price": price.id}, payment_behavior="allow_incomplete")
    intent = intent_of(client, sub)

    authenticate(client, intent, "false")

    after = retrieved(client, sub)
    assert (after.status, after.latest_invoice.status, after.ended_at) == ("incomplete", "open", None)
    failed = client.v1.payment_intents.retrieve(intent.id)
    assert (failed.status, failed.last_payment_error.code) == (
        "requires_payment_method",
        "payment_intent_authentication_failure",
    )
    assert count_events(client, "invoice.payment_failed") == 1
    assert count_events(client, "customer.subscription.deleted") == 0

    another = card(client, PAYS)
    client.v1.payment_intents.confirm(intent.id, params={"payment_method": another.id})
    paid = retrieved(client, sub)
    assert (paid.status, paid.default_payment_method) == ("active", another.id)
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method == pm.id


def test_a_card_set_up_for_off_session_use_pays_without_authentication(client, customer, price):
    pm = saved_through_setup_intent(client, customer, UNLESS_SET_UP)
    sub = subscribe(
        client,
        customer,
        {"price": price.id},
        payment_behavior="allow_incomplete",
        default_payment_method=pm.id,
    )

    assert sub.status == "active"


def test_allow_incomplete_with_a_declined_card_answers_200_and_stays_incomplete(client, customer, price):
    as_default(client, customer, DECLINED_WHEN_CHARGED)
    sub = subscribe(client, customer, {"price": price.id}, payment_behavior="allow_incomplete")

    assert (sub.status, sub.latest_invoice.status, sub.default_payment_method) == ("incomplete", "open", None)
    intent = intent_of(client, sub)
    assert (intent.status, intent.last_payment_error.code, intent.last_payment_error.decline_code) == (
        "requires_payment_method",
        "card_declined",
        "generic_decline",
    )
    assert count_events(client, "invoice.payment_failed") == 1


# --- error_if_incomplete --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "code"),
    [(DECLINED_WHEN_CHARGED, "card_declined"), (ALWAYS_ASKS, "invoice_payment_intent_requires_action")],
)
def test_error_if_incomplete_answers_402_and_creates_no_subscription(client, customer, price, number, code):
    as_default(client, customer, number)
    with pytest.raises(stripe.CardError) as caught:
        subscribe(client, customer, {"price": price.id}, payment_behavior="error_if_incomplete")

    assert (caught.value.http_status, error_of(caught)["code"]) == (402, code)
    assert client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"}).data == []
    assert count_events(client, "customer.subscription.created") == 0


def test_error_if_incomplete_without_a_payment_method_is_refused(client, customer, price):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        subscribe(client, customer, {"price": price.id}, payment_behavior="error_if_incomplete")

    assert error_of(caught)["message"].startswith("This customer has no attached payment source")
    assert client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"}).data == []


# --- default_incomplete ---------------------------------------------------------------------------------


def test_default_incomplete_waits_for_the_browser_to_confirm(client, make_client, customer, price):
    old = as_default(client, customer, PAYS)  # not used: nothing is attempted
    sub = subscribe(client, customer, {"price": price.id}, payment_behavior="default_incomplete")

    assert (sub.status, sub.latest_invoice.status, sub.pending_setup_intent) == ("incomplete", "open", None)
    secret = sub.latest_invoice.confirmation_secret.client_secret
    intent = intent_of(client, sub)
    assert (intent.status, intent.payment_method, intent.latest_charge) == (
        "requires_payment_method",
        None,
        None,
    )
    assert count_events(client, "charge.succeeded") == 0

    new = card(client, PAYS)
    browser = make_client("pk_test_fake")  # stripe.js: the publishable key and the client secret
    browser.v1.payment_intents.confirm(intent.id, params={"payment_method": new.id, "client_secret": secret})

    after = retrieved(client, sub)
    assert (after.status, after.latest_invoice.status, after.default_payment_method) == (
        "active",
        "paid",
        new.id,
    )
    assert client.v1.payment_methods.retrieve(new.id).customer == customer.id
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method == old.id
    for type_ in ("invoice.paid", "invoice.payment_succeeded", "customer.subscription.updated"):
        assert count_events(client, type_) == 1, type_
    previous = last_event(client, "customer.subscription.updated").data.previous_attributes
    assert (previous.status, previous.default_payment_method) == ("incomplete", None)


def test_an_incomplete_subscription_expires(client, customer, price):
    sub = subscribe(client, customer, {"price": price.id}, payment_behavior="default_incomplete")

    client.raw_request("post", f"/v1/subscriptions/{sub.id}/_expire")

    after = retrieved(client, sub)
    assert (after.status, after.latest_invoice.status) == ("incomplete_expired", "void")
    assert intent_of(client, after).status == "canceled"
    assert last_event(client, "customer.subscription.updated").data.previous_attributes.status == "incomplete"
    assert count_events(client, "invoice.voided") == 1


# --- Trials ---------------------------------------------------------------------------------------------


def test_a_trial_without_a_card_collects_one_with_a_pending_setup_intent(client, customer, price):
    before = int(time.time())
    sub = subscribe(
        client, customer, {"price": price.id}, payment_behavior="default_incomplete", trial_period_days=7
    )

    assert sub.status == "trialing"
    assert before <= sub.trial_start <= time.time() and sub.trial_end == sub.trial_start + 7 * DAY
    item = sub["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (sub.trial_start, sub.trial_end)
    assert (
        sub.latest_invoice.status,
        sub.latest_invoice.amount_due,
        sub.latest_invoice.confirmation_secret,
    ) == (
        "paid",
        0,
        None,
    )
    setup = sub.pending_setup_intent
    assert (setup.object, setup.customer, setup.usage, setup.status) == (
        "setup_intent",
        customer.id,
        "off_session",
        "requires_payment_method",
    )
    assert setup.client_secret.startswith(setup.id + "_secret_")
    assert count_events(client, "charge.succeeded") == 0

    pm = card(client, PAYS)
    client.v1.setup_intents.confirm(
        setup.id, params={"payment_method": pm.id, "client_secret": setup.client_secret}
    )

    after = retrieved(client, sub)
    assert (after.status, after.pending_setup_intent, after.default_payment_method) == (
        "trialing",
        None,
        pm.id,
    )
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method is None
    previous = last_event(client, "customer.subscription.updated").data.previous_attributes
    assert (previous.pending_setup_intent, previous.default_payment_method) == (setup.id, None)


def test_trial_from_plan_takes_the_prices_trial(client, customer):
    pm = as_default(client, customer, PAYS)
    with_trial = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 700,
            "recurring": {"interval": "month", "trial_period_days": 14},
            "product_data": {"name": "Trial club"},
        }
    )
    sub = subscribe(
        client, customer, {"price": with_trial.id}, payment_behavior="allow_incomplete", trial_from_plan=True
    )

    assert (sub.status, sub.trial_end - sub.trial_start, sub.pending_setup_intent) == (
        "trialing",
        14 * DAY,
        None,
    )
    assert count_events(client, "charge.succeeded") == 0
    assert sub.default_payment_method is None  # nothing paid yet
    assert pm.id  # the customer's card stays for the first real invoice


def test_trial_end_sets_the_trial_and_the_billing_cycle_anchor(client, customer, price):
    as_default(client, customer, PAYS)
    trial_end = int(time.time()) + 3 * DAY
    sub = subscribe(
        client, customer, {"price": price.id}, payment_behavior="allow_incomplete", trial_end=trial_end
    )

    assert (sub.status, sub.trial_end, sub.billing_cycle_anchor) == ("trialing", trial_end, trial_end)
    assert sub["items"].data[0].current_period_end == trial_end
    assert "invoice" not in sub["items"].data[0]


# --- Retrieve, update, cancel ---------------------------------------------------------------------------


def test_retrieve_expands_and_updates_are_announced(client, customer, price):
    as_default(client, customer, PAYS)
    sub = subscribe(client, customer, {"price": price.id})

    plain = client.v1.subscriptions.retrieve(sub.id)
    assert isinstance(plain.latest_invoice, str) and plain.pending_setup_intent is None
    invoice = client.v1.invoices.retrieve(plain.latest_invoice)
    assert "confirmation_secret" not in invoice  # only when expanded
    expanded = client.v1.invoices.retrieve(plain.latest_invoice, params={"expand": ["confirmation_secret"]})
    assert (
        expanded.confirmation_secret.client_secret
        == retrieved(client, sub).latest_invoice.confirmation_secret.client_secret
    )

    updated = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert updated.cancel_at_period_end is True
    event = last_event(client, "customer.subscription.updated")
    assert (event.data.object.cancel_at_period_end, event.data.previous_attributes.to_dict()) == (
        True,
        {"cancel_at_period_end": False},
    )

    canceled = client.v1.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled"
    assert count_events(client, "customer.subscription.updated") == 1
    assert count_events(client, "customer.subscription.deleted") == 1
