"""Make local invoices match Stripe's: the invoices of known customers made since a day."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import router
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from aa_stripe.guard import library_atomic
from aa_stripe.management.base import RefreshWalkCommand
from aa_stripe.management.sync import newer_than_page, sync_pages
from aa_stripe.models import StripeCustomer, StripeInvoice
from aa_stripe.models.invoices import _id

DEFAULT_DAYS = 35


def since_argument(value: str) -> datetime:
    """``YYYY-MM-DD``, an ISO date-time, or a number of days back."""
    if value.isdigit():
        return timezone.now() - timedelta(days=int(value))
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since {value!r}: give YYYY-MM-DD, an ISO date-time or a number of days.")
        moment = datetime(day.year, day.month, day.day)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


class Command(RefreshWalkCommand):
    help = (
        "Make local StripeInvoice rows match Stripe: page through Stripe's invoices made since --since "
        f"(a day, an ISO date-time or a number of days back; default {DEFAULT_DAYS} days), 100 per "
        "request, and create or update the rows of customers known here (others are skipped). Rows a "
        "webhook changed while a page was read are left to that newer news. Sends no signal (the "
        "invoice.* events do). Safe to run again and on several hosts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", type=str, default=str(DEFAULT_DAYS), metavar="WHEN")

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        since = since_argument(options["since"])
        params = {"created": {"gte": int(since.timestamp())}}
        seen, totals = sync_pages(self, "invoices", self._sync_page, params=params, name="refresh_invoices")
        if self.verbosity >= 1:
            self.stdout.write(
                f"refresh_invoices: {len(seen)} invoices at Stripe since {since:%Y-%m-%d %H:%M}, "
                f"{totals['created']} created, {totals['updated']} updated, "
                f"{totals['unknown']} of customers not known here"
                + (f", {totals['skipped']} left to newer webhooks" if totals["skipped"] else "")
            )

    def _sync_page(self, page: list[dict[str, Any]], requested_at: datetime | None = None) -> Counter[str]:
        """One page: two SELECTs, then a write per changed invoice (saved one by one: secrets are
        redacted on save)."""
        counts: Counter[str] = Counter()
        with library_atomic(using=router.db_for_write(StripeInvoice)):
            # The customers first (the webhook handler's lock order): an invoice a webhook is
            # inserting meanwhile is seen here, not inserted twice.
            customers = {
                customer.stripe_customer_id: customer
                for customer in StripeCustomer.objects.select_for_update()
                .filter(stripe_customer_id__in={_id(data.get("customer")) for data in page})
                .order_by("pk")
            }
            rows = {
                row.stripe_invoice_id: row
                for row in StripeInvoice.objects.select_for_update().filter(
                    stripe_invoice_id__in=[data["id"] for data in page]
                )
            }
            for data in page:
                row = rows.get(data["id"])
                if row is None:
                    customer = customers.get(_id(data.get("customer")))
                    if customer is None:
                        counts["unknown"] += 1
                        continue
                    row = StripeInvoice(customer=customer)
                    counts["created"] += 1
                elif newer_than_page(row.last_event_at, requested_at):
                    counts["skipped"] += 1
                    continue
                else:
                    counts["updated"] += 1
                row.update_from_stripe_data(data)
        return counts
