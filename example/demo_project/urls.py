"""URLs of the demo: the page, GraphQL (GraphiQL in DEBUG), admin, webhooks, sign-in."""

from django.contrib import admin
from django.urls import include, path

from aa_stripe_graphql.views import graphql_view

from .schema import schema
from .views import index, ready

urlpatterns = [
    path("", index, name="demo"),
    path("_demo/ready", ready, name="demo-ready"),  # run_demo.py's readiness probe
    path("graphql/", graphql_view(schema=schema), name="graphql"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("aa_stripe.api_urls")),  # /aa-stripe/webhooks
]
