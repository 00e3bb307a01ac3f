"""URLs a host project includes with ``path("", include("aa_stripe.api_urls"))``."""

from django.urls import URLPattern, path

from aa_stripe.webhooks.view import stripe_webhook_view

urlpatterns: list[URLPattern] = [
    path("aa-stripe/webhooks", stripe_webhook_view, name="stripe-webhooks"),
    path("aa-stripe/webhooks/", stripe_webhook_view, name="stripe-webhooks-slash"),
]
