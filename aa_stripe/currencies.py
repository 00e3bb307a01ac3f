"""Money in the currency's minor unit: amounts are integers, conversions use this table.

Stripe expects amounts in the smallest unit of the currency: cents for USD, yen for JPY
(no minor unit), fils for BHD (three decimals). A bare ``x100`` charges 100x too much in JPY.

The table follows https://docs.stripe.com/currencies (presentment currencies, zero-decimal,
three-decimal and "special cases"). The exponent is the one Stripe's *API* uses, which is not
always ISO 4217's:

- ISK: ISO 4217 has no minor unit, but Stripe's API keeps 2 decimals (``100`` is 1 krona) and,
  since 2023-04-14, refuses amounts that are not whole krónur (error code
  ``invalid_charge_amount_no_decimal_compatible``): ``AMOUNT_MULTIPLES`` says divisible by 100.
- HUF, TWD: two-decimal for charges; only *payouts* must be whole units (divisible by 100).
  This library makes no payouts, so nothing more is enforced for them.
- BHD, JOD, KWD, OMR, TND (three-decimal): Stripe's payment flows (charges, payment intents,
  refunds) need the last digit to be 0, so amounts must be divisible by 10.
- UGX: zero-decimal at Stripe (in its zero-decimal list).
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError

#: Every currency Stripe settles in (lower case, as Stripe returns them) -> the exponent of its
#: minor unit in Stripe's API (2: cents, 0: no minor unit, 3: thousandths). The order is kept:
#: ``CURRENCY_CHOICES`` (a field's choices, so part of migrations) follows it.
CURRENCY_EXPONENTS: dict[str, int] = {
    "usd": 2,
    "aed": 2,
    "afn": 2,
    "all": 2,
    "amd": 2,
    "ang": 2,
    "aoa": 2,
    "ars": 2,
    "aud": 2,
    "awg": 2,
    "azn": 2,
    "bam": 2,
    "bbd": 2,
    "bdt": 2,
    "bgn": 2,
    "bhd": 3,  # three-decimal: charges and refunds must end in 0
    "bif": 0,
    "bmd": 2,
    "bnd": 2,
    "bob": 2,
    "brl": 2,
    "bsd": 2,
    "bwp": 2,
    "bzd": 2,
    "cad": 2,
    "cdf": 2,
    "chf": 2,
    "clp": 0,
    "cny": 2,
    "cop": 2,
    "crc": 2,
    "cve": 2,
    "czk": 2,
    "djf": 0,
    "dkk": 2,
    "dop": 2,
    "dzd": 2,
    "egp": 2,
    "etb": 2,
    "eur": 2,
    "fjd": 2,
    "fkp": 2,
    "gbp": 2,
    "gel": 2,
    "gip": 2,
    "gmd": 2,
    "gnf": 0,
    "gtq": 2,
    "gyd": 2,
    "hkd": 2,
    "hnl": 2,
    "htg": 2,
    "huf": 2,  # special: 2 for charges; payouts only in whole forints (divisible by 100)
    "idr": 2,
    "ils": 2,
    "inr": 2,
    "isk": 2,  # special: 2 in the API (ISO 4217: 0), whole krónur only (divisible by 100)
    "jmd": 2,
    "jod": 3,  # three-decimal
    "jpy": 0,
    "kes": 2,
    "kgs": 2,
    "khr": 2,
    "kmf": 0,
    "krw": 0,
    "kwd": 3,  # three-decimal
    "kyd": 2,
    "kzt": 2,
    "lak": 2,
    "lbp": 2,
    "lkr": 2,
    "lrd": 2,
    "lsl": 2,
    "mad": 2,
    "mdl": 2,
    "mga": 0,
    "mkd": 2,
    "mmk": 2,
    "mnt": 2,
    "mop": 2,
    "mur": 2,
    "mvr": 2,
    "mwk": 2,
    "mxn": 2,
    "myr": 2,
    "mzn": 2,
    "nad": 2,
    "ngn": 2,
    "nio": 2,
    "nok": 2,
    "npr": 2,
    "nzd": 2,
    "omr": 3,  # three-decimal
    "pab": 2,
    "pen": 2,
    "pgk": 2,
    "php": 2,
    "pkr": 2,
    "pln": 2,
    "pyg": 0,
    "qar": 2,
    "ron": 2,
    "rsd": 2,
    "rub": 2,
    "rwf": 0,
    "sar": 2,
    "sbd": 2,
    "scr": 2,
    "sek": 2,
    "sgd": 2,
    "shp": 2,
    "sle": 2,
    "sos": 2,
    "srd": 2,
    "std": 2,
    "szl": 2,
    "thb": 2,
    "tjs": 2,
    "tnd": 3,  # three-decimal
    "top": 2,
    "try": 2,
    "ttd": 2,
    "twd": 2,  # special: 2 for charges; payouts only in whole dollars (divisible by 100)
    "tzs": 2,
    "uah": 2,
    "ugx": 0,  # zero-decimal at Stripe
    "uyu": 2,
    "uzs": 2,
    "vnd": 0,
    "vuv": 0,
    "wst": 2,
    "xaf": 0,
    "xcd": 2,
    "xof": 0,
    "xpf": 0,
    "yer": 2,
    "zar": 2,
    "zmw": 2,
}

#: Currencies whose amounts Stripe accepts only in multiples of a step (see the module doc).
AMOUNT_MULTIPLES: dict[str, int] = {
    "isk": 100,
    **{code: 10 for code, exponent in CURRENCY_EXPONENTS.items() if exponent == 3},
}

# https://docs.stripe.com/currencies#zero-decimal
ZERO_DECIMAL = frozenset(code for code, exponent in CURRENCY_EXPONENTS.items() if exponent == 0)
# https://docs.stripe.com/currencies#three-decimal
THREE_DECIMAL = frozenset(code for code, exponent in CURRENCY_EXPONENTS.items() if exponent == 3)

# Currencies Stripe settles in (lower case, as Stripe returns them).
CURRENCY_CODES = list(CURRENCY_EXPONENTS)

CURRENCY_CHOICES = tuple((code, code.upper()) for code in CURRENCY_CODES)


def validate_currency(value: str) -> None:
    """Model field validator: a lower-case ISO 4217 code Stripe knows (blank passes: "not set")."""
    if value and value not in CURRENCY_EXPONENTS:
        raise ValidationError(
            "%(value)r is not a lower-case currency code Stripe supports (e.g. 'usd').",
            code="invalid_currency",
            params={"value": value},
        )


def minor_unit_exponent(currency: str) -> int:
    """Number of decimals of ``currency``'s minor unit at Stripe (JPY 0, USD 2, BHD 3; ISK 2).

    A code missing from the table counts as two-decimal, as before the table was explicit;
    ``validate_currency`` is what refuses unknown codes.
    """
    return CURRENCY_EXPONENTS.get(currency.lower(), 2)


def to_minor_units(amount: Decimal | int | str, currency: str) -> int:
    """Major units (``Decimal("10.50")`` USD) to Stripe's integer minor units (``1050``).

    Raises ``ValueError`` when the amount has more decimals than the currency allows,
    instead of rounding money silently.
    """
    scaled = Decimal(str(amount)).scaleb(minor_unit_exponent(currency))
    if not scaled.is_finite():
        raise ValueError(f"{amount} is not an amount of money")
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more decimals than {currency.upper()} allows")
    return int(scaled)


def from_minor_units(amount: int, currency: str) -> Decimal:
    """Stripe's integer minor units (``1050``) to major units (``Decimal("10.50")``)."""
    exponent = minor_unit_exponent(currency)
    return Decimal(int(amount)).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))
