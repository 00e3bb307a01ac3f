"""``manage.py prune_stripe_operations``: delete finished operations and expired idempotency keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import router
from django.db.models import Model, QuerySet
from django.utils import timezone

from aa_stripe.guard import library_atomic
from aa_stripe.models import StripeOperation, StripeRequestKey
from aa_stripe.models.request_keys import REQUEST_KEY_LIFETIME

BATCH_SIZE = 1000


class Command(BaseCommand):
    help = (
        "Delete the operations of the journal that finished (succeeded or refused) more than "
        "--older-than DAYS ago, and the clients' idempotency keys older than 24 hours (as long as "
        "Stripe keeps its own). Unresolved operations are never deleted, whatever their age: their "
        "outcome is still to be found. Deletes in batches of 1000 rows, each in a transaction of its own."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            required=True,
            metavar="DAYS",
            help="Delete operations resolved more than DAYS days ago (at least 1).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be deleted.")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than"]
        if days < 1:
            raise CommandError("--older-than must be at least 1 day.")
        now = timezone.now()
        operations = StripeOperation.objects.filter(
            state__in=[StripeOperation.SUCCEEDED, StripeOperation.REFUSED],
            resolved_at__lt=now - timedelta(days=days),
        )
        # A key still "running" after 24 hours belongs to a call that died: its operation, if it
        # sent one, is the journal's to finish.
        keys = StripeRequestKey.objects.filter(created__lt=now - REQUEST_KEY_LIFETIME)
        if options["dry_run"]:
            summary = (
                f"Dry run: would delete {operations.count()} resolved operations and "
                f"{keys.count()} idempotency keys."
            )
        else:
            summary = (
                f"Deleted {delete_in_batches(operations)} resolved operations and "
                f"{delete_in_batches(keys)} idempotency keys."
            )
        if int(options["verbosity"]) >= 1:
            self.stdout.write(summary)


def delete_in_batches(rows: QuerySet[Model], batch_size: int = BATCH_SIZE) -> int:
    """Delete ``rows`` ``batch_size`` at a time (short transactions, bounded memory); the count deleted."""
    using = router.db_for_write(rows.model)
    deleted = 0
    while True:
        with library_atomic(using=using):
            batch = list(rows.using(using).order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not batch:
                return deleted
            deleted += rows.using(using).filter(pk__in=batch).delete()[0]
