"""``StripeQuery`` and ``StripeMutation`` for a host's schema, and a ready ``schema`` of them alone.

class Query(StripeQuery, graphene.ObjectType): ...
class Mutation(StripeMutation, graphene.ObjectType): ...
"""

from __future__ import annotations

import graphene

from .mutations.customers import AddStripeCustomerSource, CreateStripeCustomer
from .queries import StripeQuery


class StripeMutation(graphene.ObjectType):
    """Stripe mutations; mix into your own ``Mutation`` class."""

    create_stripe_customer = CreateStripeCustomer.Field(description=CreateStripeCustomer.__doc__)
    add_stripe_customer_source = AddStripeCustomerSource.Field(description=AddStripeCustomerSource.__doc__)


schema = graphene.Schema(query=StripeQuery, mutation=StripeMutation)

__all__ = ["StripeMutation", "StripeQuery", "schema"]
