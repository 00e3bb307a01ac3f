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


@register(deploy=False)
def check_task_backend(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Deferred parsing with TASKS set to a backend that runs no worker: events are not enqueued."""
    from aa_stripe.task_framework import backend_runs_workers, default_backend

    # Without TASKS in the settings (Django's default ImmediateBackend) deferred parsing is the cron's,
    # as it always was: nothing to warn about.
    if not stripe_settings.WEBHOOK_DEFERRED_PARSING or not settings.is_overridden("TASKS"):
        return []
    try:
        backend = default_backend()
    except Exception as err:  # TASKS names a backend that cannot be loaded: Django's own check says so
        return [
            Warning(
                f"STRIPE_WEBHOOK_DEFERRED_PARSING is on but TASKS['default'] cannot be loaded ({err}): "
                "stored events are not enqueued.",
                hint="Fix TASKS, or run parse_stripe_webhooks from cron.",
                id="aa_stripe.W003",
            )
        ]
    if backend is None or backend_runs_workers(backend):
        return []
    name = type(backend).__name__
    runs = "in the webhook request" if name == "ImmediateBackend" else "never"
    return [
        Warning(
            f"STRIPE_WEBHOOK_DEFERRED_PARSING is on and TASKS['default'] is {name}, which runs no worker: "
            f"stored events are not enqueued to it (the parse would run {runs}), so only "
            "parse_stripe_webhooks (cron) parses them.",
            hint="Set TASKS['default'] to a backend with workers (django-tasks-rq, django-tasks-db, ...) "
            "and run its workers, or run parse_stripe_webhooks from cron and silence aa_stripe.W002.",
            id="aa_stripe.W002",
        )
    ]
