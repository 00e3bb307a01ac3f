"""A ready GraphQL view: ``path("graphql/", include("aa_stripe_graphql.urls"))``.

GraphiQL in DEBUG, Django's CSRF protection kept (session-authenticated front-ends send the
token), ``non_atomic_requests`` (a rollback after Stripe acted would lose our record of it).
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.urls import path
from graphene_django.views import GraphQLView

from .schema import schema


class StripeGraphQLView(GraphQLView):
    """graphene-django's view with this package's schema."""


view = transaction.non_atomic_requests(StripeGraphQLView.as_view(schema=schema, graphiql=settings.DEBUG))

urlpatterns = [path("", view, name="aa-stripe-graphql")]
