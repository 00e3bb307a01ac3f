"""A ready GraphQL view: ``path("graphql/", include("aa_stripe_graphql.urls"))``.

GraphiQL in DEBUG, Django's CSRF protection kept (session-authenticated front-ends send the
token), ``non_atomic_requests`` on every database, and the limits of ``aa_stripe_graphql.limits``.
"""

from __future__ import annotations

from django.urls import path

from .views import graphql_view

urlpatterns = [path("", graphql_view(), name="aa-stripe-graphql")]
