"""Money in the currency's minor unit: amounts are integers, conversions use this table.

Stripe expects amounts in the smallest unit of the currency: cents for USD, yen for JPY
(no minor unit), fils for BHD (three decimals). A bare ``x100`` charges 100x too much in JPY.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError

# https://docs.stripe.com/currencies#zero-decimal
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
# https://docs.stripe.com/currencies#three-decimal
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())

# Currencies Stripe settles in (lower case, as Stripe returns them).
CURRENCY_CODES = """
usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp bzd cad
cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd gnf gtq gyd hkd
hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt lak lbp lkr lrd lsl mad mdl
mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg
qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd std szl thb tjs tnd top try ttd twd tzs uah
ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw
""".split()

CURRENCY_CHOICES = tuple((code, code.upper()) for code in CURRENCY_CODES)


def validate_currency(value: str) -> None:
    """Model field validator: a lower-case ISO 4217 code Stripe knows."""
    if value and value not in CURRENCY_CODES:
        raise ValidationError(f"{value!r} is not a lower-case currency code Stripe supports (e.g. 'usd').")


def minor_unit_exponent(currency: str) -> int:
    """Number of decimals of ``currency``'s minor unit (JPY 0, USD 2, BHD 3)."""
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


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
