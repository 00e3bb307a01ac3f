"""Every setting of the library, with its default, in one table, read through one object.

``stripe_settings.API_KEY`` reads ``settings.STRIPE_API_KEY`` (falling back to the default
below); the cache is dropped whenever Django's ``setting_changed`` fires, so tests that use
``override_settings`` see new values at once.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

# attribute name -> (Django setting name, default)
SETTINGS: dict[str, tuple[str, Any]] = {
    "API_KEY": ("STRIPE_API_KEY", ""),
    "WEBHOOK_ENDPOINT_SECRET": ("STRIPE_WEBHOOK_ENDPOINT_SECRET", ""),
    # None means "the same as AUTH_USER_MODEL", resolved in USER_MODEL below.
    "USER_MODEL": ("STRIPE_USER_MODEL", None),
    "PENDING_WEBHOOKS_THRESHOLD": ("STRIPE_PENDING_WEBHOOKS_THRESHOLD", 20),
    "ENV_PREFIX": ("ENV_PREFIX", ""),
    # None means the API version stripe-python itself is pinned to.
    "API_VERSION": ("STRIPE_API_VERSION", None),
    # None means Stripe itself; tests and the demo point it at a local fake server.
    "API_BASE": ("STRIPE_API_BASE", None),
    "DEFAULT_CURRENCY": ("STRIPE_DEFAULT_CURRENCY", "usd"),
    "MAX_NETWORK_RETRIES": ("STRIPE_MAX_NETWORK_RETRIES", 2),
    "HTTP_TIMEOUT": ("STRIPE_HTTP_TIMEOUT", 30),
    "WEBHOOK_TOLERANCE": ("STRIPE_WEBHOOK_TOLERANCE", 300),
    # Bodies larger than this are refused before they are read.
    "WEBHOOK_MAX_BODY_BYTES": ("STRIPE_WEBHOOK_MAX_BODY_BYTES", 1024 * 1024),
    # With DEBUG on and no secret set, accept unsigned events (local development only).
    "WEBHOOK_ALLOW_UNSIGNED_IN_DEBUG": ("STRIPE_WEBHOOK_ALLOW_UNSIGNED_IN_DEBUG", False),
    # Store only; parse later with `manage.py parse_stripe_webhooks` or your own task queue.
    "WEBHOOK_DEFERRED_PARSING": ("STRIPE_WEBHOOK_DEFERRED_PARSING", False),
    # Deferred parsing with a task backend: each process enqueues one task that parses every waiting
    # event at most once per this many seconds (the task keeps looking until then); 0: a task per event.
    "WEBHOOK_ENQUEUE_WINDOW": ("STRIPE_WEBHOOK_ENQUEUE_WINDOW", 0.5),
    # "payment_intents" (3-D Secure ready) or "charges" (the Charges API, as aa-stripe did).
    "CHARGE_API": ("STRIPE_CHARGE_API", "payment_intents"),
    # Your account's statement descriptor prefix (dashboard), to check prefix + suffix <= 22.
    "STATEMENT_DESCRIPTOR_PREFIX": ("STRIPE_STATEMENT_DESCRIPTOR_PREFIX", ""),
    # Optional: sent to Stripe as charge metadata "origin" when set.
    "PAYMENT_ORIGIN": ("PAYMENT_ORIGIN", None),
    # Seconds a worker may take to send an operation before another may take it over; longer
    # than the slowest call (timeout x retries, plus the 429 back-off).
    "OPERATION_LEASE": ("STRIPE_OPERATION_LEASE", 300),
    # reconcile_stripe_operations mails ADMINS about operations unresolved for longer (seconds).
    "OPERATIONS_ALERT_AFTER": ("STRIPE_OPERATIONS_ALERT_AFTER", 3600),
    # "raise" or "log" a write to Stripe inside one of the library's own transactions (a bug);
    # None: raise in DEBUG, log otherwise (aa_stripe.guard).
    "TRANSACTION_GUARD": ("STRIPE_TRANSACTION_GUARD", None),
}


def user_model_label() -> str:
    """The model that owns customers, charges and subscriptions ("app_label.Model")."""
    return getattr(settings, "STRIPE_USER_MODEL", None) or settings.AUTH_USER_MODEL


class StripeSettings:
    """Attribute access to the library's settings, cached until a setting changes."""

    def __getattr__(self, attr: str) -> Any:
        try:
            setting_name, default = SETTINGS[attr]
        except KeyError:
            raise AttributeError(f"aa_stripe has no setting {attr!r}") from None
        value = getattr(settings, setting_name, default)
        if attr == "USER_MODEL" and not value:
            value = settings.AUTH_USER_MODEL
        if attr == "DEFAULT_CURRENCY":
            value = str(value).lower()
        self.__dict__[attr] = value
        return value

    def reload(self) -> None:
        self.__dict__.clear()


stripe_settings = StripeSettings()

_WATCHED = {name for name, _default in SETTINGS.values()} | {"AUTH_USER_MODEL"}


@receiver(setting_changed)
def _reload_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in _WATCHED:
        stripe_settings.reload()


def webhook_secrets() -> list[str]:
    """The webhook signing secrets: one string, or a list of them while rotating secrets."""
    configured = stripe_settings.WEBHOOK_ENDPOINT_SECRET
    secrets = [configured] if isinstance(configured, str) else list(configured or [])
    return [secret for secret in secrets if secret and secret.strip()]


def default_currency() -> str:
    """Model field default: ``STRIPE_DEFAULT_CURRENCY`` at the time a row is created."""
    return stripe_settings.DEFAULT_CURRENCY
