"""Subscriptions to prices, and first payments that ask the customer to authenticate (SCA).

Through ``StripeSubscription.subscribe()`` and the webhook URL, against the fake Stripe server with
its subscription patches (``aa_stripe.testing.fakestripe.subscriptions``). The GraphQL side is in
``test_graphql_subscriptions_prices``.
"""

from __future__ import annotations

import importlib
import logging
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from aa_stripe.exceptions import (
    StripeInternalError,
    StripeInvalidInput,
    StripeMethodNotAllowed,
    StripeOperationInProgress,
    StripePaymentMethodExpired,
    StripeSubscriptionIncomplete,
)
from aa_stripe.models import (
    StripeCoupon,
    StripeCustomer,
    StripePaymentMethod,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    StripeWebhook,
)
from aa_stripe.testing import make_event
from tests.test_payment_intents import _post, set_up_card
from tests.test_payment_methods import saved_card
from tests.test_webhook_handlers import deliver

pytestmark = pytest.mark.django_db

PLAIN = "4242424242424242"
ALWAYS_AUTHENTICATE = "4000002760003184"


@pytest.fixture
def product(fake_stripe: Any) -> StripeProduct:
    product = StripeProduct.objects.create(name="Tea club")
    product.create_at_stripe()
    return product


def made_price(product: StripeProduct, **fields: Any) -> StripePrice:
    values = {"unit_amount": 1500, "currency": "usd", "recurring_interval": "month", **fields}
    price = StripePrice(product=product, **values)
    price.create_at_stripe()
    return price


@pytest.fixture
def monthly(product: StripeProduct) -> StripePrice:
    return made_price(product)


@pytest.fixture
def cardless(fake_stripe: Any, user: Any) -> StripeCustomer:
    return StripeCustomer.get_or_create_for_user(user)


def waiting(user: Any, attempted: bool, **request: Any) -> StripeSubscription:
    """``subscribe()`` for a subscription whose first payment waits: the row raised with."""
    with pytest.raises(StripeSubscriptionIncomplete) as raised:
        StripeSubscription.subscribe(user, **request)
    assert raised.value.payment_attempted is attempted
    row = raised.value.subscription
    assert row.status == StripeSubscription.STATUS_INCOMPLETE and row.waits_for_customer
    return row


def creations(fake_stripe: Any) -> list[Any]:
    return [
        call
        for call in fake_stripe.proxy.calls("POST", "/v1/subscriptions")
        if call.path == "/v1/subscriptions"
    ]


def subscriptions_at_fake(fake_stripe: Any, customer: StripeCustomer) -> list[dict[str, Any]]:
    return fake_stripe.get("/v1/subscriptions", customer=customer.stripe_customer_id, status="all")["data"]


def payment_intent_of(secret: str) -> str:
    """The fake's confirmation secrets are its PaymentIntents' client secrets, ``<pi id>_secret_<x>``."""
    return secret.split("_secret_")[0]


def authenticate(fake_stripe: Any, secret: str, success: bool) -> None:
    """The customer passing or failing 3-D Secure in stripe.js's dialog for the first invoice."""
    intent = payment_intent_of(secret)
    path = f"/v1/payment_intents/{intent}/_authenticate?success={str(success).lower()}&client_secret={secret}"
    response = _post(fake_stripe, path)
    assert response.ok, response.text


def subscription_event(
    client: Any, fake_stripe: Any, row: StripeSubscription, **overrides: Any
) -> StripeWebhook:
    """Stripe's customer.subscription.updated with the subscription as the fake has it now."""
    data = {**fake_stripe.get(f"/v1/subscriptions/{row.stripe_subscription_id}"), **overrides}
    return deliver(client, make_event("customer.subscription.updated", data))


# --- paying at once, or waiting for the customer ------------------------------------------------------


