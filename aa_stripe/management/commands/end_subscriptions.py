"""Cancel subscriptions past their end_date; one failure does not stop the rest."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.core.management.base import CommandError, CommandParser

from aa_stripe.exceptions import AaStripeError, StripeAlreadyCanceled, StripeOperationInProgress
from aa_stripe.management.base import StripeCommand
from aa_stripe.models import StripeSubscription


@dataclass
class Failure:
    pk: int
    stripe_subscription_id: str
    user_id: Any
    error: Exception

    def __str__(self) -> str:
        message = self.error.message if isinstance(self.error, AaStripeError) else repr(self.error)
        return f"subscription #{self.pk} {self.stripe_subscription_id} (user {self.user_id}): {message}"


def configured_sentry() -> Any:
    """The ``sentry_sdk`` module when it is installed and initialised, else None."""
    try:
        import sentry_sdk  # optional: only when the host project uses Sentry
    except ImportError:
        return None
    is_initialized = getattr(sentry_sdk, "is_initialized", None)  # 2.x: a client with a DSN
    if is_initialized is not None:
        return sentry_sdk if is_initialized() else None
    hub = getattr(sentry_sdk, "Hub", None)  # sentry-sdk 1.x
    client = hub.current.client if hub is not None else None
    return sentry_sdk if getattr(client, "transport", None) is not None else None


class Command(StripeCommand):
    help = (
        "Cancel at Stripe every running subscription whose end_date has passed (at the end of the "
        "paid period by default, --now to cancel immediately). Each cancellation is an operation of "
        "the journal: planned and committed, claimed by one worker, sent with no transaction open, "
        "recorded; runs on several hosts at once never cancel twice (a subscription another run is "
        "cancelling is counted as in progress there). Failures do not stop the run; they are "
        "reported at the end, through Sentry when sentry_sdk is configured, else on stderr, and the "
        "exit code is then non-zero; reconcile_stripe_operations or the next run finishes them."
    )
    command_name = "end_subscriptions"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", action="store_true", help="Cancel immediately, not at the period end.")

    def handle(self, *args: Any, now: bool = False, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        counts: Counter[str] = Counter()
        failures: list[Failure] = []
        last_pk = 0
        while (subscription := self._next_due(last_pk)) is not None:
            last_pk = subscription.pk
            counts[self._cancel(subscription, now, failures)] += 1
        sent_to = self._report(failures)
        when = "now" if now else "at the period end"
        summary = (
            f"{self.command_name}: {counts['canceled']} canceled ({when}), "
            f"{counts['already']} already canceled, {len(failures)} failed"
        )
        if counts["busy"]:
            summary += f", {counts['busy']} in progress elsewhere"
        if failures:
            raise CommandError(f"{summary}{sent_to}")
        if self.verbosity >= 1:
            self.stdout.write(summary)

    @staticmethod
    def _next_due(last_pk: int) -> StripeSubscription | None:
        # Read afresh each time: what another run finished meanwhile is no longer due.
        due = StripeSubscription.get_subcriptions_for_cancel().filter(pk__gt=last_pk).order_by("pk")
        return due.select_related("plan").first()

    def _cancel(self, subscription: StripeSubscription, now: bool, failures: list[Failure]) -> str:
        try:
            subscription.cancel(at_period_end=not now)
        except StripeAlreadyCanceled:
            return "already"  # canceled meanwhile (dashboard, another host)
        except StripeOperationInProgress:
            return "busy"  # another host is sending this cancellation right now
        except Exception as err:  # one failure must not stop the others
            failures.append(
                Failure(subscription.pk, subscription.stripe_subscription_id, subscription.user_id, err)
            )
            return "failed"
        if self.verbosity >= 2:
            self.stdout.write(f"canceled {subscription.stripe_subscription_id} (user {subscription.user_id})")
        return "canceled"

    def _report(self, failures: list[Failure]) -> str:
        """Send failures to Sentry when it is configured, else write them on stderr."""
        if not failures:
            return ""
        sentry = configured_sentry()
        for failure in failures:
            if sentry is None:
                self.stderr.write(str(failure))
                continue
            sentry.capture_exception(
                failure.error,
                tags={"command": self.command_name},
                extras={"subscription": failure.pk, "stripe_subscription_id": failure.stripe_subscription_id},
            )
        if sentry is None:
            return ""
        sentry.flush()
        return " (reported to Sentry)"
