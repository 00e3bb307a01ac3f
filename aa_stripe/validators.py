"""Stripe's input limits, checked before anything is sent to Stripe or saved.

Each ``validate_*`` raises :class:`django.core.exceptions.ValidationError` with a message for people
and a ``code`` for programs, so they work as model field validators, in forms and in the GraphQL
API alike. The model methods that call Stripe turn these errors into
:class:`aa_stripe.exceptions.StripeInvalidInput` (see :func:`require_valid`).

Limits (https://docs.stripe.com/currencies, https://docs.stripe.com/get-started/account/statement-descriptors):

- amounts are integers in the currency's minor unit, at least 1 (0 for a free plan), at most
  ``MAX_AMOUNT`` (eight digits: 999,999.99 USD; ``MAX_AMOUNTS``: IDR twelve), and a multiple of the
  currency's step where Stripe has one (``aa_stripe.currencies.AMOUNT_MULTIPLES``: ISK 100,
  three-decimal currencies 10);
- statement descriptors are empty (none) or 5 to 22 printable ASCII characters with at least one
  letter and none of ``< > \\ ' " *``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError

from aa_stripe.currencies import AMOUNT_MULTIPLES, validate_currency
from aa_stripe.exceptions import StripeInvalidInput

#: Stripe's amounts have at most eight digits (99,999,999 cents is 999,999.99 USD)...
MAX_AMOUNT = 99_999_999
#: ...except in these currencies (IDR: twelve digits).
MAX_AMOUNTS: dict[str, int] = {"idr": 999_999_999_999}


#: The largest amount in any currency: all a field validator, which cannot see the currency, checks.
LARGEST_AMOUNT = max(MAX_AMOUNT, *MAX_AMOUNTS.values())


def max_amount(currency: str | None) -> int:
    """The largest amount Stripe takes in ``currency`` (its minor unit)."""
    return MAX_AMOUNTS.get((currency or "").lower(), MAX_AMOUNT)


#: The smallest amount of a charge or refund (Stripe's per-currency minimum charge, e.g. 0.50 USD,
#: depends on the settlement currency and is left to Stripe).
MIN_AMOUNT = 1

STATEMENT_DESCRIPTOR_MIN_LENGTH = 5
STATEMENT_DESCRIPTOR_MAX_LENGTH = 22
#: Characters Stripe refuses in statement descriptors.
STATEMENT_DESCRIPTOR_FORBIDDEN = frozenset("<>\\'\"*")


def clean_amount(amount: Any, currency: str | None = None, *, allow_zero: bool = False) -> int:
    """``amount`` as the ``int`` to send to Stripe, else ``ValidationError``.

    Accepted: an ``int`` (not a ``bool``), or a ``float``/``Decimal`` without a fraction
    (``Decimal("2")``); never a string, never rounded (``1.5`` is refused, not made ``1``).
    ``currency`` (lower case) adds its step, e.g. whole krónur for ISK, and its maximum.
    """
    return _clean_amount(amount, currency, allow_zero=allow_zero, limit=max_amount(currency))


def _clean_amount(amount: Any, currency: str | None, *, allow_zero: bool, limit: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int | float | Decimal):
        raise ValidationError(
            "The amount must be a whole number in the currency's minor unit (e.g. 1050 for 10.50 USD), "
            "not %(value)r.",
            code="invalid_amount",
            params={"value": amount},
        )
    if not isinstance(amount, int):
        finite = amount.is_finite() if isinstance(amount, Decimal) else math.isfinite(amount)
        if not finite or amount != int(amount):
            raise ValidationError(
                "The amount must be a whole number in the currency's minor unit (e.g. 1050 for "
                "10.50 USD), not %(value)s: it is never rounded.",
                code="invalid_amount",
                params={"value": amount},
            )
        amount = int(amount)
    minimum = 0 if allow_zero else MIN_AMOUNT
    if amount < minimum:
        raise ValidationError(
            "The amount must be zero or positive, not %(value)s."
            if allow_zero
            else "The amount must be positive (at least 1 in the currency's minor unit), not %(value)s.",
            code="min_value",
            params={"value": amount, "limit_value": minimum},
        )
    if amount > limit:
        raise ValidationError(
            "The amount must be at most %(limit_value)s in the currency's minor unit (Stripe's "
            "limit), not %(value)s.",
            code="max_value",
            params={"value": amount, "limit_value": limit},
        )
    multiple = AMOUNT_MULTIPLES.get((currency or "").lower())
    if multiple and amount % multiple:
        raise ValidationError(
            "Stripe takes %(currency)s amounts only in multiples of %(multiple)s (in the minor unit), "
            "not %(value)s.",
            code="amount_multiple",
            params={"value": amount, "currency": (currency or "").upper(), "multiple": multiple},
        )
    return amount


def validate_amount(amount: Any, currency: str | None = None, *, allow_zero: bool = False) -> None:
    """A charge or refund amount: an integer from 1 to ``MAX_AMOUNT`` in the minor unit
    (with ``currency``: its own maximum and step)."""
    clean_amount(amount, currency, allow_zero=allow_zero)


def validate_plan_amount(amount: Any, currency: str | None = None) -> None:
    """A plan's price: like :func:`validate_amount`, but 0 (a free plan) is allowed, as at Stripe."""
    clean_amount(amount, currency, allow_zero=True)