def test_a_saved_card_pays_the_first_invoice_at_once(fake_stripe, user, cardless, monthly):
    method = set_up_card(fake_stripe, cardless, PLAIN)

    row = StripeSubscription.subscribe(user, price=monthly)

    row.refresh_from_db()
    assert (row.status, row.price, row.plan, row.customer) == ("active", monthly, None, cardless)
    assert row.default_payment_method == method and row.client_secret_for_owner() is None
    assert row.current_period_start is not None and row.current_period_end > row.current_period_start
    [sent] = creations(fake_stripe)
    assert sent.params["payment_behavior"] == "allow_incomplete"
    assert sent.params["payment_settings[save_default_payment_method]"] == "on_subscription"
    assert sent.params["items[0][price]"] == monthly.stripe_price_id
    cardless.refresh_from_db()
    assert cardless.default_payment_method == method  # the customer's own default: unchanged


def test_a_price_passed_as_the_plan_argument_is_subscribed_to(fake_stripe, user, cardless, monthly):
    set_up_card(fake_stripe, cardless, PLAIN)

    row = StripeSubscription.subscribe(user, monthly)

    assert (row.price, row.plan, row.status) == (monthly, None, "active")


def test_a_card_that_asks_for_authentication_waits_then_is_active_once_passed(
    client, fake_stripe, user, cardless, monthly
):
    set_up_card(fake_stripe, cardless, ALWAYS_AUTHENTICATE)

    row = waiting(user, True, price=monthly)

    secret = row.client_secret_for_owner()
    assert secret and "_secret_" in secret
    assert secret not in str(StripeSubscription.objects.get(pk=row.pk).stripe_response)  # never stored

    authenticate(fake_stripe, secret, success=True)
    subscription_event(client, fake_stripe, row)

    row.refresh_from_db()
    assert row.status == "active" and row.client_secret_for_owner() is None
    assert len(subscriptions_at_fake(fake_stripe, cardless)) == 1 and len(creations(fake_stripe)) == 1


def test_refresh_from_stripe_records_an_authenticated_first_payment(fake_stripe, user, cardless, monthly):
    set_up_card(fake_stripe, cardless, ALWAYS_AUTHENTICATE)
    row = waiting(user, True, price=monthly)
    authenticate(fake_stripe, row.client_secret_for_owner(), success=True)

    row.refresh_from_stripe()

    assert row.status == "active" and row.default_payment_method.startswith("pm_")


def test_failed_authentication_stays_incomplete_then_expires_by_event(
    client, fake_stripe, user, cardless, monthly
):
    set_up_card(fake_stripe, cardless, ALWAYS_AUTHENTICATE)
    row = waiting(user, True, price=monthly)
    authenticate(fake_stripe, row.client_secret_for_owner(), success=False)

    row.refresh_from_stripe()
    assert row.status == "incomplete" and row.client_secret_for_owner()  # the customer may try again

    later = make_event(
        "customer.subscription.updated",
        {
            **fake_stripe.get(f"/v1/subscriptions/{row.stripe_subscription_id}"),
            "status": "incomplete_expired",
        },
    )
    older = make_event(
        "customer.subscription.updated",
        fake_stripe.get(f"/v1/subscriptions/{row.stripe_subscription_id}"),
        created=later["created"] - 60,
    )
    deliver(client, later)
    deliver(client, older)  # arrives last, says less: changes nothing

    row.refresh_from_db()
    assert (
        row.status == StripeSubscription.STATUS_INCOMPLETE_EXPIRED and row.client_secret_for_owner() is None
    )


def test_without_a_card_stripe_waits_for_stripe_js_to_collect_one(fake_stripe, user, monthly):
    row = waiting(user, False, price=monthly)  # the user has no customer yet

    customer = StripeCustomer.objects.get(user=user)
    assert customer.is_created_at_stripe and row.customer == customer  # made without a card
    [sent] = creations(fake_stripe)
    assert sent.params["payment_behavior"] == "default_incomplete"
    assert row.client_secret_for_owner()


