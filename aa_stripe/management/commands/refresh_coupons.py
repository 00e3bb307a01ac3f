"""Make local coupons match Stripe's: create missing rows, update changed ones, mark vanished ones deleted."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from django.db import router
from django.utils import timezone

from aa_stripe.guard import library_atomic
from aa_stripe.management.base import RefreshWalkCommand
from aa_stripe.management.sync import WRITE_BATCH, newer_than_page, sync_pages, update_unseen
from aa_stripe.models import StripeCoupon

# Columns a Stripe coupon fills (see StripeCoupon.values_from_stripe) plus our bookkeeping.
SYNCED_FIELDS = [
    *StripeCoupon.values_from_stripe({"id": ""}).keys(),
    "stripe_response",
    "is_created_at_stripe",
    "is_deleted",
    "updated",
]


class Command(RefreshWalkCommand):
    help = (
        "Make local StripeCoupon rows match Stripe: page through Stripe's coupons (100 per request), "
        "create the missing rows, update changed ones, and mark deleted the live rows Stripe no longer "
        "has. Writes in bulk, one round of queries per page. Safe to run again and on several hosts."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        started = timezone.now()
        seen, totals = sync_pages(self, "coupons", self._sync_page)
        deleted = update_unseen(StripeCoupon.objects.all(), "coupon_id", seen, started, is_deleted=True)
        if self.verbosity >= 1:
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
        with library_atomic(using=router.db_for_write(StripeCoupon)):
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
