"""Update every local customer's cards (sources, default_source, default_payment_method) from
Stripe's customer list; with ``--payment-methods`` also their saved payment methods (one list
request per customer)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import router
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import AaStripeError
from aa_stripe.guard import library_atomic
from aa_stripe.management.base import RefreshWalkCommand
from aa_stripe.management.sync import (
    FRESHNESS_MARGIN,
    WRITE_BATCH,
    newer_than_page,
    sync_pages,
    update_unseen,
)
from aa_stripe.models import StripeCustomer

SYNCED_FIELDS = [
    "sources",
    "default_source",
    "default_payment_method",
    "stripe_response",
    "is_active",
    "updated",
]
#: From this API version on, Stripe omits ``customer.sources`` unless it is expanded.
SOURCES_EXPANDABLE_SINCE = "2020-08-27"


def list_params() -> dict[str, Any]:
    """Expand the customers' cards when the pinned API version leaves them out of the list."""
    if stripe_api.api_version() >= SOURCES_EXPANDABLE_SINCE:
        return {"expand": ["data.sources"]}
    return {}


def touched_after(customer: StripeCustomer, requested_at: datetime | None) -> bool:
    """True when a webhook may have changed the customer or one of its cards after the page."""
    if newer_than_page(customer.last_event_at, requested_at):
        return True
    if requested_at is None:
        return False
    card_times = (customer.source_event_times or {}).values()
    return any(stamp >= (requested_at - FRESHNESS_MARGIN).timestamp() for stamp in card_times)


class Command(RefreshWalkCommand):
    help = (
        "Update sources, default_source and default_payment_method of every local StripeCustomer "
        "from Stripe's customer list (100 per request, sources expanded when the API version omits "
        "them); with --payment-methods also each active customer's payment methods. Local customers "
        "Stripe no longer lists (deleted there) become inactive. Writes in bulk, one round of "
        "queries per page. Safe to run again and on several hosts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--payment-methods",
            action="store_true",
            help=(
                "Also mirror each active customer's saved payment methods (one Stripe request per "
                "customer; webhooks keep them true between runs)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        started = timezone.now()
        seen, totals = sync_pages(self, "customers", self._sync_page, list_params())
        active = StripeCustomer.objects.filter(is_active=True, is_created_at_stripe=True)
        deactivated = update_unseen(active, "stripe_customer_id", seen, started, is_active=False)
        if self.verbosity >= 1:
            self.stdout.write(
                f"refresh_customers: {len(seen)} at Stripe; {totals['updated']} local customers updated, "
                f"{totals['unchanged']} unchanged, {deactivated} no longer at Stripe marked inactive"
                + (f", {totals['skipped']} left to newer webhooks" if totals["skipped"] else "")
            )
        if not options.get("payment_methods"):
            return
        done, failed = self._refresh_payment_methods()
        if self.verbosity >= 1:
            self.stdout.write(f"refresh_customers: payment methods of {done} customers refreshed")
        if failed:
            raise CommandError(f"refresh_customers: payment methods of {failed} customers could not be read")

    @staticmethod
    def _synced(customer: StripeCustomer) -> tuple[Any, ...]:
        return (
            customer.sources,
            customer.default_source,
            customer.default_payment_method,
            customer.is_active,
        )

    def _refresh_payment_methods(self) -> tuple[int, int]:
        """Each active customer's payment methods (one Stripe list each); (customers done, failed)."""
        done = failed = 0
        active = StripeCustomer.objects.filter(is_active=True, is_created_at_stripe=True).order_by("pk")
        for customer in active.iterator(chunk_size=WRITE_BATCH):
            try:
                customer.refresh_payment_methods()
            except AaStripeError as err:
                failed += 1
                self.stderr.write(
                    f"refresh_customers: payment methods of {customer.stripe_customer_id}: {err.message}"
                )
                continue
            done += 1
        return done, failed

    def _sync_page(self, page: list[dict[str, Any]], requested_at: datetime | None = None) -> Counter[str]:
        """Apply one page of Stripe customers to the local rows: a SELECT and one bulk UPDATE."""
        by_id = {customer["id"]: customer for customer in page}
        now = timezone.now()
        counts: Counter[str] = Counter()
        changed = []
        with library_atomic(using=router.db_for_write(StripeCustomer)):
            for customer in StripeCustomer.objects.select_for_update().filter(stripe_customer_id__in=by_id):
                if touched_after(customer, requested_at):
                    counts["skipped"] += 1
                    continue
                before = self._synced(customer)
                customer.update_from_stripe_data(by_id[customer.stripe_customer_id], commit=False)
                if self._synced(customer) == before:
                    counts["unchanged"] += 1
                    continue
                customer.updated = now
                changed.append(customer)
            StripeCustomer.objects.bulk_update(changed, SYNCED_FIELDS, batch_size=WRITE_BATCH)
        counts["updated"] = len(changed)
        return counts
