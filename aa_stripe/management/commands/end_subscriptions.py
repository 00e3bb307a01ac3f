"""Cancel subscriptions past their end_date; one failure does not stop the rest."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from aa_stripe.exceptions import AaStripeError, StripeAlreadyCanceled
from aa_stripe.models import StripeSubscription


def report_to_sentry(error: BaseException) -> bool:
    """Send ``error`` to Sentry when ``sentry_sdk`` is installed and initialised; True if sent."""
    try:
        import sentry_sdk  # optional: only when the host project uses Sentry
    except ImportError:
        return False
    if not sentry_sdk.is_initialized():
        return False
    sentry_sdk.capture_exception(error)
    return True


class Command(BaseCommand):
    help = (
        "Cancel at Stripe every running subscription whose end_date has passed (at the end of the "
        "paid period by default, --now to cancel immediately). Failures are collected and reported "
        "at the end, through Sentry when sentry_sdk is configured, else on stderr; the exit code is "
        "then non-zero."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", action="store_true", help="Cancel immediately, not at the period end.")

    def handle(self, *args: Any, now: bool = False, **options: Any) -> None:
        verbosity = int(options.get("verbosity", 1))
        canceled, failures = 0, []
        for subscription in (
            StripeSubscription.get_subcriptions_for_cancel().select_related("plan").iterator()
        ):
            try:
                subscription.cancel(at_period_end=not now)
            except StripeAlreadyCanceled:
                continue  # canceled meanwhile (another host, the dashboard): nothing left to do
            except AaStripeError as err:
                failures.append((subscription, err))
                continue
            canceled += 1
            if verbosity >= 2:
                self.stdout.write(
                    f"canceled {subscription.stripe_subscription_id} (user {subscription.user_id})"
                )
        for subscription, err in failures:
            if not report_to_sentry(err):
                self.stderr.write(
                    f"subscription #{subscription.pk} {subscription.stripe_subscription_id}: {err.message}"
                )
        when = "now" if now else "at the period end"
        summary = f"end_subscriptions: {canceled} canceled ({when}), {len(failures)} failed"
        if failures:
            raise CommandError(summary)
        self.stdout.write(summary)