def test_a_chosen_payment_method_pays_and_the_customers_default_stays(fake_stripe, user, cardless, monthly):
    default = set_up_card(fake_stripe, cardless, PLAIN)
    other = saved_card(fake_stripe, cardless, "5555555555554444")

    row = StripeSubscription.subscribe(user, price=monthly, payment_method=other)

    [sent] = creations(fake_stripe)
    assert sent.params["default_payment_method"] == other.stripe_payment_method_id
    assert row.status == "active" and row.default_payment_method == other.stripe_payment_method_id
    cardless.refresh_from_db()
    assert cardless.default_payment_method == default


def test_a_trial_without_a_card_hands_over_the_setup_intent_secret(fake_stripe, user, cardless, monthly):
    row = StripeSubscription.subscribe(user, price=monthly, trial_period_days=14)

    assert row.status == StripeSubscription.STATUS_TRIAL and row.trial_end is not None
    assert row.trial_end - timezone.now() > timedelta(days=13)
    secret = row.client_secret_for_owner()
    assert secret and secret.startswith("seti_")


def test_stored_stripe_objects_keep_no_client_secret(fake_stripe, user, cardless, monthly):
    row = StripeSubscription.subscribe(user, price=monthly, trial_period_days=3)
    secret = row.client_secret_for_owner()

    stored = StripeSubscription.objects.get(pk=row.pk)
    assert secret not in str(stored.stripe_response)
    assert "client_secret" not in str(stored.stripe_response) or "[redacted]" in str(stored.stripe_response)


# --- refused before anything is sent -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"active": False}, "inactive"),
        ({"is_deleted": True}, "inactive"),
        ({"recurring_interval": "", "recurring_interval_count": None}, "one_time"),
        ({"is_created_at_stripe": False}, "not_at_stripe"),
    ],
)
def test_a_price_stripe_would_refuse_is_refused_and_nothing_is_sent(
    fake_stripe, user, cardless, monthly, change, code
):
    StripePrice.objects.filter(pk=monthly.pk).update(**change)
    monthly.refresh_from_db()

    with pytest.raises(StripeInvalidInput) as raised:
        StripeSubscription.subscribe(user, price=monthly)

    assert (raised.value.field, raised.value.code) == ("price", code)
    assert creations(fake_stripe) == [] and not StripeSubscription.objects.exists()


def test_a_price_in_another_currency_than_the_running_subscriptions_is_refused(
    fake_stripe, user, cardless, product
):
    set_up_card(fake_stripe, cardless, PLAIN)
    StripeSubscription.subscribe(user, price=made_price(product, currency="usd"))
    in_euros = made_price(product, currency="eur")

    with pytest.raises(StripeInvalidInput) as raised:
        StripeSubscription.subscribe(user, price=in_euros)

    assert (raised.value.field, raised.value.code) == ("price", "currency")
    assert len(creations(fake_stripe)) == 1 and StripeSubscription.objects.count() == 1


def test_a_payment_method_of_another_user_is_refused(fake_stripe, user, other_user, cardless, monthly):
    theirs = StripeCustomer.get_or_create_for_user(other_user)
    their_card = saved_card(fake_stripe, theirs)

    with pytest.raises(StripeMethodNotAllowed):
        StripeSubscription.subscribe(user, price=monthly, payment_method=their_card)

    assert creations(fake_stripe) == [] and not StripeSubscription.objects.exists()


def test_an_expired_payment_method_is_refused(fake_stripe, user, cardless, monthly):
    card = saved_card(fake_stripe, cardless)
    StripePaymentMethod.objects.filter(pk=card.pk).update(card_exp_year=2020)
    card.refresh_from_db()

    with pytest.raises(StripePaymentMethodExpired):
        StripeSubscription.subscribe(user, price=monthly, payment_method=card)

    assert creations(fake_stripe) == []


