"""What every management command of aa_stripe that calls Stripe shares."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from aa_stripe.conf import stripe_settings

MISSING_API_KEY = (
    "STRIPE_API_KEY is not set: add your Stripe secret key (sk_test_... or sk_live_...) to the "
    "settings; this command calls Stripe."
)


class StripeCommand(BaseCommand):
    """A command that calls Stripe: without ``STRIPE_API_KEY`` it stops before doing anything,
    with one line naming the setting (a ``CommandError``), instead of a traceback mid-run."""

    def needs_stripe(self, options: dict[str, Any]) -> bool:
        """Whether this invocation calls Stripe (some options only read the database)."""
        return True

    def execute(self, *args: Any, **options: Any) -> Any:
        if not stripe_settings.API_KEY and self.needs_stripe(options):
            raise CommandError(MISSING_API_KEY)
        return super().execute(*args, **options)
