"""StripeCharge.charge() against the fake Stripe: never twice, retryable on unknown outcomes."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from aa_stripe.exceptions import (
    StripeCardError,
    StripeInternalError,
    StripeInvalidInput,
    StripeInvalidRequestError,
    StripeMethodNotAllowed,
    StripeNoActiveCustomer,
)
from aa_stripe.models import StripeCharge
from aa_stripe.signals import stripe_charge_card_exception, stripe_charge_succeeded
from tests.conftest import make_customer
from tests.testapp.models import Order

pytestmark = pytest.mark.django_db

DECLINED_ON_CHARGE = "4000000000000341"


@pytest.fixture
def signals():
    received: dict[str, list] = {"succeeded": [], "card_exception": []}

    def on_success(sender, instance, **kwargs):
        received["succeeded"].append(instance.pk)

    def on_card_exception(sender, instance, exception, **kwargs):
        received["card_exception"].append((instance.pk, exception))

    stripe_charge_succeeded.connect(on_success, sender=StripeCharge)
    stripe_charge_card_exception.connect(on_card_exception, sender=StripeCharge)
    yield received
    stripe_charge_succeeded.disconnect(on_success, sender=StripeCharge)
    stripe_charge_card_exception.disconnect(on_card_exception, sender=StripeCharge)


def new_charge(user, **kwargs) -> StripeCharge:
    return StripeCharge.objects.create(
        user=user, amount=kwargs.pop("amount", 500), description="Charge for stuff", **kwargs
    )


def charges_at_fake(fake_stripe, customer) -> list[dict]:
    return fake_stripe.get("/v1/charges", customer=customer.stripe_customer_id)["data"]


def test_charge_succeeds_and_records_everything(fake_stripe, customer, user, signals):
    charge = new_charge(user, comment="internal", statement_descriptor="My Company")

    result = charge.charge()

    charge.refresh_from_db()
    assert charge.is_charged and not charge.charge_attempt_failed
    assert charge.stripe_charge_id == result["id"]
    assert charge.customer == customer
    assert charge.stripe_response["id"] == result["id"]
    assert signals["succeeded"] == [charge.pk]
    [sent] = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert sent.idempotency_key == f"charge:{charge.uuid}:1"
    assert sent.params["amount"] == "500"
    assert sent.params["currency"] == "usd"
    assert sent.params["statement_descriptor"] == "My Company"
    assert sent.params["metadata[charge_uuid]"] == str(charge.uuid)
    assert sent.params["metadata[member_uuid]"] == str(user.uuid)
    [at_stripe] = charges_at_fake(fake_stripe, customer)
    assert at_stripe["id"] == charge.stripe_charge_id
    assert at_stripe["amount"] == 500


def test_charging_twice_is_refused_without_calling_stripe(fake_stripe, customer, user):
    charge = new_charge(user)
    charge.charge()
    stale_copy = StripeCharge.objects.get(pk=charge.pk)
    stale_copy.is_charged = False  # an old in-memory copy must not fool the lock

    with pytest.raises(StripeMethodNotAllowed, match="Already charged"):
        stale_copy.charge()

    assert len(fake_stripe.proxy.calls("POST", "/v1/charges")) == 1
    assert len(charges_at_fake(fake_stripe, customer)) == 1


def test_card_decline_marks_the_attempt_failed_and_sends_the_signal(fake_stripe, user, signals):
    customer = make_customer(fake_stripe, user, DECLINED_ON_CHARGE)
    charge = new_charge(user)

    assert charge.charge() is None

    charge.refresh_from_db()
    assert charge.charge_attempt_failed and not charge.is_charged
    assert charge.stripe_response["error"]["code"] == "card_declined"
    assert signals["succeeded"] == []
    [(pk, exception)] = signals["card_exception"]
    assert pk == charge.pk
    assert isinstance(exception, StripeCardError)
    assert exception.code == "card_declined"
    assert customer.stripe_customer_id


def test_retrying_a_declined_charge_on_purpose_uses_a_new_key(fake_stripe, user, signals):
    customer = make_customer(fake_stripe, user, DECLINED_ON_CHARGE)
    charge = new_charge(user)
    charge.charge()
    customer.add_new_source(fake_stripe.card_token()["id"])  # the user adds a working card

    charge.charge()

    charge.refresh_from_db()
    assert charge.is_charged and charge.attempt == 2
    keys = [c.idempotency_key for c in fake_stripe.proxy.calls("POST", "/v1/charges")]
    assert keys == [f"charge:{charge.uuid}:1", f"charge:{charge.uuid}:2"]
    assert signals["succeeded"] == [charge.pk]


def test_no_active_customer_is_a_clear_error_and_calls_nothing(fake_stripe, user):
    charge = new_charge(user)

    with pytest.raises(StripeNoActiveCustomer):
        charge.charge()

    charge.refresh_from_db()
    assert not charge.is_charged and not charge.charge_attempt_failed and charge.attempt_started_at is None
    assert fake_stripe.proxy.calls("POST", "/v1/charges") == []


def test_lost_answer_is_retried_with_the_same_key_and_charges_once(fake_stripe, customer, user, signals):
    charge = new_charge(user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")

    with pytest.raises(StripeInternalError):
        charge.charge()

    charge.refresh_from_db()
    assert not charge.is_charged and not charge.charge_attempt_failed  # left for retry
    assert charge.attempt_started_at is not None
    assert len(charges_at_fake(fake_stripe, customer)) == 1  # Stripe did act
    assert signals["succeeded"] == []

    result = charge.charge()

    charge.refresh_from_db()
    assert charge.is_charged and charge.stripe_charge_id == result["id"]
    first, retry = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert first.idempotency_key == retry.idempotency_key == f"charge:{charge.uuid}:1"
    assert retry.replayed
    assert [c["id"] for c in charges_at_fake(fake_stripe, customer)] == [charge.stripe_charge_id]
    assert signals["succeeded"] == [charge.pk]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_leave_the_charge_retryable(fake_stripe, customer, user, status):
    charge = new_charge(user)
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/charges", status=status)

    with pytest.raises(StripeInternalError) as raised:
        charge.charge()

    assert raised.value.http_status == status
    charge.refresh_from_db()
    assert not charge.is_charged and not charge.charge_attempt_failed
    charge.charge()
    charge.refresh_from_db()
    assert charge.is_charged
    assert len(charges_at_fake(fake_stripe, customer)) == 1


def test_sdk_retries_recover_from_a_dropped_connection(fake_stripe, customer, user, settings):
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    charge = new_charge(user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")

    charge.charge()

    charge.refresh_from_db()
    assert charge.is_charged
    assert len(charges_at_fake(fake_stripe, customer)) == 1


def test_unknown_outcome_older_than_the_key_lifetime_is_looked_up_not_resent(fake_stripe, customer, user):
    charge = new_charge(user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")
    with pytest.raises(StripeInternalError):
        charge.charge()
    # 25 hours later (Django's clock) Stripe may have forgotten the key: the charge is looked up at
    # Stripe by its operation id before anything is sent again.
    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        charge.charge()

    charge.refresh_from_db()
    assert charge.is_charged
    assert len(fake_stripe.proxy.calls("POST", "/v1/charges")) == 1  # no second create
    assert [c["id"] for c in charges_at_fake(fake_stripe, customer)] == [charge.stripe_charge_id]


def test_charges_of_the_same_source_object_are_distinct(fake_stripe, customer, user):
    """aa-stripe derived the key from the source object, so a second charge for it was a replay."""
    order = Order.objects.create(title="Two payments")
    content_type = ContentType.objects.get_for_model(Order)
    first = new_charge(user, content_type=content_type, object_id=str(order.pk))
    second = new_charge(user, content_type=content_type, object_id=str(order.pk))

    first.charge()
    second.charge()

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.source == order and second.source == order
    assert first.stripe_charge_id != second.stripe_charge_id
    assert len(charges_at_fake(fake_stripe, customer)) == 2


def test_currency_is_a_field_defaulting_to_the_setting(fake_stripe, customer, user, settings):
    settings.STRIPE_DEFAULT_CURRENCY = "JPY"
    charge = new_charge(user, amount=1500)
    assert charge.currency == "jpy"

    charge.charge()

    [sent] = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert (sent.params["amount"], sent.params["currency"]) == ("1500", "jpy")


def test_explicit_customer_wins_over_the_latest_one(fake_stripe, user):
    first = make_customer(fake_stripe, user)
    make_customer(fake_stripe, user)
    charge = new_charge(user, customer=first)

    charge.charge()

    [sent] = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert sent.params["customer"] == first.stripe_customer_id


def test_refused_parameters_fail_the_attempt_and_raise(fake_stripe, customer, user):
    # (an amount such as -5 no longer reaches Stripe: see test_invalid_input_is_refused_before_stripe)
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/charges", status=400)
    charge = new_charge(user)

    with pytest.raises(StripeInvalidRequestError):
        charge.charge()

    charge.refresh_from_db()
    assert charge.charge_attempt_failed and not charge.is_charged


def test_deprecated_idempotency_key_argument_warns(fake_stripe, customer, user):
    charge = new_charge(user)
    with pytest.warns(DeprecationWarning, match="ignored"):
        charge.charge(idempotency_key="legacy")
    [sent] = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert sent.idempotency_key == f"charge:{charge.uuid}:1"


def test_a_customer_of_another_user_is_never_charged(fake_stripe, customer, other_user):
    charge = new_charge(other_user, customer=customer)

    with pytest.raises(StripeMethodNotAllowed, match="another user"):
        charge.charge()

    assert fake_stripe.proxy.calls("POST", "/v1/charges") == []


def test_an_inactive_explicit_customer_falls_back_to_the_latest_active_one(fake_stripe, user):
    old = make_customer(fake_stripe, user)
    current = make_customer(fake_stripe, user)
    old.is_active = False
    old.save()
    charge = new_charge(user, customer=old)

    charge.charge()

    [sent] = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert sent.params["customer"] == current.stripe_customer_id


# --- input limits: refused before Stripe ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [
        ({"amount": None}, "amount", "invalid_amount"),
        ({"amount": 0}, "amount", "min_value"),
        ({"amount": -5}, "amount", "min_value"),
        ({"amount": 100_000_000}, "amount", "max_value"),
        ({"amount": 150, "currency": "isk"}, "amount", "amount_multiple"),
        ({"amount": 1234, "currency": "bhd"}, "amount", "amount_multiple"),
        ({"currency": "xyz"}, "currency", "invalid_currency"),
        ({"currency": ""}, "currency", "required"),
        ({"statement_descriptor": "abcd"}, "statement_descriptor", "min_length"),
        ({"statement_descriptor": "12345"}, "statement_descriptor", "no_letter"),
        ({"statement_descriptor": "Shop <3"}, "statement_descriptor", "forbidden_characters"),
        ({"statement_descriptor": "Café Shop"}, "statement_descriptor", "non_ascii"),
    ],
)
def test_invalid_input_is_refused_before_stripe(fake_stripe, customer, user, signals, fields, field, code):
    charge = new_charge(user, **fields)
    before = StripeCharge.objects.filter(pk=charge.pk).values().get()
    fake_stripe.proxy.reset()

    with pytest.raises(StripeInvalidInput) as excinfo:
        charge.charge()

    assert (excinfo.value.field, excinfo.value.code) == (field, code)
    assert fake_stripe.proxy.calls() == []  # not a single request
    # Not a failed attempt, nothing half-saved: the row is exactly as it was.
    assert StripeCharge.objects.filter(pk=charge.pk).values().get() == before
    assert signals == {"succeeded": [], "card_exception": []}


def test_a_corrected_row_is_then_charged_with_its_first_key(fake_stripe, customer, user):
    charge = new_charge(user, amount=0)
    with pytest.raises(StripeInvalidInput, match="positive"):
        charge.charge()

    StripeCharge.objects.filter(pk=charge.pk).update(amount=700)
    charge.charge()

    charge.refresh_from_db()
    assert charge.is_charged and charge.attempt == 1
    [sent] = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert (sent.params["amount"], sent.idempotency_key) == ("700", f"charge:{charge.uuid}:1")


def test_already_charged_wins_over_invalid_input(fake_stripe, customer, user):
    charge = new_charge(user, amount=0, is_charged=True)
    with pytest.raises(StripeMethodNotAllowed, match="Already charged"):
        charge.charge()


@pytest.mark.parametrize(
    ("fields", "sent"),
    [
        ({"amount": 99_999_999}, ("99999999", "usd")),
        ({"amount": 1}, ("1", "usd")),
        ({"amount": 10_000, "currency": "isk"}, ("10000", "isk")),
        ({"amount": 1230, "currency": "bhd"}, ("1230", "bhd")),
    ],
)
def test_limits_are_inclusive(fake_stripe, customer, user, fields, sent):
    charge = new_charge(user, statement_descriptor="a" * 22, **fields)

    charge.charge()

    [request] = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert (request.params["amount"], request.params["currency"]) == sent
    assert request.params["statement_descriptor"] == "a" * 22


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
