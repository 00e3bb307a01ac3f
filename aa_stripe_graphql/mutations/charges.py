"""Charges: charge a user's card and refund a charge (staff); pay one's own charge on-session and
read its outcome (the owner, after stripe.js).

A charge that Stripe declined, refused or did not answer keeps its row (GRAPHQL.md): the payload
returns it with the error. A row whose outcome is unknown is retried safely later (same
idempotency key) by the ``charge_stripe`` command; a refund whose outcome is unknown is replayed by
asking for it again. A charge whose bank asks the customer to authenticate (Strong Customer
Authentication) waits for them: ``payStripeCharge`` hands its owner the client secret stripe.js
confirms, ``refreshStripeCharge`` records the outcome.
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

from ..errors import StripeErrorCode, error_from_exception, stripe_error
from ..permissions import require_perm, require_signed_in
from ..types import StripeChargeType
from .base import (
    StripeMutation,
    UserError,
    clean,
    object_from_global_id,
    require_stripe_user,
    with_error,
)
from .payment_methods import own_payment_method

_CHARGE_INPUTS = ("user", "amount", "currency", "description", "comment", "statement_descriptor")
_CHARGE = "charge"


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


#: What the AUTHENTICATION_REQUIRED error of a charge that waits for the customer says.
AUTHENTICATION_MESSAGE = (
    "The bank asks the customer to authenticate this payment: they pay it on-session (payStripeCharge)."
)


def _decline(charge: StripeCharge) -> dict[str, Any]:
    """The CARD_DECLINED error of a charge ``charge()`` found declined: Stripe's error (Charges API) or
    the PaymentIntent's last payment error is kept on the row, its codes in failure_code/decline_code."""
    body = charge.stripe_response or {}
    error = body.get("error") or body.get("last_payment_error") or {}
    declined = StripeCardError(
        error.get("message") or None,
        code=charge.failure_code or error.get("code"),
        decline_code=charge.decline_code or error.get("decline_code"),
        json_body=body,
    )
    return error_from_exception(declined)


def _charge_now(charge: StripeCharge) -> dict[str, Any]:
    try:
        if charge.charge() is None:
            if charge.status in StripeCharge.WAITING:
                error = stripe_error(StripeErrorCode.AUTHENTICATION_REQUIRED, AUTHENTICATION_MESSAGE)
                return {"charge": charge, "errors": [error]}
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

    # Off-session: a card whose bank asks for authentication answers AUTHENTICATION_REQUIRED with the
    # charge, which then waits for its owner (payStripeCharge); stripe_charge_requires_action is sent.

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


def _own_charge(info: Any, owner: Any, global_id: str) -> StripeCharge:
    """The owner's charge behind ``global_id``, else NOT_FOUND on ``charge`` (staff who may see
    others' charges do not pay them)."""
    queryset = StripeCharge.objects.filter(user_id=owner.pk).select_related("customer")
    return object_from_global_id(global_id, StripeChargeType, queryset, _CHARGE, info, visible_only=False)


class PayStripeCharge(StripeMutation):
    """Pay your own unpaid charge on-session: its clientSecret for stripe.js (confirmCardPayment)."""

    # For a charge that waits for you (REQUIRES_ACTION, REQUIRES_PAYMENT_METHOD) or was declined
    # (FAILED). A charge paid, canceled or not waiting is NOT_ALLOWED on charge. stripe.js confirms the
    # payment (3-D Secure included); refreshStripeCharge then records the outcome (the webhook too).

    class Input:
        charge = graphene.ID(required=True, description="Global id of your StripeCharge.")
        payment_method = graphene.ID(
            description="Global id of your StripePaymentMethod to pay with; by default the one the last "
            "attempt used."
        )

    charge = graphene.Field(
        StripeChargeType, description="Your charge, with the clientSecret stripe.js confirms."
    )

    @classmethod
    def perform(
        cls, info: Any, charge: str, payment_method: str | None = None, **data: Any
    ) -> dict[str, Any]:
        owner = require_stripe_user(info)
        found = _own_charge(info, owner, charge)
        method = own_payment_method(info, owner, payment_method) if payment_method is not None else None
        try:
            paying = found.pay_on_session(method)
        except StripeNoActiveCustomer as err:
            field = "paymentMethod" if payment_method is not None else None
            return {"errors": [error_from_exception(err, field)]}
        except StripeMethodNotAllowed as err:  # paid, canceled, not waiting; or in progress elsewhere
            return {"errors": [error_from_exception(err, _CHARGE)]}
        except StripeAPIError as err:  # a new on-session attempt Stripe refused or did not answer
            found.refresh_from_db()
            return with_error("charge", found, err)
        return {"charge": paying}


class RefreshStripeCharge(StripeMutation):
    """Read a charge's PaymentIntent and record its outcome (yours; any with aa_stripe.view_stripecharge)."""

    # After stripe.js finished on-session; the webhook records the same later, once.

    class Input:
        charge = graphene.ID(required=True, description="Global id of the StripeCharge.")

    charge = graphene.Field(StripeChargeType, description="The charge, as Stripe says it is now.")

    @classmethod
    def perform(cls, info: Any, charge: str, **data: Any) -> dict[str, Any]:
        require_signed_in(info)
        found = object_from_global_id(charge, StripeChargeType, StripeCharge.objects, _CHARGE, info)
        try:
            found.refresh_from_stripe()
        except AaStripeError as err:
            found.refresh_from_db()
            return with_error("charge", found, err)
        return {"charge": found}
