"""Coupons (staff): create one at Stripe, change its metadata, delete it (the row is kept).

Every write goes through the operations journal, with no transaction open while Stripe is called.
When Stripe does not answer a creation, no row is saved yet and the payload says
``STRIPE_API_ERROR``; asking again for the same coupon sends the same request under the same key
(or finds the coupon Stripe made) and returns it, and ``reconcile_stripe_operations`` finishes it
if nobody asks again. The same holds for a metadata change and a deletion.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import graphene
from django.utils import timezone

from aa_stripe.currencies import to_minor_units
from aa_stripe.exceptions import AaStripeError, StripeCouponAlreadyExists
from aa_stripe.models import StripeCoupon

from ..enums import StripeCouponDuration
from ..errors import StripeErrorCode, stripe_error
from ..permissions import require_perm
from ..types import StripeCouponType
from .base import (
    StripeMutation,
    UserError,
    clean,
    metadata_object,
    object_from_global_id,
    positive,
    with_error,
)

_ALREADY_EXISTS = "A coupon with this id exists already."
# Checked by the model's validators; coupon_id too when given (Stripe makes one up otherwise).
_COUPON_INPUTS = (
    "currency",
    "duration_in_months",
    "max_redemptions",
    "percent_off",
    "amount_off",
)


def _check_discount(amount_off: Decimal | None, percent_off: Decimal | None, currency: str | None) -> None:
    # GraphQL's Decimal takes "NaN", "sNaN" and "Infinity", which no comparison below may see.
    for value, field in ((amount_off, "amountOff"), (percent_off, "percentOff")):
        if value is not None and not value.is_finite():
            raise UserError(StripeErrorCode.INVALID, "Must be a finite number.", field)
    if (amount_off is None) == (percent_off is None):
        code = StripeErrorCode.REQUIRED if amount_off is None else StripeErrorCode.INVALID
        raise UserError(code, "Give exactly one of amountOff and percentOff.", "amountOff")
    if percent_off is not None and not 0 < percent_off <= 100:
        raise UserError(StripeErrorCode.INVALID, "Must be more than 0 and at most 100.", "percentOff")
    if amount_off is None:
        return
    if not currency:
        raise UserError(StripeErrorCode.REQUIRED, "amountOff needs a currency.", "currency")
    if amount_off <= 0:
        raise UserError(StripeErrorCode.INVALID, "Must be more than zero.", "amountOff")
    try:
        to_minor_units(amount_off, currency)
    except ValueError as err:
        raise UserError(StripeErrorCode.INVALID, str(err), "amountOff") from None


def _aware(moment: datetime | None) -> datetime | None:
    """A moment without a UTC offset is read in the current time zone, as Django does."""
    if moment is not None and timezone.is_naive(moment):
        return timezone.make_aware(moment)
    return moment


def _check_duration(duration: str, months: int | None, redeem_by: datetime | None) -> None:
    if duration == StripeCoupon.DURATION_REPEATING and months is None:
        raise UserError(
            StripeErrorCode.REQUIRED, "A repeating coupon needs durationInMonths.", "durationInMonths"
        )
    if duration != StripeCoupon.DURATION_REPEATING and months is not None:
        raise UserError(
            StripeErrorCode.INVALID, "Only repeating coupons take durationInMonths.", "durationInMonths"
        )
    if redeem_by is not None and redeem_by <= timezone.now():
        raise UserError(StripeErrorCode.INVALID, "Must be in the future.", "redeemBy")


def _staff_coupon(info: Any, global_id: str) -> StripeCoupon:
    """Any coupon, deleted ones too (the caller's permission was checked)."""
    return object_from_global_id(
        global_id,
        StripeCouponType,
        StripeCoupon.objects.all_with_deleted(),
        "coupon",
        info,
        visible_only=False,
    )


def _refuse_deleted(coupon: StripeCoupon) -> None:
    if coupon.is_deleted:
        raise UserError(StripeErrorCode.NOT_ALLOWED, "This coupon is deleted.", "coupon")


class CreateStripeCoupon(StripeMutation):
    """Create a coupon at Stripe (staff with aa_stripe.add_stripecoupon)."""

    class Input:
        coupon_id = graphene.String(description="The code customers enter; Stripe makes one up if omitted.")
        duration = graphene.Argument(StripeCouponDuration, required=True, description="How long it applies.")
        amount_off = graphene.Decimal(
            description="Amount off in currency units (10 = $10.00); needs currency."
        )
        currency = graphene.String(description="Lower-case ISO currency code of amountOff.")
        percent_off = graphene.Decimal(description="Percent off (e.g. 12.5); instead of amountOff.")
        duration_in_months = graphene.Int(description="Months it applies; required for REPEATING only.")
        max_redemptions = graphene.Int(description="How many times it can be redeemed in total.")
        redeem_by = graphene.DateTime(description="Last moment it can be redeemed (in the future).")
        metadata = graphene.JSONString(description="A flat JSON object of strings, kept at Stripe.")

    coupon = graphene.Field(StripeCouponType, description="The new coupon.")

    @classmethod
    def perform(cls, info: Any, duration: Any, **data: Any) -> dict[str, Any]:
        require_perm(info, "add_stripecoupon")
        duration = getattr(duration, "value", duration)
        currency = (data.get("currency") or "").lower() or None
        _check_discount(data.get("amount_off"), data.get("percent_off"), currency)
        redeem_by = _aware(data.get("redeem_by"))
        _check_duration(duration, data.get("duration_in_months"), redeem_by)
        positive(data.get("max_redemptions"), "maxRedemptions")
        coupon = StripeCoupon(
            coupon_id=data.get("coupon_id") or "",
            duration=duration,
            amount_off=data.get("amount_off"),
            currency=currency,
            percent_off=data.get("percent_off"),
            duration_in_months=data.get("duration_in_months"),
            max_redemptions=data.get("max_redemptions"),
            redeem_by=redeem_by,
            metadata=metadata_object(data.get("metadata")),
        )
        clean(coupon, (*_COUPON_INPUTS, "coupon_id") if coupon.coupon_id else _COUPON_INPUTS)
        try:
            # Refuses a live coupon of this code before Stripe is called; finishes an unfinished
            # creation of the same coupon (a retry) instead of starting another.
            coupon.save()
        except StripeCouponAlreadyExists:
            raise UserError(StripeErrorCode.ALREADY_EXISTS, _ALREADY_EXISTS, "couponId") from None
        return {"coupon": coupon}


class UpdateStripeCoupon(StripeMutation):
    """Set metadata keys of a coupon at Stripe (staff with aa_stripe.change_stripecoupon)."""

    class Input:
        coupon = graphene.ID(required=True, description="Global id of the StripeCoupon.")
        metadata = graphene.JSONString(
            required=True,
            description="Keys to set (a flat JSON object). As at Stripe, keys left out are kept and a key "
            "set to an empty string is removed.",
        )

    coupon = graphene.Field(StripeCouponType, description="The coupon, as it is now.")

    @classmethod
    def perform(cls, info: Any, coupon: str, metadata: Any, **data: Any) -> dict[str, Any]:
        require_perm(info, "change_stripecoupon")
        found = _staff_coupon(info, coupon)
        _refuse_deleted(found)
        found.metadata = metadata_object(metadata, required=True)
        try:
            found.save()
        except AaStripeError as err:
            found.refresh_from_db()
            return with_error("coupon", found, err)
        if found.is_deleted:  # Stripe no longer had it: the row now says so
            return {"coupon": found, "errors": [_deleted_at_stripe()]}
        return {"coupon": found}


def _deleted_at_stripe() -> dict[str, Any]:
    return stripe_error(StripeErrorCode.NOT_ALLOWED, "This coupon was deleted at Stripe.", "coupon")


class DeleteStripeCoupon(StripeMutation):
    """Delete a coupon at Stripe; the row stays, with isDeleted (staff: aa_stripe.delete_stripecoupon)."""

    class Input:
        coupon = graphene.ID(required=True, description="Global id of the StripeCoupon.")

    coupon = graphene.Field(StripeCouponType, description="The coupon, now with isDeleted true.")

    @classmethod
    def perform(cls, info: Any, coupon: str, **data: Any) -> dict[str, Any]:
        require_perm(info, "delete_stripecoupon")
        found = _staff_coupon(info, coupon)
        _refuse_deleted(found)
        try:
            found.delete()
        except AaStripeError as err:
            found.refresh_from_db()
            return with_error("coupon", found, err)
        return {"coupon": found}
