"""System checks: a missing API key outside DEBUG is an error, a missing webhook secret a warning."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from aa_stripe.conf import stripe_settings, webhook_secrets

#: The oldest Stripe API version the PaymentIntents path works with (invoice confirmation_secret,
#: billing periods on subscription items).
PAYMENT_INTENTS_API_VERSION = "2025-03-31"


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
    version = stripe_settings.API_VERSION
    if (
        version
        and stripe_settings.CHARGE_API != "charges"
        and str(version)[:10] < PAYMENT_INTENTS_API_VERSION
    ):
        messages.append(
            Error(
                f"STRIPE_API_VERSION = {version!r} is older than {PAYMENT_INTENTS_API_VERSION}: "
                "subscriptions read their first invoice's confirmation_secret and their billing period "
                "from their items, which older API versions do not have.",
                hint="Remove STRIPE_API_VERSION (the SDK's pinned version is used), set a newer one, or set "
                'STRIPE_CHARGE_API = "charges" to keep the Charges API behaviour.',
                id="aa_stripe.E002",
            )
        )
    return messages
