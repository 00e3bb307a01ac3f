"""Charge every pending StripeCharge; safe to run from cron on several hosts at once."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db.models import Exists

from aa_stripe.exceptions import (
    AaStripeError,
    StripeInternalError,
    StripeInvalidInput,
    StripeMethodNotAllowed,
    StripeOperationInProgress,
)
from aa_stripe.management.base import StripeCommand, enqueue, warn_without_workers
from aa_stripe.models import StripeCharge
from aa_stripe.operations.charge_queue import claim_next, queue, sending_now

#: How many rows with invalid input a run lists one by one (all are counted).
INVALID_ROWS_LISTED = 20


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


class Command(StripeCommand):
    help = (
        "Charge every StripeCharge that is not charged, not failed and not manual, oldest first. "
        "Each charge is an operation of the journal: planned and committed before Stripe is called, "
        "claimed by one run only (another run skips it), its outcome committed at once, no "
        "transaction open during the call; runs on several hosts never charge a row twice. Declined "
        "cards are counted, not retried; a network or Stripe server error leaves the "
        "row for the next run (same idempotency key). Rows whose amount, currency or statement "
        "descriptor Stripe would refuse are listed, never sent (correct them or mark them manual). "
        "Exits non-zero when any row was left for retry, failed or has invalid input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Say per row what a real run would do and why (same reasons and exit code); charge nothing.",
        )
        parser.add_argument("--limit", type=positive_int, default=None, help="Handle at most this many rows.")
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="Enqueue one task per row to charge (aa_stripe.tasks.charge_stripe_charge) on "
            "TASKS['default'] instead of charging here; rows Stripe would refuse are listed, not enqueued.",
        )

    def needs_stripe(self, options: dict[str, Any]) -> bool:
        # the dry run reads only this database; --enqueue leaves the calls to the workers
        return not (options.get("dry_run") or options.get("enqueue"))

    def handle(
        self,
        *args: Any,
        dry_run: bool = False,
        limit: int | None = None,
        enqueue: bool = False,
        **options: Any,
    ) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        self.invalid_listed = 0
        if dry_run and enqueue:
            raise CommandError("--dry-run and --enqueue cannot be combined.")
        if dry_run or enqueue:
            self._each_chargeable(limit, enqueue)
            return
        counts: Counter[str] = Counter()
        last_pk = 0
        while limit is None or counts.total() < limit:
            claimed = self._claim_and_charge(last_pk)
            if claimed is None:
                break
            last_pk, outcome = claimed
            counts[outcome] += 1
        self._more_invalid(counts["invalid"])
        summary = (
            f"charge_stripe: {counts['charged']} charged, {counts['declined']} declined, "
            f"{counts['retry']} left for retry, {counts['error']} errors"
        )
        if counts["skipped"]:
            summary += f", {counts['skipped']} charged meanwhile by another run or in progress there"
        if counts["waiting"]:
            summary += f", {counts['waiting']} waiting for the customer (authentication or processing)"
        if counts["invalid"]:
            summary += f", {counts['invalid']} not sent (invalid input)"
        if counts["retry"] or counts["error"] or counts["invalid"]:
            raise CommandError(summary)
        if self.verbosity >= 1:
            self.stdout.write(summary)

    def _claim_and_charge(self, last_pk: int) -> tuple[int, str] | None:
        """Claim the next pending row and plan its charge (committed), then send it with no
        transaction open (see :func:`claim_next`); (pk, outcome) or None. Signals are sent after
        the journal commits the outcome."""
        claimed = claim_next(queue().filter(pk__gt=last_pk))
        if claimed is None:
            return None
        charge, planned = claimed
        if isinstance(planned, Exception):
            return charge.pk, self._outcome_of_error(charge, planned)
        try:
            result = charge.send_charge(planned)
        except Exception as err:
            return charge.pk, self._outcome_of_error(charge, err)
        return charge.pk, self._outcome_of_result(charge, result)

    def _outcome_of_error(self, charge: StripeCharge, err: Exception) -> str:
        label = self._label(charge)
        if isinstance(err, StripeInternalError):
            self.stderr.write(f"{label}: left for retry: {err.message}")
            return "retry"
        if isinstance(err, StripeInvalidInput):
            self._list_invalid(charge)
            return "invalid"
        if isinstance(err, StripeOperationInProgress) or (
            isinstance(err, StripeMethodNotAllowed) and charge.is_charged
        ):
            return "skipped"  # another run is sending it, or charged it between query and lock
        if isinstance(err, AaStripeError):
            self.stderr.write(f"{label}: {err.message}")
            return "error"
        self._report_crash(charge, err)  # a signal receiver or the database failed: carry on
        return "error"

    def _outcome_of_result(self, charge: StripeCharge, result: dict[str, Any] | None) -> str:
        label = self._label(charge)
        if result is None and not charge.charge_attempt_failed and charge.status != StripeCharge.PENDING:
            if self.verbosity >= 1:
                self.stdout.write(
                    f"{label}: waits for the customer ({charge.status}, {charge.failure_code or '-'})"
                )
            return "waiting"
        if result is None:
            error = (charge.stripe_response or {}).get("error") or {}
            if charge.failure_code and not error:
                error = {"message": f"{charge.failure_code} ({charge.decline_code or '-'})"}
            if self.verbosity >= 1:
                self.stdout.write(f"{label}: declined: {error.get('message', 'declined')}")
            return "declined"
        if self.verbosity >= 2:
            self.stdout.write(f"{label}: charged {charge.stripe_charge_id}")
        return "charged"

    def _each_chargeable(self, limit: int | None, enqueue: bool) -> None:
        """The dry run: say per row what the real run would do, for the same reasons, and send
        nothing. ``enqueue``: the same walk, enqueuing a task per row that the real run would send
        (rows another run is sending now are left to it; the task claims its row as this command
        does, so a row enqueued twice, or charged meanwhile, is charged once)."""
        counts: Counter[str] = Counter()
        rows = queue().exclude(Exists(sending_now())) if enqueue else queue()
        if enqueue:
            warn_without_workers(self)
        for charge in rows.select_related("user", "customer").iterator(chunk_size=500):
            if limit is not None and counts.total() >= limit:
                break
            label = self._label(charge)
            try:
                customer = charge.check_chargeable()
            except StripeInvalidInput:
                self._list_invalid(charge)
                counts["invalid"] += 1
                continue
            except AaStripeError as err:
                self.stderr.write(f"{label}: would fail: {err.message}")
                counts["error"] += 1
                continue
            counts["charge"] += 1
            if enqueue:
                self._enqueue(charge, counts["charge"] - 1)
                continue
            if self.verbosity >= 1:
                again = (
                    f" (re-sent as attempt {charge.attempt} went: its answer was lost)"
                    if charge.outcome_unknown
                    else ""
                )
                self.stdout.write(
                    f"would charge #{charge.pk}: {charge.amount} {charge.currency} for user "
                    f"{charge.user_id}, customer {customer.stripe_customer_id}{again}"
                )
        self._more_invalid(counts["invalid"])
        if enqueue:
            summary = f"charge_stripe --enqueue: {counts['charge']} enqueued"
        else:
            summary = f"charge_stripe --dry-run: {counts['charge']} would be charged"
        if counts["error"]:
            summary += f", {counts['error']} would fail"
        if counts["invalid"]:
            summary += f", {counts['invalid']} would not be sent (invalid input)"
        if counts["error"] or counts["invalid"]:
            raise CommandError(summary)  # as the real run would exit
        self.stdout.write(summary)

    def _enqueue(self, charge: StripeCharge, done: int) -> None:
        try:
            result = enqueue(self, "charge_stripe_charge", charge.pk)
        except CommandError:
            raise
        except Exception as err:  # the broker is down: what is not enqueued stays for the next run
            raise CommandError(
                f"charge_stripe --enqueue: {done} enqueued, then {self._label(charge)} could not be: "
                f"{type(err).__name__}: {err}"
            ) from err
        if self.verbosity >= 2:
            self.stdout.write(f"{self._label(charge)}: enqueued (task {result.id})")

    def _report_crash(self, charge: StripeCharge, err: Exception) -> None:
        """Report an unexpected error (the outcome Stripe gave is committed before any receiver runs)."""
        what = f"charged {charge.stripe_charge_id}, then " if charge.is_charged else ""
        self.stderr.write(f"{self._label(charge)}: {what}{type(err).__name__}: {err}")

    def _list_invalid(self, charge: StripeCharge) -> None:
        """List a row left alone for invalid input (the first ``INVALID_ROWS_LISTED`` of a run)."""
        self.invalid_listed += 1
        if self.invalid_listed > INVALID_ROWS_LISTED:
            return
        problems = "; ".join(
            f"invalid {field}: {' '.join(error.messages)}" for field, error in charge.input_errors()
        )
        self.stderr.write(
            f"{self._label(charge)}: not sent to Stripe, {problems} "
            "(correct the row, or set is_manual_charge to leave it alone)"
        )

    def _more_invalid(self, total: int) -> None:
        if total > INVALID_ROWS_LISTED:
            self.stderr.write(f"... and {total - INVALID_ROWS_LISTED} more rows with invalid input")

    @staticmethod
    def _label(charge: StripeCharge) -> str:
        return f"charge #{charge.pk} ({charge.amount} {charge.currency}, user {charge.user_id})"