def validate_amount_field(amount: Any) -> None:
    """Field validator of charge amounts: what holds in every currency (a positive integer up to
    ``LARGEST_AMOUNT``); the model's ``clean()`` adds the currency's own limits
    (:func:`validate_amount_for_currency`)."""
    _clean_amount(amount, None, allow_zero=False, limit=LARGEST_AMOUNT)


def validate_plan_amount_field(amount: Any) -> None:
    """:func:`validate_amount_field` for plans: 0 (a free plan) is allowed."""
    _clean_amount(amount, None, allow_zero=True, limit=LARGEST_AMOUNT)


def validate_amount_for_currency(amount: Any, currency: Any, *, allow_zero: bool = False) -> None:
    """For a model's ``clean()``: ``ValidationError({"amount": ...})`` when Stripe does not take
    ``amount`` in ``currency`` (its maximum, its step). Silent when the field validators already
    refuse the amount or the currency, so that nothing is reported twice."""
    try:
        _clean_amount(amount, None, allow_zero=allow_zero, limit=LARGEST_AMOUNT)
        validate_stripe_currency(currency)
    except ValidationError:
        return
    try:
        clean_amount(amount, currency, allow_zero=allow_zero)
    except ValidationError as err:
        raise ValidationError({"amount": err}) from None


def validate_stripe_currency(value: Any) -> None:
    """A currency to send to Stripe: required, lower case and in Stripe's table."""
    if not value:
        raise ValidationError("A currency is required (e.g. 'usd').", code="required")
    validate_currency(value)


def validate_statement_descriptor(value: Any) -> None:
    """Empty (no descriptor), or 5 to 22 printable ASCII characters, at least one of them a letter,
    none of them ``< > \\ ' " *``."""
    _check_statement_descriptor(value, check_max_length=True)


def validate_statement_descriptor_suffix(value: Any, prefix: str | None = None) -> None:
    """A card PaymentIntent's ``statement_descriptor_suffix``: the statement shows
    ``<prefix>* <suffix>``, at most 22 characters in all. ``prefix`` defaults to the account's, as
    STRIPE_STATEMENT_DESCRIPTOR_PREFIX says (empty: only the suffix's own limits are checked)."""
    if not value:
        return
    if prefix is None:
        from aa_stripe.conf import stripe_settings

        prefix = stripe_settings.STATEMENT_DESCRIPTOR_PREFIX or ""
    if prefix and len(prefix) + 2 + len(value) > STATEMENT_DESCRIPTOR_MAX_LENGTH:
        raise ValidationError(
            "With the prefix %(prefix)r the statement descriptor is %(length)s characters; Stripe allows "
            "%(limit_value)s (prefix, '* ', then this suffix).",
            code="max_length",
            params={
                "prefix": prefix,
                "length": len(prefix) + 2 + len(value),
                "limit_value": STATEMENT_DESCRIPTOR_MAX_LENGTH,
            },
        )


