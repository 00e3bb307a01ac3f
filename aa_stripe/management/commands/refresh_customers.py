"""Update every local customer's cards (sources, default_source) from Stripe's customer list."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from django.db import router
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.guard import library_atomic
from aa_stripe.management.base import StripeCommand
from aa_stripe.management.sync import (
    FRESHNESS_MARGIN,
    WRITE_BATCH,
    newer_than_page,
    sync_pages,
    update_unseen,
)
from aa_stripe.models import StripeCustomer

SYNCED_FIELDS = ["sources", "default_source", "stripe_response", "is_active", "updated"]
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


class Command(StripeCommand):
    help = (
        "Update sources and default_source of every local StripeCustomer from Stripe's customer "
        "list (100 per request, sources expanded when the API version omits them). Local customers "
        "Stripe no longer lists (deleted there) become inactive. Writes in bulk, one round of "
        "queries per page. Safe to run again and on several hosts."
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
                before = (customer.sources, customer.default_source, customer.is_active)
                customer.update_from_stripe_data(by_id[customer.stripe_customer_id], commit=False)
                if (customer.sources, customer.default_source, customer.is_active) == before:
                    counts["unchanged"] += 1
                    continue
                customer.updated = now
                changed.append(customer)
            StripeCustomer.objects.bulk_update(changed, SYNCED_FIELDS, batch_size=WRITE_BATCH)
        counts["updated"] = len(changed)
        return counts
