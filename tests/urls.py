from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("graphql/", include("aa_stripe_graphql.urls")),
    path("", include("aa_stripe.api_urls")),
]
