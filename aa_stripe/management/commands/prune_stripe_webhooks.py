"""``manage.py prune_stripe_webhooks``: delete parsed Stripe webhooks older than some days."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import router
from django.db.models import QuerySet
from django.utils import timezone

from aa_stripe.guard import library_atomic
from aa_stripe.models import StripeWebhook

BATCH_SIZE = 1000


class Command(BaseCommand):
    help = (
        "Delete the parsed Stripe webhooks received (by `created`) more than --older-than DAYS ago. "
        "Unparsed rows, including the ones whose parse failed, are never deleted: they are updates "
        "still to be applied. Deletes in batches of 1000 rows, each in a transaction of its own."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            required=True,
            metavar="DAYS",
            help="Delete parsed rows received more than DAYS days ago (at least 1).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Only count the rows that would be deleted."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than"]
        if days < 1:
            raise CommandError("--older-than must be at least 1 day.")
        cutoff = timezone.now() - timedelta(days=days)
        rows = StripeWebhook.objects.filter(is_parsed=True, created__lt=cutoff)
        before = f"received before {cutoff:%Y-%m-%d %H:%M %Z}".rstrip()
        if options["dry_run"]:
            summary = f"Dry run: would delete {rows.count()} parsed Stripe webhooks {before}."
        else:
            summary = f"Deleted {delete_in_batches(rows)} parsed Stripe webhooks {before}."
        if int(options["verbosity"]) >= 1:
            self.stdout.write(summary)


def delete_in_batches(rows: QuerySet[Any], batch_size: int | None = None) -> int:
    """Delete ``rows`` ``batch_size`` at a time (short transactions, bounded memory); the count deleted."""
    using = router.db_for_write(rows.model)
    batch_size = batch_size or BATCH_SIZE
    deleted = 0
    while True:
        with library_atomic(using=using):
            batch = list(rows.using(using).order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not batch:
                return deleted
            deleted += rows.using(using).filter(pk__in=batch).delete()[0]
