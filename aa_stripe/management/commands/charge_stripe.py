"""Charge every pending StripeCharge; safe to run from cron on several hosts at once."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from aa_stripe.exceptions import AaStripeError, StripeInternalError, StripeMethodNotAllowed
from aa_stripe.models import StripeCharge


def pending_charges() -> Any:
    """Charges ``charge_stripe`` takes: not charged, not failed, not manual; oldest first."""
    return StripeCharge.objects.filter(
        is_charged=False, charge_attempt_failed=False, is_manual_charge=False
    ).order_by("pk")


class Command(BaseCommand):
    help = (
        "Charge every StripeCharge that is not charged, not failed and not manual, oldest first. "
        "Rows are claimed one at a time with SELECT ... FOR UPDATE SKIP LOCKED and each outcome is "
        "committed at once, so runs on several hosts share the work and never charge a row twice. "
        "Declined cards are counted, not retried; a network or Stripe server error leaves the row "
        "for the next run. Exits non-zero when any row was left for retry or failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be charged; charge nothing."
        )
        parser.add_argument("--limit", type=int, default=None, help="Charge at most this many rows.")

    def handle(self, *args: Any, dry_run: bool = False, limit: int | None = None, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        if dry_run:
            self._list_pending(limit)
            return
        counts: Counter[str] = Counter()
        last_pk = 0
        while limit is None or counts.total() < limit:
            with transaction.atomic():
                charge = pending_charges().filter(pk__gt=last_pk).select_for_update(skip_locked=True).first()
                if charge is None:
                    break
                last_pk = charge.pk
                counts[self._charge_one(charge)] += 1
        summary = (
            f"charge_stripe: {counts['charged']} charged, {counts['declined']} declined, "
            f"{counts['retry']} left for retry, {counts['error']} errors"
        )
        if counts["retry"] or counts["error"]:
            raise CommandError(summary)
        self.stdout.write(summary)

    def _charge_one(self, charge: StripeCharge) -> str:
        label = f"charge #{charge.pk} ({charge.amount} {charge.currency}, user {charge.user_id})"
        try:
            result = charge.charge()
        except StripeInternalError as err:
            self.stderr.write(f"{label}: left for retry: {err.message}")
            return "retry"
        except StripeMethodNotAllowed as err:
            if charge.is_charged:  # charged by another run between our query and our lock
                return "skipped"
            self.stderr.write(f"{label}: {err.message}")
            return "error"
        except AaStripeError as err:
            self.stderr.write(f"{label}: {err.message}")
            return "error"
        if result is None:
            reason = ((charge.stripe_response or {}).get("error") or {}).get("message", "declined")
            if self.verbosity >= 1:
                self.stdout.write(f"{label}: declined: {reason}")
            return "declined"
        if self.verbosity >= 2:
            self.stdout.write(f"{label}: charged {charge.stripe_charge_id}")
        return "charged"

    def _list_pending(self, limit: int | None) -> None:
        queryset = pending_charges()
        shown = 0
        for charge in queryset.iterator(chunk_size=500):
            if limit is not None and shown >= limit:
                break
            self.stdout.write(
                f"would charge #{charge.pk}: {charge.amount} {charge.currency} for user {charge.user_id}"
            )
            shown += 1
        self.stdout.write(f"charge_stripe --dry-run: {shown} would be charged")
