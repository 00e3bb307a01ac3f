"""System checks: a missing API key outside DEBUG is an error, a missing webhook secret a warning."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from aa_stripe.conf import stripe_settings, webhook_secrets


@register(Tags.security, deploy=False)
def check_stripe_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not stripe_settings.API_KEY and not settings.DEBUG:
        messages.append(
            Error(
                "STRIPE_API_KEY is not set.",
                hint="Set STRIPE_API_KEY to your Stripe secret key (sk_live_... or sk_test_...).",
                id="aa_stripe.E001",
            )
        )
    if not webhook_secrets():
        messages.append(
            Warning(
                "STRIPE_WEBHOOK_ENDPOINT_SECRET is not set: the webhook endpoint refuses every event.",
                hint="Copy the endpoint's signing secret (whsec_...) from the Stripe dashboard, "
                "or ignore this warning if you do not use webhooks.",
                id="aa_stripe.W001",
            )
        )
    return messages
