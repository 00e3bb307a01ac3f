"""Money conversions between major units and Stripe's integer minor units (aa_stripe.currencies)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from aa_stripe.currencies import (
    AMOUNT_MULTIPLES,
    CURRENCY_CHOICES,
    CURRENCY_CODES,
    CURRENCY_EXPONENTS,
    THREE_DECIMAL,
    ZERO_DECIMAL,
    from_minor_units,
    minor_unit_exponent,
    to_minor_units,
    validate_currency,
)

# database=None: no .hypothesis directory written into the project.
property_test = hypothesis_settings(database=None, deadline=None, max_examples=300)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (Decimal("10.50"), "usd", 1050),
        ("10.5", "usd", 1050),
        (10, "usd", 1000),
        (Decimal("0.01"), "usd", 1),
        (Decimal("10.500"), "usd", 1050),  # trailing zeros are not extra precision
        (Decimal("-1.25"), "eur", -125),
        (500, "jpy", 500),
        ("500", "jpy", 500),
        (Decimal("500.0"), "jpy", 500),
        (Decimal("1.234"), "bhd", 1234),
        ("0.001", "kwd", 1),
        (7, "bhd", 7000),
    ],
)
def test_to_minor_units(amount, currency, minor):
    assert to_minor_units(amount, currency) == minor
    assert type(to_minor_units(amount, currency)) is int


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [
        (1050, "usd", "10.50"),
        (1, "usd", "0.01"),
        (0, "usd", "0.00"),
        (-125, "eur", "-1.25"),
        (500, "jpy", "500"),
        (1234, "bhd", "1.234"),
        (7000, "bhd", "7.000"),
    ],
)
def test_from_minor_units_keeps_the_currency_exponent(minor, currency, major):
    result = from_minor_units(minor, currency)
    assert isinstance(result, Decimal)
    assert str(result) == major


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("10.50", "USD", 1050), ("500", "JPY", 500), ("1.234", "BHD", 1234), ("1.234", "Bhd", 1234)],
)
def test_uppercase_currency_codes_are_accepted(amount, currency, minor):
    assert to_minor_units(amount, currency) == minor
    assert from_minor_units(minor, currency) == Decimal(amount)


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("10.555", "usd"),
        (Decimal("0.001"), "usd"),
        ("500.5", "jpy"),
        (Decimal("0.1"), "JPY"),
        ("1.2345", "bhd"),
    ],
)
def test_too_many_decimals_are_refused_not_rounded(amount, currency):
    with pytest.raises(ValueError, match=r"more decimals than " + currency.upper()):
        to_minor_units(amount, currency)


@pytest.mark.parametrize(
    "amount",
    ["NaN", "Infinity", "-Infinity"],
)
def test_non_finite_amounts_are_refused_with_value_error(amount):
    with pytest.raises(ValueError):
        to_minor_units(amount, "usd")


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("usd", 2), ("EUR", 2), ("jpy", 0), ("KRW", 0), ("bhd", 3), ("TND", 3)],
)
def test_minor_unit_exponent(currency, exponent):
    assert minor_unit_exponent(currency) == exponent


def test_special_currencies_are_known_to_stripe():
    assert ZERO_DECIMAL.issubset(CURRENCY_CODES)
    assert THREE_DECIMAL.issubset(CURRENCY_CODES)


@pytest.mark.parametrize("value", ["usd", "jpy", "bhd", ""])
def test_validate_currency_accepts_lower_case_codes(value):
    validate_currency(value)


@pytest.mark.parametrize("value", ["USD", "xyz", "us"])
def test_validate_currency_refuses_unknown_or_upper_case_codes(value):
    with pytest.raises(ValidationError):
        validate_currency(value)


currencies = st.sampled_from(CURRENCY_CODES)


@property_test
@given(minor=st.integers(min_value=-(10**15), max_value=10**15), currency=currencies)
def test_minor_units_round_trip(minor, currency):
    major = from_minor_units(minor, currency)
    assert major.as_tuple().exponent == -minor_unit_exponent(currency)
    assert to_minor_units(major, currency) == minor
    assert to_minor_units(str(major), currency.upper()) == minor


@property_test
@given(
    minor=st.integers(min_value=-(10**12), max_value=10**12),
    extra_digit=st.integers(min_value=1, max_value=9),
    currency=currencies,
)
def test_one_more_decimal_than_allowed_is_refused(minor, extra_digit, currency):
    exponent = minor_unit_exponent(currency)
    # e.g. USD 12.34 + 0.005: a third decimal that is not zero.
    amount = from_minor_units(minor, currency) + Decimal(extra_digit).scaleb(-(exponent + 1))
    with pytest.raises(ValueError):
        to_minor_units(amount, currency)


# --- the table ---------------------------------------------------------------------------------


def test_one_table_gives_every_public_name():
    assert list(CURRENCY_EXPONENTS) == CURRENCY_CODES
    assert tuple((code, code.upper()) for code in CURRENCY_EXPONENTS) == CURRENCY_CHOICES
    assert {code for code, exponent in CURRENCY_EXPONENTS.items() if exponent == 0} == ZERO_DECIMAL
    assert {code for code, exponent in CURRENCY_EXPONENTS.items() if exponent == 3} == THREE_DECIMAL
    assert set(CURRENCY_EXPONENTS.values()) == {0, 2, 3}
    assert all(code == code.lower() and len(code) == 3 for code in CURRENCY_EXPONENTS)
    for code, exponent in CURRENCY_EXPONENTS.items():
        assert minor_unit_exponent(code) == minor_unit_exponent(code.upper()) == exponent


def test_stripes_documented_zero_and_three_decimal_lists():
    # https://docs.stripe.com/currencies#zero-decimal and #three-decimal
    assert set("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()) == ZERO_DECIMAL
    assert set("bhd jod kwd omr tnd".split()) == THREE_DECIMAL


@pytest.mark.parametrize(
    ("currency", "exponent", "multiple"),
    [
        ("isk", 2, 100),  # two decimals in Stripe's API (ISO 4217: none), whole krónur only
        ("huf", 2, None),  # whole forints only for payouts, which this library does not make
        ("twd", 2, None),
        ("ugx", 0, None),
        ("bhd", 3, 10),
        ("kwd", 3, 10),
        ("usd", 2, None),
        ("jpy", 0, None),
    ],
)
def test_stripes_special_cases(currency, exponent, multiple):
    assert CURRENCY_EXPONENTS[currency] == exponent
    assert AMOUNT_MULTIPLES.get(currency) == multiple


def test_isk_converts_with_two_decimals_as_stripes_api_does():
    assert to_minor_units(5, "isk") == 500
    assert from_minor_units(500, "isk") == Decimal("5.00")


def test_unknown_codes_count_as_two_decimal_but_do_not_validate():
    assert minor_unit_exponent("xyz") == 2
    with pytest.raises(ValidationError) as excinfo:
        validate_currency("xyz")
    assert excinfo.value.code == "invalid_currency" and "'xyz'" in excinfo.value.messages[0]
