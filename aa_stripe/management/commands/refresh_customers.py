"""Update every local customer's cards (sources, default_source) from Stripe's customer list."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import AaStripeError
from aa_stripe.models import StripeCustomer

SYNCED_FIELDS = ["sources", "default_source", "stripe_response", "is_active", "updated"]


class Command(BaseCommand):
    help = (
        "Update sources and default_source of every local StripeCustomer from Stripe's customer "
        "list (100 per request, sources expanded: current API versions omit them otherwise). Local "
        "customers Stripe no longer lists (deleted there) become inactive. Writes in bulk, one round "
        "of queries per page. Safe to run again."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = int(options.get("verbosity", 1))
        seen: set[str] = set()
        updated = 0
        try:
            for page in stripe_api.iterate_pages("customers", {"expand": ["data.sources"]}):
                updated += self._sync_page(page)
                seen.update(customer["id"] for customer in page)
                if verbosity >= 2:
                    self.stdout.write(f"  {len(seen)} customers read from Stripe")
        except AaStripeError as err:
            raise CommandError(
                f"refresh_customers: Stripe error after {len(seen)} customers: {err.message}"
            ) from err
        deactivated = self._deactivate_vanished(seen)
        self.stdout.write(
            f"refresh_customers: {len(seen)} at Stripe; {updated} local customers updated, "
            f"{deactivated} no longer at Stripe marked inactive"
        )

    def _sync_page(self, page: list[dict[str, Any]]) -> int:
        by_id = {customer["id"]: customer for customer in page}
        now = timezone.now()
        changed = []
        for customer in StripeCustomer.objects.filter(stripe_customer_id__in=by_id):
            before = (customer.sources, customer.default_source, customer.is_active)
            customer.update_from_stripe_data(by_id[customer.stripe_customer_id], commit=False)
            if (customer.sources, customer.default_source, customer.is_active) != before:
                customer.updated = now
                changed.append(customer)
        StripeCustomer.objects.bulk_update(changed, SYNCED_FIELDS, batch_size=500)
        return len(changed)

    def _deactivate_vanished(self, seen: set[str]) -> int:
        active = StripeCustomer.objects.filter(is_active=True, is_created_at_stripe=True)
        vanished = [
            pk
            for pk, customer_id in active.values_list("pk", "stripe_customer_id").iterator(chunk_size=2000)
            if customer_id not in seen
        ]
        marked = 0
        for start in range(0, len(vanished), 500):
            marked += StripeCustomer.objects.filter(pk__in=vanished[start : start + 500]).update(
                is_active=False, updated=timezone.now()
            )
        return marked
