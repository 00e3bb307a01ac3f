"""``manage.py reconcile_stripe_operations``: finish the writes to Stripe that were left unfinished."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import mail_admins
from django.core.management.base import CommandError, CommandParser
from django.db.models import Q, QuerySet
from django.utils import timezone

from aa_stripe.conf import stripe_settings
from aa_stripe.exceptions import AaStripeError, StripeOperationInProgress
from aa_stripe.management.base import StripeCommand, enqueue, warn_without_workers
from aa_stripe.models import StripeCharge, StripeOperation, StripeSubscription
from aa_stripe.operations import journal

logger = logging.getLogger("aa_stripe")

#: at most this many operations are listed in the alert mail (all are counted)
MAX_LISTED = 100
#: charges waiting at Stripe are read again when unchanged this long, while younger than WAITING_READ_FOR
WAITING_READ_EVERY = timedelta(hours=1)
WAITING_READ_FOR = timedelta(days=7)
WAITING_READ_LIMIT = 500


def unfinished(now: Any = None) -> QuerySet[StripeOperation]:
    """Operations to finish: unknown ones, those whose worker's lease ran out, and planned ones no
    worker claimed within a lease (the process died between plan and send); oldest first."""
    now = now or timezone.now()
    return StripeOperation.objects.filter(
        Q(state=StripeOperation.UNKNOWN)
        | Q(state=StripeOperation.SENDING, lease_until__lt=now)
        | Q(state=StripeOperation.PLANNED, created__lt=now - journal.lease())
    ).order_by("id")


class Command(StripeCommand):
    help = (
        "Finish the writes to Stripe (operations of the journal) left unknown, planned or with an "
        "expired lease by a lost answer, a timeout or a killed worker: each is looked up at Stripe "
        "when its key may be gone or a 5xx would be replayed, else sent again with the same key and "
        "parameters, and its outcome recorded on its row (signals included). Safe on several hosts "
        "at once (each operation is claimed). Exits non-zero when any stays unresolved, and mails "
        "ADMINS about those unresolved longer than STRIPE_OPERATIONS_ALERT_AFTER seconds. Also reads "
        "again, once an hour for a week, PaymentIntent charges still waiting for the customer or "
        "processing, and subscriptions whose first payment waits (incomplete), in case "
        "their outcome's webhook was missed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--limit", type=int, default=None, metavar="N", help="Finish at most N operations."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="List the operations that would be finished; send nothing."
        )
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="Enqueue one task per operation to finish (aa_stripe.tasks.reconcile_stripe_operation) "
            "on TASKS['default'] instead of finishing them here; the alert mail and the reads of "
            "waiting charges and subscriptions still run here.",
        )

    def needs_stripe(self, options: dict[str, Any]) -> bool:
        return not options.get("dry_run")

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = int(options["verbosity"])
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1.")
        todo = unfinished()
        if options["limit"]:
            todo = todo[: options["limit"]]
        if options["dry_run"] and options["enqueue"]:
            raise CommandError("--dry-run and --enqueue cannot be combined.")
        if options["dry_run"]:
            for operation in todo:
                self.stdout.write(f"would finish {_label(operation)}")
            return
        counts: Counter[str] = Counter()
        if options["enqueue"]:
            summary = self._enqueue(todo, verbosity)
        else:
            for operation in todo:
                counts[self._finish(operation, verbosity)] += 1
            summary = (
                f"reconcile_stripe_operations: {counts['succeeded']} succeeded, {counts['refused']} "
                f"refused, {counts['unknown']} still unresolved, {counts['busy']} in progress elsewhere"
            )
        self._alert()
        read, paid = self._read_waiting_charges()
        if read and verbosity >= 1:
            self.stdout.write(
                f"reconcile_stripe_operations: {read} charges waiting at Stripe read again, {paid} found paid"
            )
        read, changed = self._read_incomplete_subscriptions()
        if read and verbosity >= 1:
            self.stdout.write(
                f"reconcile_stripe_operations: {read} incomplete subscriptions read again, {changed} changed"
            )
        if counts["unknown"]:
            raise CommandError(summary)
        if verbosity >= 1:
            self.stdout.write(summary)

    def _enqueue(self, todo: QuerySet[StripeOperation], verbosity: int) -> str:
        """One task per operation; a task finds an operation finished meanwhile and does nothing."""
        warn_without_workers(self)
        done = 0
        for operation in todo:
            try:
                result = enqueue(self, "reconcile_stripe_operation", operation.pk)
            except CommandError:
                raise
            except Exception as err:  # the broker is down: the rest stay for the next run
                raise CommandError(
                    f"reconcile_stripe_operations --enqueue: {done} enqueued, then {_label(operation)} "
                    f"could not be: {type(err).__name__}: {err}"
                ) from err
            done += 1
            if verbosity >= 2:
                self.stdout.write(f"{_label(operation)}: enqueued (task {result.id})")
        return f"reconcile_stripe_operations --enqueue: {done} enqueued"

    def _read_waiting_charges(self) -> tuple[int, int]:
        """PaymentIntent charges that wait for the customer or are processing, unchanged for an hour
        and less than a week old: read from Stripe (at most once an hour each), in case both the
        webhook and the front-end's refresh were missed while the customer paid."""
        now = timezone.now()
        waiting = StripeCharge.objects.filter(
            is_charged=False,
            status__in=(*StripeCharge.WAITING, StripeCharge.PROCESSING),
            updated__lt=now - WAITING_READ_EVERY,
            created__gt=now - WAITING_READ_FOR,
        ).exclude(payment_intent_id="")
        read = paid = 0
        for charge in waiting.order_by("pk")[:WAITING_READ_LIMIT]:
            try:
                charge.refresh_from_stripe()
            except AaStripeError as err:
                self.stderr.write(f"charge #{charge.pk} ({charge.payment_intent_id}): {err.message}")
                continue
            read += 1
            paid += charge.is_charged
        return read, paid

    def _read_incomplete_subscriptions(self) -> tuple[int, int]:
        """Subscriptions whose first payment waits for the customer (``incomplete``), unchanged for an
        hour: read from Stripe, at most once an hour each, in case the webhook saying they were paid,
        or lapsed, was missed. Stripe lets them lapse after 23 hours, so each leaves the set soon."""
        now = timezone.now()
        waiting = StripeSubscription.objects.filter(
            status=StripeSubscription.STATUS_INCOMPLETE,
            is_created_at_stripe=True,
            updated__lt=now - WAITING_READ_EVERY,
        )
        read = changed = 0
        for subscription in waiting.order_by("pk")[:WAITING_READ_LIMIT]:
            try:
                subscription.refresh_from_stripe()
            except AaStripeError as err:
                self.stderr.write(
                    f"subscription #{subscription.pk} ({subscription.stripe_subscription_id}): {err.message}"
                )
                continue
            read += 1
            changed += subscription.status != StripeSubscription.STATUS_INCOMPLETE
        return read, changed

    def _finish(self, operation: StripeOperation, verbosity: int) -> str:
        try:
            outcome = journal.reconcile(operation)
        except StripeOperationInProgress:
            return "busy"
        except AaStripeError as err:  # e.g. the lookup itself failed: left for the next run
            self.stderr.write(f"{_label(operation)}: {err.message}")
            return "unknown"
        if outcome.state == StripeOperation.UNKNOWN:
            self.stderr.write(f"{_label(operation)}: still unknown: {outcome.error}")
        elif verbosity >= 2:
            self.stdout.write(f"{_label(operation)}: {outcome.state} {operation.stripe_id}".rstrip())
        return outcome.state

    def _alert(self) -> None:
        """Mail ADMINS about operations unresolved for longer than STRIPE_OPERATIONS_ALERT_AFTER."""
        after = timedelta(seconds=float(stripe_settings.OPERATIONS_ALERT_AFTER))
        stale = StripeOperation.objects.filter(
            state__in=StripeOperation.UNRESOLVED, created__lt=timezone.now() - after
        ).order_by("id")
        total = stale.count()
        if not total:
            return
        prefix = f"[{stripe_settings.ENV_PREFIX}] " if stripe_settings.ENV_PREFIX else ""
        lines = [_label(operation) for operation in stale[:MAX_LISTED]]
        if total > MAX_LISTED:
            lines.append(f"... and {total - MAX_LISTED} more")
        body = (
            f"{total} Stripe operation(s) unresolved for more than {after}: the outcome at Stripe is "
            "not known yet. reconcile_stripe_operations keeps trying; look at them in the admin.\n\n"
            + "\n".join(lines)
        )
        try:
            mail_admins(f"{prefix}{total} Stripe operations unresolved", body)
        except Exception as err:  # the exit code still says so
            logger.exception("reconcile_stripe_operations could not mail ADMINS")
            self.stderr.write(f"could not mail ADMINS: {err}")
        if not getattr(settings, "ADMINS", None):
            self.stderr.write(f"{total} operations unresolved for more than {after} (ADMINS is empty).")


def _label(operation: StripeOperation) -> str:
    target = f"{operation.content_type.model if operation.content_type else '?'} #{operation.object_id}"
    return f"operation #{operation.pk} {operation.kind} {operation.key} ({operation.state}, {target})"
