"""The host project's own schema: its own field beside the library's queries and mutations.

Give every resolver of your own ``@masked``, as the library's are: an unexpected exception (the
database down, a bug) is logged and answered as ``INTERNAL_ERROR`` instead of its text, which
could name tables, SQL or keys.
"""

from __future__ import annotations

import graphene
from graphql import GraphQLResolveInfo

from aa_stripe_graphql.errors import masked
from aa_stripe_graphql.schema import StripeMutation, StripeQuery


class Viewer(graphene.ObjectType):
    """Who is signed in (a field of the host project, not of the library)."""

    username = graphene.String(description="Empty when nobody is signed in.")
    is_authenticated = graphene.Boolean(required=True)


class Query(StripeQuery, graphene.ObjectType):
    viewer = graphene.Field(Viewer, required=True, description="The signed-in user, if any.")

    @staticmethod
    @masked  # as every field of the library: a database outage reads as INTERNAL_ERROR, logged
    def resolve_viewer(root: object, info: GraphQLResolveInfo) -> Viewer:
        user = info.context.user
        return Viewer(
            username=user.get_username() if user.is_authenticated else "",
            is_authenticated=user.is_authenticated,
        )


class Mutation(StripeMutation, graphene.ObjectType):
    pass


schema = graphene.Schema(query=Query, mutation=Mutation)
