"""Charges (staff): charge a user's card, refund a charge.

A charge that Stripe declined, refused or did not answer keeps its row (GRAPHQL.md): the payload
returns it with the error. A row whose outcome is unknown is retried safely later (same
idempotency key) by the ``charge_stripe`` command; a refund whose outcome is unknown is replayed by
asking for it again.
"""

from __future__ import annotations

from typing import Any

import graphene
from django.core.exceptions import ValidationError

from aa_stripe.conf import default_currency
from aa_stripe.exceptions import (
    AaStripeError,
    StripeAPIError,
    StripeCardError,
    StripeMethodNotAllowed,
    StripeNoActiveCustomer,
)
from aa_stripe.models import StripeCharge, StripeCustomer
from aa_stripe.validators import clean_amount

from ..errors import StripeErrorCode, error_from_exception
from ..permissions import require_perm
from ..types import StripeChargeType
from .base import StripeMutation, UserError, clean, object_from_global_id, with_error

_CHARGE_INPUTS = ("user", "amount", "currency", "description", "comment", "statement_descriptor")


def _user(pk: str) -> Any:
    model = StripeCharge._meta.get_field("user").related_model
    try:
        found = model._default_manager.filter(pk=pk).first()
    except (ValueError, TypeError, ValidationError):
        found = None
    if found is None:
        raise UserError(StripeErrorCode.NOT_FOUND, "No user with this id.", "user")
    return found


def check_amount(amount: int, currency: str) -> None:
    """``INVALID`` on ``amount`` unless Stripe takes it in ``currency`` (range, integer, the currency's
    step: see :mod:`aa_stripe.validators`); for refunds, which have no row to ``clean()``."""
    try:
        clean_amount(amount, currency)
    except ValidationError as err:
        raise UserError(StripeErrorCode.INVALID, " ".join(err.messages), "amount") from None


def _decline(charge: StripeCharge) -> dict[str, Any]:
    """The CARD_DECLINED error of a charge ``charge()`` found declined (Stripe's error is kept on the row)."""
    body = charge.stripe_response or {}
    error = body.get("error") or {}
    declined = StripeCardError(
        error.get("message") or None,
        code=error.get("code"),
        decline_code=error.get("decline_code"),
        json_body=body,
    )
    return error_from_exception(declined)


def _charge_now(charge: StripeCharge) -> dict[str, Any]:
    try:
        if charge.charge() is None:
            return {"charge": charge, "errors": [_decline(charge)]}
    except StripeMethodNotAllowed as err:
        # The row is committed, so the charge_stripe command may have charged it meanwhile: never
        # delete a row Stripe may have acted on, only one refused before any call (no customer).
        charge.refresh_from_db()
        if charge.is_charged:
            return {"charge": charge}
        if (
            isinstance(err, StripeNoActiveCustomer)
            and not charge.stripe_charge_id
            and not charge.attempt_started_at
        ):
            charge.delete()
            return {"errors": [error_from_exception(err, "user")]}
        return with_error("charge", charge, err, "charge")
    except StripeAPIError as err:
        return with_error("charge", charge, err)
    return {"charge": charge}


class CreateStripeCharge(StripeMutation):
    """Charge a user's card (staff with aa_stripe.add_stripecharge); declined charges keep their row."""

    class Input:
        user = graphene.ID(required=True, description="Primary key of the user to charge.")
        amount = graphene.Int(required=True, description="In the currency's minor unit (cents for USD).")
        currency = graphene.String(
            description="Lower-case ISO currency code; the default currency if omitted."
        )
        description = graphene.String(required=True, description="Description sent to Stripe.")
        comment = graphene.String(description="Internal comment, shown to staff only.")
        statement_descriptor = graphene.String(
            description="Text on the card statement (up to 22 characters)."
        )
        charge_now = graphene.Boolean(
            default_value=True,
            description="True (default): charge at once; false: leave it to the charge_stripe command.",
        )

    charge = graphene.Field(StripeChargeType, description="The charge (also when declined or unanswered).")

    @classmethod
    def perform(cls, info: Any, user: str, amount: int, **data: Any) -> dict[str, Any]:
        require_perm(info, "add_stripecharge")
        charge = StripeCharge(
            user=_user(user),
            amount=amount,
            currency=(data.get("currency") or default_currency()).lower(),
            description=data.get("description") or "",
            comment=data.get("comment") or "",
            statement_descriptor=data.get("statement_descriptor") or "",
        )
        clean(charge, _CHARGE_INPUTS)  # amount in its currency, statement descriptor limits included
        charge_now = data.get("charge_now") is not False
        if charge_now and StripeCustomer.get_latest_active_customer_for_user(charge.user) is None:
            raise UserError(StripeErrorCode.NO_ACTIVE_CUSTOMER, StripeNoActiveCustomer().message, "user")
        charge.save()
        return _charge_now(charge) if charge_now else {"charge": charge}


class RefundStripeCharge(StripeMutation):
    """Refund a charge, in full or in part (staff with aa_stripe.change_stripecharge)."""

    class Input:
        charge = graphene.ID(required=True, description="Global id of the StripeCharge.")
        amount = graphene.Int(description="In the minor unit; null refunds all that is left.")

    charge = graphene.Field(StripeChargeType, description="The charge, as it is now.")

    @classmethod
    def perform(cls, info: Any, charge: str, amount: int | None = None, **data: Any) -> dict[str, Any]:
        require_perm(info, "change_stripecharge")
        found = object_from_global_id(
            charge, StripeChargeType, StripeCharge.objects, "charge", info, visible_only=False
        )
        _check_refund(found, amount)
        try:
            found.refund(amount)
        except AaStripeError as err:
            found.refresh_from_db()
            field = "charge" if isinstance(err, StripeMethodNotAllowed) else None
            return with_error("charge", found, err, field)
        return {"charge": found}


def _check_refund(charge: StripeCharge, amount: int | None) -> None:
    if not charge.is_charged:
        raise UserError(StripeErrorCode.NOT_ALLOWED, "This charge was not charged.", "charge")
    if amount is not None:
        check_amount(amount, charge.currency)
    if charge.pending_refund_amount is not None:
        return  # the model replays the unconfirmed refund (or says which amount to ask for)
    left = (charge.amount or 0) - charge.amount_refunded
    if charge.is_refunded or left <= 0:
        raise UserError(StripeErrorCode.NOT_ALLOWED, "This charge is refunded in full already.", "charge")
    if amount is not None and amount > left:
        raise UserError(StripeErrorCode.INVALID, f"At most {left} is left to refund.", "amount")