def test_neither_or_both_of_plan_and_price_are_refused(fake_stripe, user, monthly, plan):
    with pytest.raises(StripeInvalidInput):
        StripeSubscription.subscribe(user)
    with pytest.raises(StripeInvalidInput):
        StripeSubscription.subscribe(user, plan, price=monthly)
    assert creations(fake_stripe) == []


# --- events ---------------------------------------------------------------------------------------------


def test_an_event_about_an_unknown_subscription_is_stored_and_invents_nothing(
    client, fake_stripe, user, cardless, monthly
):
    set_up_card(fake_stripe, cardless, PLAIN)
    row = StripeSubscription.subscribe(user, price=monthly)
    data = fake_stripe.get(f"/v1/subscriptions/{row.stripe_subscription_id}")
    row.delete()

    webhook = deliver(client, make_event("customer.subscription.updated", {**data, "id": "sub_unknown123"}))

    assert webhook.is_parsed and not StripeSubscription.objects.exists()


def test_events_keep_price_period_and_trial_in_step(client, fake_stripe, user, cardless, product, monthly):
    set_up_card(fake_stripe, cardless, PLAIN)
    row = StripeSubscription.subscribe(user, price=monthly)
    yearly = made_price(product, recurring_interval="year", unit_amount=15000)
    data = fake_stripe.get(f"/v1/subscriptions/{row.stripe_subscription_id}")
    start, end = 1_900_000_000, 1_931_536_000
    item = {
        **data["items"]["data"][0],
        "price": {"id": yearly.stripe_price_id, "object": "price"},
        "plan": {"id": yearly.stripe_price_id, "object": "plan"},
        "current_period_start": start,
        "current_period_end": end,
    }
    changed = {**data, "items": {**data["items"], "data": [item]}, "trial_start": None, "trial_end": None}

    subscription_event(client, fake_stripe, row, **changed)

    row.refresh_from_db()
    assert row.price == yearly and row.plan is None
    assert (int(row.current_period_start.timestamp()), int(row.current_period_end.timestamp())) == (
        start,
        end,
    )


def test_an_event_naming_an_unknown_price_keeps_the_row_s_price(
    client, fake_stripe, user, cardless, monthly, caplog
):
    set_up_card(fake_stripe, cardless, PLAIN)
    row = StripeSubscription.subscribe(user, price=monthly)
    data = fake_stripe.get(f"/v1/subscriptions/{row.stripe_subscription_id}")
    item = {**data["items"]["data"][0], "price": {"id": "price_unknown", "object": "price"}, "plan": None}

    with caplog.at_level(logging.WARNING, logger="aa_stripe"):
        subscription_event(client, fake_stripe, row, items={**data["items"], "data": [item]})

    row.refresh_from_db()
    assert row.price == monthly and "price_unknown" in caplog.text


# --- plans keep working ------------------------------------------------------------------------------


def test_a_plan_subscription_of_the_old_api_still_cancels_and_renews(client, fake_stripe, customer, plan):
    row = StripeSubscription.subscribe(customer.user, plan)
    assert (row.plan, row.price, row.status) == (plan, None, "active")

    renewed = fake_stripe.get(f"/v1/subscriptions/{row.stripe_subscription_id}")
    item = {
        **renewed["items"]["data"][0],
        "current_period_start": 1_900_000_000,
        "current_period_end": 1_902_592_000,
    }
    subscription_event(client, fake_stripe, row, items={**renewed["items"], "data": [item]})
    row.refresh_from_db()
    assert int(row.current_period_end.timestamp()) == 1_902_592_000 and row.plan == plan

    row.cancel()

    row.refresh_from_db()
    assert row.status == "canceled" and row.plan == plan


