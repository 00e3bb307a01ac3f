"""Products and prices (staff): create one at Stripe.

As for plans: an unknown outcome at Stripe keeps the row (its request was frozen before the call)
and returns it with ``STRIPE_API_ERROR``; asking again for the same product or price finishes that
row (so do ``create_at_stripe()``, the admin action and ``reconcile_stripe_operations``), and Stripe
never gets a second one. Any other failure leaves no row.
"""

from __future__ import annotations

from typing import Any

import graphene

from aa_stripe.conf import default_currency
from aa_stripe.exceptions import AaStripeError
from aa_stripe.models import StripePrice, StripeProduct

from ..catalog import StripePriceType, StripeProductType
from ..enums import StripePlanInterval
from ..errors import error_from_exception
from ..permissions import require_perm
from .base import StripeMutation, clean, metadata_object, object_from_global_id, with_error

# Model fields -> input names, for the model's own checks and the errors create_at_stripe() raises.
_INPUT_NAMES = {
    "name": "name",
    "description": "description",
    "product": "product",
    "unit_amount": "unitAmount",
    "currency": "currency",
    "recurring_interval": "recurring",
    "recurring_interval_count": "recurring",
    "nickname": "nickname",
    "lookup_key": "lookupKey",
}


def _create(name: str, row: StripeProduct | StripePrice) -> dict[str, Any]:
    """Create ``row`` at Stripe (or finish the same row's unfinished creation); the payload."""
    row = type(row).unfinished_like(row) or row  # the same request asked again after an unknown outcome
    made_here = row.pk is None
    try:
        row.create_at_stripe()  # commits its plan before Stripe is called: no transaction here
    except AaStripeError as err:
        if row.creation_unfinished:
            return with_error(name, row, err)  # Stripe may have it: the row is kept
        if made_here and row.pk is not None:
            row.delete()  # refused: nothing at Stripe, nothing kept (the journal keeps the refusal)
        field = _INPUT_NAMES.get(getattr(err, "field", None) or "")
        if field is None:
            raise
        return {"errors": [error_from_exception(err, field)]}
    return {name: row}


class CreateStripeProduct(StripeMutation):
    """Create a product at Stripe (staff with aa_stripe.add_stripeproduct)."""

    class Input:
        name = graphene.String(required=True, description="Shown to customers.")
        description = graphene.String(description="A longer text for customers.")
        metadata = graphene.JSONString(description="A flat JSON object of strings, kept at Stripe.")

    product = graphene.Field(StripeProductType, description="The new product.")

    @classmethod
    def perform(cls, info: Any, name: str, **data: Any) -> dict[str, Any]:
        require_perm(info, "add_stripeproduct")
        product = StripeProduct(
            name=name,
            description=data.get("description") or "",
            metadata=metadata_object(data.get("metadata")),
        )
        clean(product, ("name", "description"))
        return _create("product", product)


class StripePriceRecurringInput(graphene.InputObjectType):
    """The billing period of a recurring price (at most three years)."""

    interval = graphene.InputField(StripePlanInterval, required=True, description="Billing period unit.")
    interval_count = graphene.Int(
        default_value=1, description="Billing period length, in intervals (1 to 3 years' worth)."
    )


class CreateStripePrice(StripeMutation):
    """Create a price of a product at Stripe (staff with aa_stripe.add_stripeprice)."""

    class Input:
        product = graphene.ID(
            required=True, description="Global id of the StripeProduct (created at Stripe and active)."
        )
        unit_amount = graphene.Int(
            required=True, description="In the currency's minor unit (cents for USD); 0 for a free price."
        )
        currency = graphene.String(
            description="Lower-case ISO currency code; the default currency if omitted."
        )
        recurring = graphene.InputField(
            StripePriceRecurringInput, description="The billing period; omit it for a one-time price."
        )
        nickname = graphene.String(description="Hidden from customers.")
        lookup_key = graphene.String(
            description="Your own name for the price (up to 200 characters, unique among the prices)."
        )
        metadata = graphene.JSONString(description="A flat JSON object of strings, kept at Stripe.")

    price = graphene.Field(StripePriceType, description="The new price.")

    @classmethod
    def perform(cls, info: Any, product: str, unit_amount: int, **data: Any) -> dict[str, Any]:
        require_perm(info, "add_stripeprice")
        found = object_from_global_id(
            product, StripeProductType, StripeProduct.objects.all(), "product", info, visible_only=False
        )
        recurring = data.get("recurring") or {}
        interval = recurring.get("interval")
        price = StripePrice(
            product=found,
            unit_amount=unit_amount,
            currency=(data.get("currency") or default_currency()).lower(),
            recurring_interval=getattr(interval, "value", interval) or "",
            recurring_interval_count=recurring.get("interval_count") if interval else None,
            nickname=data.get("nickname") or "",
            lookup_key=data.get("lookup_key") or "",
            metadata=metadata_object(data.get("metadata")),
        )
        # The amount in its currency, the billing period, the field limits; the rest is the model's.
        clean(price, [*_INPUT_NAMES, "metadata"], renamed=_INPUT_NAMES)
        return _create("price", price)