def validate_statement_descriptor_field(value: Any) -> None:
    """:func:`validate_statement_descriptor` for a ``CharField(max_length=22)``: the field's own
    ``max_length`` reports a value that is too long, so it is not reported twice."""
    _check_statement_descriptor(value, check_max_length=False)


def _check_statement_descriptor(value: Any, *, check_max_length: bool) -> None:
    if value is None or value == "":
        return
    if not isinstance(value, str):
        raise ValidationError(
            "The statement descriptor must be text, not %(value)r.", code="invalid", params={"value": value}
        )
    params = {"value": value, "length": len(value)}
    if len(value) < STATEMENT_DESCRIPTOR_MIN_LENGTH:
        raise ValidationError(
            "The statement descriptor must have at least %(limit_value)s characters (it has %(length)s); "
            "leave it empty for none.",
            code="min_length",
            params={**params, "limit_value": STATEMENT_DESCRIPTOR_MIN_LENGTH},
        )
    if check_max_length and len(value) > STATEMENT_DESCRIPTOR_MAX_LENGTH:
        raise ValidationError(
            "The statement descriptor must have at most %(limit_value)s characters (it has %(length)s).",
            code="max_length",
            params={**params, "limit_value": STATEMENT_DESCRIPTOR_MAX_LENGTH},
        )
    unprintable = sorted({char for char in value if not " " <= char <= "~"})
    if unprintable:
        raise ValidationError(
            "The statement descriptor may use printable Latin (ASCII) characters only, not %(chars)s.",
            code="non_ascii",
            params={**params, "chars": " ".join(repr(char) for char in unprintable)},
        )
    forbidden = sorted(STATEMENT_DESCRIPTOR_FORBIDDEN.intersection(value))
    if forbidden:
        raise ValidationError(
            "The statement descriptor must not contain %(chars)s (Stripe refuses < > \\ ' \" *).",
            code="forbidden_characters",
            params={**params, "chars": " ".join(forbidden)},
        )
    if not any("a" <= char.lower() <= "z" for char in value):
        raise ValidationError(
            "The statement descriptor must contain at least one letter.", code="no_letter", params=params
        )


def require_valid(field: str, validator: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``validator``; its ``ValidationError`` becomes :class:`StripeInvalidInput` on ``field``.

    For code about to call Stripe: the exception is one of the library's (``AaStripeError``)."""
    try:
        return validator(*args, **kwargs)
    except ValidationError as err:
        raise StripeInvalidInput(" ".join(err.messages), field=field, code=err.code) from err


#: A recurring price bills at most every three years (Stripe: "3 years, 36 months, or 156 weeks";
#: days counted as 3 x 365).
MAX_INTERVAL_COUNTS: dict[str, int] = {"day": 1095, "week": 156, "month": 36, "year": 3}


def validate_recurring(interval: Any, interval_count: Any) -> None:
    """A price's billing period: none (a one-time price, with no count), or one of day, week,
    month, year with a count from 1 to three years' worth (``MAX_INTERVAL_COUNTS``)."""
    if not interval:
        if interval_count is not None:
            raise ValidationError(
                "A one-time price has no interval count; give an interval too.", code="no_interval"
            )
        return
    if interval not in MAX_INTERVAL_COUNTS:
        raise ValidationError(
            "The interval must be day, week, month or year, not %(value)r.",
            code="invalid_choice",
            params={"value": interval},
        )
    count = 1 if interval_count is None else interval_count
    limit = MAX_INTERVAL_COUNTS[interval]
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
        raise ValidationError(
            "The interval count of a %(interval)s interval is 1 to %(limit_value)s (at most three "
            "years, Stripe's limit), not %(value)s.",
            code="max_value",
            params={"interval": interval, "limit_value": limit, "value": count},
        )
