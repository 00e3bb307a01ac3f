"""Customers: create one from a stripe.js token, add a card.

What a retry does is the domain's (``StripeCustomer.create_at_stripe()``, ``add_new_source()``, the
operations journal), so admin, commands and host code get the same: an unknown outcome answers
``STRIPE_API_ERROR`` and asking again with the same token finishes it (one customer, one card).
"""

from __future__ import annotations

from typing import Any

import graphene

from aa_stripe.models import StripeCustomer

from ..errors import StripeErrorCode
from ..types import StripeCustomerType
from .base import StripeMutation, UserError, json_object, object_from_global_id, require_stripe_user


def _token(value: Any, field: str = "stripeJsResponse") -> dict[str, Any]:
    token = json_object(value, field)
    if not isinstance(token.get("id"), str) or not token["id"].startswith(("tok_", "src_")):
        message = "Not a stripe.js token: it needs an id starting with tok_ or src_."
        raise UserError(StripeErrorCode.INVALID, message, field)
    return token


class CreateStripeCustomer(StripeMutation):
    """Create the signed-in user's Stripe customer from a stripe.js token (its card becomes the default)."""

    class Input:
        stripe_js_response = graphene.JSONString(
            required=True, description="The token object stripe.js createToken() returned."
        )

    customer = graphene.Field(StripeCustomerType, description="The new customer.")

    @classmethod
    def perform(cls, info: Any, stripe_js_response: Any, **data: Any) -> dict[str, Any]:
        owner = require_stripe_user(info)
        token = _token(stripe_js_response)
        # A new instance: create_at_stripe() keeps no row for a declined card, and turns it into the
        # row of an earlier request with the same token (unknown outcome, or a double submit).
        customer = StripeCustomer(user=owner, stripe_js_response=token)
        customer.create_at_stripe()
        return {"customer": customer}


class AddStripeCustomerSource(StripeMutation):
    """Add a card (a stripe.js token) to one of your customers; it becomes the default card."""

    class Input:
        customer = graphene.ID(required=True, description="Global id of your StripeCustomer.")
        stripe_js_response = graphene.JSONString(
            required=True, description="The token object stripe.js createToken() returned."
        )

    customer = graphene.Field(StripeCustomerType, description="The customer with its new card.")

    @classmethod
    def perform(cls, info: Any, customer: str, stripe_js_response: Any, **data: Any) -> dict[str, Any]:
        owner = require_stripe_user(info)
        token = _token(stripe_js_response)
        found = object_from_global_id(customer, StripeCustomerType, StripeCustomer.objects, "customer", info)
        if found.user_id != owner.pk:
            raise UserError(StripeErrorCode.NOT_FOUND, "No StripeCustomer with this id.", "customer")
        found.add_new_source(token["id"], stripe_js_response=token)
        return {"customer": found}
