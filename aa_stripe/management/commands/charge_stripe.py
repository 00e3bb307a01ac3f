"""Charge every pending StripeCharge; safe to run from cron on several hosts at once."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import router, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Length, Mod
from django.db.models.lookups import Exact, GreaterThan, LessThan

from aa_stripe.currencies import AMOUNT_MULTIPLES, CURRENCY_CODES
from aa_stripe.exceptions import (
    AaStripeError,
    StripeInternalError,
    StripeInvalidInput,
    StripeMethodNotAllowed,
)
from aa_stripe.models import StripeCharge
from aa_stripe.validators import (
    MAX_AMOUNT,
    MAX_AMOUNTS,
    MIN_AMOUNT,
    STATEMENT_DESCRIPTOR_FORBIDDEN,
    STATEMENT_DESCRIPTOR_MAX_LENGTH,
    STATEMENT_DESCRIPTOR_MIN_LENGTH,
)

#: How many rows with invalid input a run lists one by one (all are counted).
INVALID_ROWS_LISTED = 20


def _not_done() -> QuerySet[StripeCharge]:
    return StripeCharge.objects.filter(is_charged=False, charge_attempt_failed=False, is_manual_charge=False)


def invalid_input() -> Q:
    """Rows whose amount, currency or statement descriptor Stripe would refuse, in SQL.

    The same rules as :mod:`aa_stripe.validators` (which ``StripeCharge.charge()`` applies), so that
    such rows are never claimed: they are reported, not retried.
    """
    invalid = (
        Q(amount__isnull=True)
        | Q(amount__lt=MIN_AMOUNT)
        | (Q(amount__gt=MAX_AMOUNT) & ~Q(currency__in=list(MAX_AMOUNTS)))
        | ~Q(currency__in=CURRENCY_CODES)
    )
    for currency, limit in MAX_AMOUNTS.items():
        invalid |= Q(currency=currency, amount__gt=limit)
    for currency, multiple in AMOUNT_MULTIPLES.items():
        invalid |= Q(currency=currency) & ~Q(Exact(Mod("amount", multiple), 0))
    descriptor = Length("statement_descriptor")
    bad_descriptor = (
        Q(LessThan(descriptor, STATEMENT_DESCRIPTOR_MIN_LENGTH))
        | Q(GreaterThan(descriptor, STATEMENT_DESCRIPTOR_MAX_LENGTH))
        | Q(statement_descriptor__regex=r"[^ -~]")  # not printable ASCII
        | ~Q(statement_descriptor__regex=r"[A-Za-z]")  # no letter
    )
    for char in sorted(STATEMENT_DESCRIPTOR_FORBIDDEN):
        bad_descriptor |= Q(statement_descriptor__contains=char)
    # An attempt whose answer was lost is re-sent as it went (charge() replays it), never held back.
    in_flight = Q(attempt_started_at__isnull=False)
    return (invalid | (~Q(statement_descriptor="") & bad_descriptor)) & ~in_flight


def pending_charges() -> QuerySet[StripeCharge]:
    """Charges ``charge_stripe`` takes: not charged, not failed, not manual, valid input; oldest first."""
    return _not_done().exclude(invalid_input()).order_by("pk")


def invalid_charges() -> QuerySet[StripeCharge]:
    """Charges ``charge_stripe`` would take but for input Stripe would refuse; oldest first.

    They are reported by every run (and make it exit non-zero) until the row is corrected or set
    ``is_manual_charge``; they are never sent to Stripe nor marked as a failed attempt.
    """
    return _not_done().filter(invalid_input()).order_by("pk")


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


class Command(BaseCommand):
    help = (
        "Charge every StripeCharge that is not charged, not failed and not manual, oldest first. "
        "Each row is claimed with SELECT ... FOR UPDATE SKIP LOCKED in a transaction of its own that "
        "commits its outcome at once, so runs on several hosts share the work and never charge a row "
        "twice. Declined cards are counted, not retried; a network or Stripe server error leaves the "
        "row for the next run (same idempotency key). Rows whose amount, currency or statement "
        "descriptor Stripe would refuse are listed, never sent (correct them or mark them manual). "
        "Exits non-zero when any row was left for retry, failed or has invalid input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be charged; charge nothing."
        )
        parser.add_argument("--limit", type=positive_int, default=None, help="Handle at most this many rows.")

    def handle(self, *args: Any, dry_run: bool = False, limit: int | None = None, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        if dry_run:
            self._list_pending(limit)
            return
        counts: Counter[str] = Counter()
        invalid = self._report_invalid()
        last_pk = 0
        while limit is None or counts.total() < limit:
            claimed = self._claim_and_charge(last_pk)
            if claimed is None:
                break
            last_pk, outcome = claimed
            counts[outcome] += 1
        invalid += counts.pop("invalid", 0)
        summary = (
            f"charge_stripe: {counts['charged']} charged, {counts['declined']} declined, "
            f"{counts['retry']} left for retry, {counts['error']} errors"
        )
        if counts["skipped"]:
            summary += f", {counts['skipped']} charged meanwhile by another run"
        if invalid:
            summary += f", {invalid} not sent (invalid input)"
        if counts["retry"] or counts["error"] or invalid:
            raise CommandError(summary)
        if self.verbosity >= 1:
            self.stdout.write(summary)

    def _claim_and_charge(self, last_pk: int) -> tuple[int, str] | None:
        """Claim the next pending row nobody else holds, charge it, commit; (pk, outcome) or None.

        The claim's row lock is held until the outcome is committed, so another run skips the row
        instead of waiting for it. Receivers of the charge signals run inside this transaction.
        """
        failure: Exception | None = None
        with transaction.atomic(using=router.db_for_write(StripeCharge)):
            queryset = pending_charges().filter(pk__gt=last_pk).select_for_update(skip_locked=True)
            charge = queryset.first()
            if charge is None:
                return None
            try:
                outcome = self._charge_one(charge)
            except Exception as err:  # a signal receiver or the database failed: carry on with the rest
                failure, outcome = err, "error"
        if failure is not None:
            self._report_crash(charge, failure)
        return charge.pk, outcome

    def _charge_one(self, charge: StripeCharge) -> str:
        label = self._label(charge)
        try:
            result = charge.charge()
        except StripeInternalError as err:
            self.stderr.write(f"{label}: left for retry: {err.message}")
            return "retry"
        except StripeInvalidInput as err:  # rules invalid_input() missed: still never sent
            self.stderr.write(f"{label}: {self._invalid_text(err.field or 'input', err.message)}")
            return "invalid"
        except StripeMethodNotAllowed as err:
            if charge.is_charged:  # charged by another run between our query and our lock
                return "skipped"
            self.stderr.write(f"{label}: {err.message}")
            return "error"
        except AaStripeError as err:
            self.stderr.write(f"{label}: {err.message}")
            return "error"
        if result is None:
            error = (charge.stripe_response or {}).get("error") or {}
            if self.verbosity >= 1:
                self.stdout.write(f"{label}: declined: {error.get('message', 'declined')}")
            return "declined"
        if self.verbosity >= 2:
            self.stdout.write(f"{label}: charged {charge.stripe_charge_id}")
        return "charged"

    def _report_crash(self, charge: StripeCharge, err: Exception) -> None:
        """Report an unexpected error; keep a Stripe outcome the rolled-back transaction lost."""
        label = self._label(charge)
        recorded = charge.is_charged or charge.charge_attempt_failed
        if recorded and pending_charges().filter(pk=charge.pk).exists():
            try:
                charge.save()  # Stripe acted: record it now, not only through the key's replay
            except Exception as save_err:
                self.stderr.write(f"{label}: could not record Stripe's outcome: {save_err}")
        what = f"charged {charge.stripe_charge_id}, then " if charge.is_charged else ""
        self.stderr.write(f"{label}: {what}{type(err).__name__}: {err}")

    def _report_invalid(self) -> int:
        """List the rows left alone for invalid input (up to ``INVALID_ROWS_LISTED``); their count."""
        rows = invalid_charges()
        total = rows.count()
        for charge in rows[:INVALID_ROWS_LISTED]:
            problems = "; ".join(
                self._invalid_text(field, " ".join(error.messages)) for field, error in charge.input_errors()
            )
            self.stderr.write(f"{self._label(charge)}: {problems or self._invalid_text('input', '?')}")
        if total > INVALID_ROWS_LISTED:
            self.stderr.write(f"... and {total - INVALID_ROWS_LISTED} more rows with invalid input")
        return total

    @staticmethod
    def _invalid_text(field: str, message: str) -> str:
        return (
            f"not sent to Stripe, invalid {field}: {message} "
            "(correct the row, or set is_manual_charge to leave it alone)"
        )

    @staticmethod
    def _label(charge: StripeCharge) -> str:
        return f"charge #{charge.pk} ({charge.amount} {charge.currency}, user {charge.user_id})"

    def _list_pending(self, limit: int | None) -> None:
        shown = 0
        for charge in pending_charges().iterator(chunk_size=500):
            if limit is not None and shown >= limit:
                break
            if self.verbosity >= 1:
                self.stdout.write(
                    f"would charge #{charge.pk}: {charge.amount} {charge.currency} for user {charge.user_id}"
                )
            shown += 1
        summary = f"charge_stripe --dry-run: {shown} would be charged"
        invalid = invalid_charges().count()
        if invalid:
            summary += f", {invalid} not (invalid input)"
        self.stdout.write(summary)