def test_reconcile_reads_an_incomplete_subscription_whose_event_was_missed(
    fake_stripe, user, cardless, monthly
):
    set_up_card(fake_stripe, cardless, ALWAYS_AUTHENTICATE)
    row = waiting(user, True, price=monthly)
    authenticate(fake_stripe, row.client_secret_for_owner(), success=True)  # no webhook arrives
    fresh = waiting(user, True, price=made_price(monthly.product, unit_amount=900))
    StripeSubscription.objects.filter(pk=row.pk).update(updated=timezone.now() - timedelta(hours=2))

    out = StringIO()
    call_command("reconcile_stripe_operations", stdout=out)

    row.refresh_from_db()
    fresh.refresh_from_db()
    assert row.status == "active" and "1 incomplete subscriptions read again, 1 changed" in out.getvalue()
    assert fresh.status == "incomplete"  # changed within the hour: left for the next run


def test_a_lost_answer_is_finished_by_asking_again_without_a_second_subscription(
    fake_stripe, user, cardless, monthly
):
    set_up_card(fake_stripe, cardless, ALWAYS_AUTHENTICATE)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/subscriptions")
    with pytest.raises(StripeInternalError) as raised:
        StripeSubscription.subscribe(user, price=monthly)
    kept = raised.value.subscription
    assert kept is not None and not kept.is_created_at_stripe

    row = waiting(user, True, price=monthly)

    assert row.pk == kept.pk and row.client_secret_for_owner()
    assert len(subscriptions_at_fake(fake_stripe, cardless)) == 1
    first, second = creations(fake_stripe)
    assert first.idempotency_key == second.idempotency_key and first.params == second.params


# --- never two subscriptions for one request (review findings) ------------------------------------------


def test_a_retry_naming_the_card_the_lost_attempt_charged_finishes_that_attempt(
    fake_stripe, user, cardless, monthly
):
    method = set_up_card(fake_stripe, cardless, PLAIN)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/subscriptions")
    with pytest.raises(StripeInternalError):
        StripeSubscription.subscribe(user, price=monthly)

    row = StripeSubscription.subscribe(
        user, price=monthly, payment_method=StripePaymentMethod.objects.get(stripe_payment_method_id=method)
    )

    assert row.status == "active" and StripeSubscription.objects.count() == 1
    assert len(subscriptions_at_fake(fake_stripe, cardless)) == 1


def test_subscribing_again_while_the_first_payment_waits_returns_that_subscription(
    fake_stripe, user, cardless, monthly
):
    set_up_card(fake_stripe, cardless, ALWAYS_AUTHENTICATE)
    first = waiting(user, True, price=monthly)

    again = waiting(user, True, price=monthly)

    assert again.pk == first.pk and len(creations(fake_stripe)) == 1
    assert len(subscriptions_at_fake(fake_stripe, cardless)) == 1


def test_a_declined_first_payment_of_a_plan_subscription_is_not_returned_as_paid(
    fake_stripe, user, cardless, plan
):
    """aa-stripe's callers took "no exception" for "paid": a declined card must still raise."""
    set_up_card(fake_stripe, cardless, "4000000000000341")

    row = waiting(user, True, plan=plan)

    assert row.plan == plan and row.client_secret_for_owner()


def test_a_price_mirrored_after_the_event_naming_it_is_followed_by_the_next_event(
    client, fake_stripe, user, cardless, product, monthly
):
    set_up_card(fake_stripe, cardless, PLAIN)
    row = StripeSubscription.subscribe(user, price=monthly)
    yearly = made_price(product, recurring_interval="year", unit_amount=15000)
    yearly_id = yearly.stripe_price_id
    StripePrice.objects.filter(pk=yearly.pk).update(stripe_price_id="")  # not mirrored yet
    data = fake_stripe.get(f"/v1/subscriptions/{row.stripe_subscription_id}")
    item = {**data["items"]["data"][0], "price": {"id": yearly_id, "object": "price"}, "plan": None}
    moved = {**data, "items": {**data["items"], "data": [item]}}
    first = make_event("customer.subscription.updated", moved)
    deliver(client, first)
    row.refresh_from_db()
    assert row.price == monthly  # unknown here yet: kept

    StripePrice.objects.filter(pk=yearly.pk).update(stripe_price_id=yearly_id)  # price.created arrives
    deliver(client, make_event("customer.subscription.updated", moved, created=first["created"] + 1))

    row.refresh_from_db()
    assert row.price_id == yearly.pk


