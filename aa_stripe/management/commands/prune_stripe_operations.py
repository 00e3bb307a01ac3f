"""``manage.py prune_stripe_operations``: delete finished operations and expired idempotency keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from aa_stripe.management.commands.prune_stripe_webhooks import delete_in_batches
from aa_stripe.models import StripeOperation, StripeRequestKey
from aa_stripe.models.request_keys import REQUEST_KEY_LIFETIME


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
