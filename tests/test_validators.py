"""Stripe's input limits (aa_stripe.validators): amounts, currencies' steps, statement descriptors."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from aa_stripe.exceptions import AaStripeError, StripeInvalidInput
from aa_stripe.models import StripeCharge, StripeSubscriptionPlan
from aa_stripe.validators import (
    MAX_AMOUNT,
    clean_amount,
    require_valid,
    validate_amount,
    validate_plan_amount,
    validate_statement_descriptor,
    validate_statement_descriptor_field,
    validate_stripe_currency,
)


def error_code(validator, *args, **kwargs) -> str | None:
    """The ValidationError code ``validator`` raises, or None when the value is valid."""
    try:
        validator(*args, **kwargs)
    except ValidationError as err:
        assert err.messages and all(message.strip() for message in err.messages)
        return err.code
    return None


# --- amounts ------------------------------------------------------------------------------------


def test_max_amount_is_stripes_eight_digits():
    assert MAX_AMOUNT == 99_999_999


@pytest.mark.parametrize(
    ("amount", "currency", "valid"),
    [
        (100_000_000, "usd", False),
        (100_000_000, "idr", True),
        (999_999_999_999, "idr", True),
        (1_000_000_000_000, "idr", False),
        (100_000_000, "IDR", True),
    ],
)
def test_idr_takes_twelve_digits(amount, currency, valid):
    if valid:
        assert clean_amount(amount, currency) == amount
    else:
        with pytest.raises(ValidationError) as raised:
            clean_amount(amount, currency)
        assert raised.value.code == "max_value"


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (0, "min_value"),
        (-1, "min_value"),
        (1, None),
        (500, None),
        (99_999_999, None),
        (100_000_000, "max_value"),
        (2**63, "max_value"),
        (True, "invalid_amount"),
        (False, "invalid_amount"),
        (1.5, "invalid_amount"),
        (0.1, "invalid_amount"),
        (float("nan"), "invalid_amount"),
        (float("inf"), "invalid_amount"),
        (2.0, None),
        (Decimal("2"), None),
        (Decimal("2.00"), None),
        (Decimal("2.5"), "invalid_amount"),
        (Decimal("NaN"), "invalid_amount"),
        (Decimal("Infinity"), "invalid_amount"),
        (Decimal("1E+8"), "max_value"),
        ("100", "invalid_amount"),
        ("", "invalid_amount"),
        (None, "invalid_amount"),
        ([100], "invalid_amount"),
    ],
)
def test_validate_amount(amount, expected):
    assert error_code(validate_amount, amount) == expected


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (0, None),
        (-1, "min_value"),
        (1, None),
        (99_999_999, None),
        (100_000_000, "max_value"),
        (1.5, "invalid_amount"),
    ],
)
def test_plan_amounts_may_be_zero_for_a_free_plan(amount, expected):
    assert error_code(validate_plan_amount, amount) == expected
    assert error_code(validate_amount, amount, allow_zero=True) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1, "usd", None),
        (1, "jpy", None),
        (150, "isk", "amount_multiple"),  # whole krónur only, in a two-decimal API
        (101, "ISK", "amount_multiple"),
        (100, "isk", None),
        (1234, "bhd", "amount_multiple"),  # three-decimal: the last digit must be 0
        (1230, "bhd", None),
        (5, "kwd", "amount_multiple"),
        (10, "tnd", None),
        (1, "huf", None),  # whole forints only for payouts, not charges
        (1, "twd", None),
        (150, None, None),  # no currency, no step
        (150, "xyz", None),  # unknown currency: validate_currency's business
        (100_000_000, "isk", "max_value"),
    ],
)
def test_amounts_follow_the_currencys_step(amount, currency, expected):
    assert error_code(validate_amount, amount, currency) == expected


def test_clean_amount_returns_the_int_to_send():
    for value in (2, 2.0, Decimal("2"), Decimal("2.000")):
        cleaned = clean_amount(value)
        assert cleaned == 2 and type(cleaned) is int


@pytest.mark.parametrize(
    ("amount", "words"),
    [
        (1.5, ["whole number", "1.5", "never rounded"]),
        ("100", ["whole number", "'100'"]),
        (0, ["positive", "0"]),
        (100_000_000, ["at most 99999999", "100000000"]),
    ],
)
def test_amount_messages_say_what_is_wrong(amount, words):
    with pytest.raises(ValidationError) as excinfo:
        validate_amount(amount)
    message = " ".join(excinfo.value.messages)
    assert all(word in message for word in words), message


def test_the_step_message_names_currency_and_multiple():
    with pytest.raises(ValidationError) as excinfo:
        validate_amount(150, "isk")
    assert excinfo.value.messages == [
        "Stripe takes ISK amounts only in multiples of 100 (in the minor unit), not 150."
    ]


# --- currencies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "expected"),
    [
        ("usd", None),
        ("isk", None),
        ("", "required"),
        (None, "required"),
        ("USD", "invalid_currency"),
        ("xyz", "invalid_currency"),
    ],
)
def test_validate_stripe_currency(currency, expected):
    assert error_code(validate_stripe_currency, currency) == expected


# --- statement descriptors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        (None, None),
        ("abcd", "min_length"),
        ("abcde", None),
        ("My Company", None),
        ("SHOP 1", None),
        ("a" * 22, None),
        ("a" * 23, "max_length"),
        ("12345", "no_letter"),
        ("12345 -.,", "no_letter"),
        ("     ", "no_letter"),
        ("Shop <3", "forbidden_characters"),
        ("Shop >3", "forbidden_characters"),
        ('say "hi"', "forbidden_characters"),
        ("a*b cd", "forbidden_characters"),
        ("O'Brien Shop", "forbidden_characters"),
        ("Back\\slash", "forbidden_characters"),
        ("Café Shop", "non_ascii"),
        ("Żabka Shop", "non_ascii"),
        ("Shop\tNow", "non_ascii"),
        ("Shop\nNow", "non_ascii"),
        ("東京ショップです", "non_ascii"),
        ("Shop #1 & Co. (EU)", None),
        (12345, "invalid"),
    ],
)
def test_validate_statement_descriptor(value, expected):
    assert error_code(validate_statement_descriptor, value) == expected


def test_field_flavour_leaves_the_length_to_max_length():
    assert error_code(validate_statement_descriptor_field, "a" * 23) is None
    assert error_code(validate_statement_descriptor_field, "abcd") == "min_length"
    assert error_code(validate_statement_descriptor_field, "Shop <3") == "forbidden_characters"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("abcd", ["at least 5", "has 4", "empty"]),
        ("a" * 23, ["at most 22", "has 23"]),
        ("12345", ["letter"]),
        ("Shop <3", ["must not contain <"]),
        ("Café Shop", ["ASCII", "'é'"]),
    ],
)
def test_statement_descriptor_messages_say_what_is_wrong(value, words):
    with pytest.raises(ValidationError) as excinfo:
        validate_statement_descriptor(value)
    message = " ".join(excinfo.value.messages)
    assert all(word in message for word in words), message


# --- model fields and require_valid --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"amount": 0}, {"amount"}),
        ({"amount": 100_000_000}, {"amount"}),
        # the currency's own limits come from the model's clean(), reported once
        ({"amount": 100_000_000, "currency": "idr"}, set()),
        ({"amount": 1_000_000_000_000, "currency": "idr"}, {"amount"}),
        ({"amount": 150, "currency": "isk"}, {"amount"}),
        ({"amount": 1234, "currency": "bhd"}, {"amount"}),
        ({"amount": 0, "currency": "isk"}, {"amount"}),
        ({"amount": 150, "currency": "xyz"}, {"currency"}),
        ({"statement_descriptor": "abcd"}, {"statement_descriptor"}),
        ({"statement_descriptor": "a" * 23}, {"statement_descriptor"}),
        ({"statement_descriptor": "Shop <3"}, {"statement_descriptor"}),
        ({"currency": "xyz"}, {"currency"}),
        ({}, set()),
    ],
)
def test_model_fields_validate_charges(user, fields, errors):
    charge = StripeCharge(user=user, **{"amount": 500, "description": "x", **fields})
    found: dict = {}
    try:
        charge.full_clean(exclude=["customer", "content_type", "object_id"], validate_unique=False)
    except ValidationError as err:
        found = err.message_dict
    assert set(found) == errors
    assert all(len(messages) == 1 for messages in found.values()), found  # no field reported twice


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"amount": 0}, set()),  # a free plan
        ({"amount": -1}, {"amount"}),
        ({"amount": 100_000_000}, {"amount"}),
        ({"amount": 100_000_000, "currency": "idr"}, set()),
        ({"amount": 150, "currency": "isk"}, {"amount"}),
        ({"amount": 0, "currency": "isk"}, set()),  # a free plan
        ({"statement_descriptor": "12345"}, {"statement_descriptor"}),
        ({}, set()),
    ],
)
def test_model_fields_validate_plans(fields, errors):
    plan = StripeSubscriptionPlan(**{"amount": 500, "name": "Gold", "interval": "month", **fields})
    found: dict = {}
    try:
        plan.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as err:
        found = err.message_dict
    assert set(found) == errors


def test_require_valid_raises_the_librarys_exception():
    assert require_valid("amount", clean_amount, Decimal("7")) == 7
    with pytest.raises(StripeInvalidInput) as excinfo:
        require_valid("amount", clean_amount, 1.5)
    err = excinfo.value
    assert (err.field, err.code) == ("amount", "invalid_amount")
    assert "1.5" in err.message
    assert isinstance(err, AaStripeError) and isinstance(err, ValueError)
    assert isinstance(err.__cause__, ValidationError)