def test_a_late_retry_of_the_creation_event_does_not_make_a_paid_subscription_incomplete(
    client, fake_stripe, user, cardless, monthly
):
    set_up_card(fake_stripe, cardless, ALWAYS_AUTHENTICATE)
    row = waiting(user, True, price=monthly)
    created_event = make_event(
        "customer.subscription.created", {**row.stripe_response, "status": "incomplete"}
    )
    authenticate(fake_stripe, row.client_secret_for_owner(), success=True)
    row.refresh_from_stripe()
    assert row.status == "active"

    deliver(client, created_event)  # Stripe's retry, days later

    row.refresh_from_db()
    assert row.status == "active"


def test_an_active_subscription_with_a_pending_setup_intent_hands_over_its_secret(
    fake_stripe, user, cardless, monthly
):
    row = StripeSubscription.subscribe(user, price=monthly, trial_period_days=7)
    setup = row.stripe_response["pending_setup_intent"]
    StripeSubscription.objects.filter(pk=row.pk).update(status="active")  # a 100% coupon, say
    row.refresh_from_db()

    assert row.waits_for_customer and row.client_secret_for_owner().startswith(
        setup["id"] if isinstance(setup, dict) else setup
    )


def test_a_payment_method_of_a_replaced_customer_is_refused(fake_stripe, user, cardless, monthly):
    card = saved_card(fake_stripe, cardless)
    StripeCustomer.objects.filter(pk=cardless.pk).update(is_active=False)
    card.refresh_from_db()

    with pytest.raises(StripeMethodNotAllowed):
        StripeSubscription.subscribe(user, price=monthly, payment_method=card)

    assert creations(fake_stripe) == []


def test_a_deleted_coupon_is_refused_before_a_customer_is_made(fake_stripe, user, monthly):
    coupon = StripeCoupon.objects.create(coupon_id="GONE", percent_off=10, duration="once")
    StripeCoupon.objects.all_with_deleted().filter(pk=coupon.pk).update(is_deleted=True)
    coupon = StripeCoupon.objects.all_with_deleted().get(pk=coupon.pk)

    with pytest.raises(StripeMethodNotAllowed):
        StripeSubscription.subscribe(user, price=monthly, coupon=coupon)

    assert not StripeCustomer.objects.exists() and creations(fake_stripe) == []


# --- settings and the upgrade ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "charge_api", "refused"),
    [
        ("2024-06-20", "payment_intents", True),
        ("2025-03-31.basil", "payment_intents", False),
        ("2024-06-20", "charges", False),
        (None, "payment_intents", False),
    ],
)
def test_an_api_version_older_than_the_payment_intents_path_needs_is_a_system_check_error(
    settings, version, charge_api, refused
):
    from aa_stripe.checks import check_stripe_settings

    settings.STRIPE_API_VERSION = version
    settings.STRIPE_CHARGE_API = charge_api

    ids = [message.id for message in check_stripe_settings()]

    assert ("aa_stripe.E002" in ids) is refused


