"""Make local coupons match Stripe's: create missing rows, update changed ones, mark vanished ones deleted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import router, transaction
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import AaStripeError
from aa_stripe.models import StripeCoupon

# Columns a Stripe coupon fills (see StripeCoupon.values_from_stripe) plus our bookkeeping.
SYNCED_FIELDS = [
    *StripeCoupon.values_from_stripe({"id": ""}).keys(),
    "stripe_response",
    "is_created_at_stripe",
    "is_deleted",
    "updated",
]
#: A row whose last webhook event is this close to (or after) the time a page was requested may
#: hold newer data than the page: it is left alone (Stripe's event times have 1-second resolution
#: and the clocks of Stripe and this host differ a little).
FRESHNESS_MARGIN = timedelta(seconds=5)
WRITE_BATCH = 500


def timed_pages(
    service: str, params: Mapping[str, Any] | None = None
) -> Iterator[tuple[datetime, list[dict[str, Any]]]]:
    """``stripe_api.iterate_pages`` with the time each page was requested (before the request)."""
    pages = stripe_api.iterate_pages(service, params)
    while True:
        requested_at = timezone.now()
        page = next(pages, None)
        if page is None:
            return
        yield requested_at, page


def newer_than_page(last_event_at: datetime | None, requested_at: datetime | None) -> bool:
    """True when a webhook may have written the row after Stripe answered the page."""
    if last_event_at is None or requested_at is None:
        return False
    return last_event_at >= requested_at - FRESHNESS_MARGIN


class Command(BaseCommand):
    help = (
        "Make local StripeCoupon rows match Stripe: page through Stripe's coupons (100 per request), "
        "create the missing rows, update changed ones, and mark deleted the live rows Stripe no longer "
        "has. Writes in bulk, one round of queries per page. Safe to run again and on several hosts."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = int(options.get("verbosity", 1))
        started = timezone.now()
        seen: set[str] = set()  # ids only (~100 bytes each); pages are not kept
        totals: Counter[str] = Counter()
        try:
            for requested_at, page in timed_pages("coupons"):
                totals.update(self._sync_page(page, requested_at))
                seen.update(coupon["id"] for coupon in page)
                if verbosity >= 2:
                    self.stdout.write(f"  {len(seen)} coupons read from Stripe")
        except AaStripeError as err:
            raise CommandError(
                f"refresh_coupons: Stripe error after {len(seen)} coupons "
                f"({totals['created']} created, {totals['updated']} updated): {err.message}"
            ) from err
        deleted = self._mark_vanished(seen, started)
        if verbosity >= 1:
            self.stdout.write(
                f"refresh_coupons: {len(seen)} at Stripe; {totals['created']} created, "
                f"{totals['updated']} updated, {totals['unchanged']} unchanged, {deleted} marked deleted"
                + (f", {totals['skipped']} left to newer webhooks" if totals["skipped"] else "")
            )

    def _sync_page(self, page: list[dict[str, Any]], requested_at: datetime | None = None) -> Counter[str]:
        """Apply one page of Stripe coupons: a SELECT and at most three bulk writes."""
        now = timezone.now()
        counts: Counter[str] = Counter()
        to_create, to_update, stale = [], [], []
        with transaction.atomic(using=router.db_for_write(StripeCoupon)):
            local = {
                (coupon.coupon_id, coupon.created): coupon
                for coupon in StripeCoupon.objects.all_with_deleted()
                .select_for_update()
                .filter(coupon_id__in=[c["id"] for c in page])
            }
            for data in page:
                values = StripeCoupon.values_from_stripe(data)
                coupon = local.pop((values["coupon_id"], values["created"]), None)
                if coupon is None:
                    to_create.append(StripeCoupon(**values, stripe_response=data, is_created_at_stripe=True))
                elif newer_than_page(coupon.last_event_at, requested_at):
                    counts["skipped"] += 1
                elif coupon.is_deleted or any(getattr(coupon, k) != v for k, v in values.items()):
                    coupon.update_from_stripe_data(data, commit=False)
                    coupon.is_deleted, coupon.updated = False, now  # Stripe has it: it is not deleted
                    to_update.append(coupon)
            # Rows sharing an id with a Stripe coupon created at another time are older namesakes.
            for coupon in local.values():
                if not coupon.is_deleted and not newer_than_page(coupon.last_event_at, requested_at):
                    coupon.is_deleted, coupon.updated = True, now
                    stale.append(coupon)
            # Namesakes first: the live coupon_id must be free before a row takes it again. Through
            # all_with_deleted(): ``objects`` hides deleted rows, and would not update them at all.
            rows = StripeCoupon.objects.all_with_deleted()
            rows.bulk_update(stale, SYNCED_FIELDS, batch_size=WRITE_BATCH)
            rows.bulk_update(to_update, SYNCED_FIELDS, batch_size=WRITE_BATCH)
            # Another host (or a coupon.created webhook) may insert the same coupon meanwhile.
            StripeCoupon.objects.bulk_create(to_create, batch_size=WRITE_BATCH, ignore_conflicts=True)
        counts.update(created=len(to_create), updated=len(to_update))
        counts["unchanged"] = len(page) - counts["created"] - counts["updated"] - counts["skipped"]
        return counts

    def _mark_vanished(self, seen: set[str], started: datetime) -> int:
        """Mark deleted the live rows Stripe did not list; rows written during the run are spared
        (a coupon created meanwhile is newer than the listing), the next run checks them."""
        candidates = StripeCoupon.objects.filter(updated__lt=started)
        vanished = [
            pk
            for pk, coupon_id in candidates.values_list("pk", "coupon_id").iterator(chunk_size=2000)
            if coupon_id not in seen
        ]
        marked = 0
        for start in range(0, len(vanished), WRITE_BATCH):
            batch = vanished[start : start + WRITE_BATCH]
            marked += StripeCoupon.objects.filter(pk__in=batch, updated__lt=started).update(
                is_deleted=True, updated=timezone.now()
            )
        return marked
