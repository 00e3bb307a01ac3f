"""Make local coupons match Stripe's: create missing rows, update changed ones, mark vanished ones deleted."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
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


class Command(BaseCommand):
    help = (
        "Make local StripeCoupon rows match Stripe: page through Stripe's coupons (100 per request), "
        "create the missing rows, update changed ones, and mark deleted the live rows Stripe no longer "
        "has. Writes in bulk, one round of queries per page. Safe to run again."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = int(options.get("verbosity", 1))
        seen: set[str] = set()
        totals = {"created": 0, "updated": 0, "unchanged": 0}
        try:
            for page in stripe_api.iterate_pages("coupons"):
                for key, count in self._sync_page(page).items():
                    totals[key] += count
                seen.update(coupon["id"] for coupon in page)
                if verbosity >= 2:
                    self.stdout.write(f"  {len(seen)} coupons read from Stripe")
        except AaStripeError as err:
            raise CommandError(
                f"refresh_coupons: Stripe error after {len(seen)} coupons: {err.message}"
            ) from err
        deleted = self._mark_vanished(seen)
        self.stdout.write(
            f"refresh_coupons: {len(seen)} at Stripe; {totals['created']} created, "
            f"{totals['updated']} updated, {totals['unchanged']} unchanged, {deleted} marked deleted"
        )

    def _sync_page(self, page: list[dict[str, Any]]) -> dict[str, int]:
        local = {
            (coupon.coupon_id, coupon.created): coupon
            for coupon in StripeCoupon.objects.all_with_deleted().filter(
                coupon_id__in=[c["id"] for c in page]
            )
        }
        now = timezone.now()
        to_create, to_update, stale = [], [], []
        for data in page:
            values = StripeCoupon.values_from_stripe(data)
            coupon = local.pop((values["coupon_id"], values["created"]), None)
            if coupon is None:
                to_create.append(StripeCoupon(**values, stripe_response=data, is_created_at_stripe=True))
            elif coupon.is_deleted or any(getattr(coupon, name) != value for name, value in values.items()):
                coupon.update_from_stripe_data(data, commit=False)
                coupon.is_deleted = False  # Stripe has it: it is not deleted
                coupon.updated = now
                to_update.append(coupon)
        # Live rows sharing an id with a Stripe coupon created at another time are older namesakes.
        for coupon in local.values():
            if not coupon.is_deleted:
                coupon.is_deleted, coupon.updated = True, now
                stale.append(coupon)
        StripeCoupon.objects.bulk_update([*stale, *to_update], SYNCED_FIELDS, batch_size=500)
        StripeCoupon.objects.bulk_create(to_create, batch_size=500)
        return {
            "created": len(to_create),
            "updated": len(to_update),
            "unchanged": len(page) - len(to_create) - len(to_update),
        }

    def _mark_vanished(self, seen: set[str]) -> int:
        vanished = [
            pk
            for pk, coupon_id in StripeCoupon.objects.values_list("pk", "coupon_id").iterator(chunk_size=2000)
            if coupon_id not in seen
        ]
        marked = 0
        for start in range(0, len(vanished), 500):
            marked += StripeCoupon.objects.filter(pk__in=vanished[start : start + 500]).update(
                is_deleted=True, updated=timezone.now()
            )
        return marked