def test_the_upgrade_fills_period_trial_and_payment_method_from_the_stored_object(user, plan):
    from django.apps import apps
    from django.db import connection

    backfill = importlib.import_module("aa_stripe.migrations.0041_subscription_periods_from_stored_objects")
    stored = {
        "id": "sub_stored",
        "status": "trialing",
        "trial_start": 1_800_000_000,
        "trial_end": 1_801_000_000,
        "default_payment_method": {"id": "pm_saved", "object": "payment_method"},
        "items": {"data": [{"current_period_start": 1_800_000_000, "current_period_end": 1_802_000_000}]},
    }
    old_shape = {"id": "sub_old", "current_period_start": 1_500_000_000, "current_period_end": 1_502_000_000}
    new = StripeSubscription.objects.create(user=user, plan=plan, stripe_response=stored)
    old = StripeSubscription.objects.create(user=user, plan=plan, stripe_response=old_shape)
    untouched = StripeSubscription.objects.create(user=user, plan=plan)

    backfill.backfill_from_stored_objects(apps, connection.schema_editor())

    new.refresh_from_db()
    old.refresh_from_db()
    untouched.refresh_from_db()
    assert [int(value.timestamp()) for value in (new.current_period_end, new.trial_start, new.trial_end)] == [
        1_802_000_000,
        1_800_000_000,
        1_801_000_000,
    ]
    assert new.default_payment_method == "pm_saved" and new.plan == plan
    assert int(old.current_period_start.timestamp()) == 1_500_000_000 and old.trial_end is None
    assert untouched.current_period_start is None and untouched.plan == plan


def test_a_waiting_subscription_that_lapsed_unseen_does_not_block_subscribing_again(
    fake_stripe, user, cardless, monthly
):
    first = waiting(user, False, price=monthly)
    assert _post(fake_stripe, f"/v1/subscriptions/{first.stripe_subscription_id}/_expire").ok  # no event here
    set_up_card(fake_stripe, cardless, PLAIN)

    second = StripeSubscription.subscribe(user, price=monthly)

    first.refresh_from_db()
    assert second.pk != first.pk and second.status == "active"
    assert first.status == StripeSubscription.STATUS_INCOMPLETE_EXPIRED


def test_a_waiting_subscription_paid_unseen_is_returned_paid_not_made_again(
    fake_stripe, user, cardless, monthly
):
    set_up_card(fake_stripe, cardless, ALWAYS_AUTHENTICATE)
    first = waiting(user, True, price=monthly)
    authenticate(fake_stripe, first.client_secret_for_owner(), success=True)  # the event is missed

    again = StripeSubscription.subscribe(user, price=monthly)

    assert again.pk == first.pk and again.status == "active" and len(creations(fake_stripe)) == 1


def test_a_waiting_subscription_with_other_metadata_is_another_request(fake_stripe, user, cardless, monthly):
    first = waiting(user, False, price=monthly, metadata={"team": "a"})

    second = waiting(user, False, price=monthly, metadata={"team": "b"})

    assert second.pk != first.pk and len(creations(fake_stripe)) == 2


def test_a_retry_naming_another_card_than_the_lost_attempt_s_is_told_to_wait(
    fake_stripe, user, cardless, monthly
):
    set_up_card(fake_stripe, cardless, PLAIN)
    other = saved_card(fake_stripe, cardless, "5555555555554444")
    fake_stripe.proxy.inject("drop_before", method="POST", path_prefix="/v1/subscriptions")
    with pytest.raises(StripeInternalError):
        StripeSubscription.subscribe(user, price=monthly)

    with pytest.raises(StripeOperationInProgress):
        StripeSubscription.subscribe(user, price=monthly, payment_method=other)

    assert len(creations(fake_stripe)) == 1  # the lost one only: the other card charged nothing


def test_reading_the_secret_records_what_stripe_says(fake_stripe, user, cardless, monthly):
    set_up_card(fake_stripe, cardless, ALWAYS_AUTHENTICATE)
    row = waiting(user, True, price=monthly)
    authenticate(fake_stripe, row.client_secret_for_owner(), success=True)
    fresh = StripeSubscription.objects.get(pk=row.pk)

    assert fresh.client_secret_for_owner() is None and fresh.client_secret_for_owner() is None

    fresh.refresh_from_db()
    assert fresh.status == "active"
