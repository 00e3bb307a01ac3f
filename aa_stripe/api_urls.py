"""URLs a host project includes with ``path("", include("aa_stripe.api_urls"))``.

The webhook endpoint ``aa-stripe/webhooks`` is mounted here by the webhooks feature.
"""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
