"""Make local products and prices match Stripe's: create missing rows, update changed ones, mark
vanished ones deleted."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from django.db import router
from django.utils import timezone

from aa_stripe.guard import library_atomic
from aa_stripe.management.base import RefreshWalkCommand
from aa_stripe.management.sync import WRITE_BATCH, newer_than_page, sync_pages, update_unseen
from aa_stripe.models import StripeOperation, StripePrice, StripeProduct
from aa_stripe.models.product_operations import PRICE
from aa_stripe.models.products import StripeCatalogModel

ID_FIELDS: dict[type[StripeCatalogModel], str] = {
    StripeProduct: "stripe_product_id",
    StripePrice: "stripe_price_id",
}


def synced_fields(model: type[StripeCatalogModel]) -> list[str]:
    """Columns a Stripe object fills (``values_from_stripe``) plus our bookkeeping."""
    values = model.values_from_stripe({"id": "", "product": None})
    return [*values, "stripe_response", "is_created_at_stripe", "is_deleted", "updated"]


class Command(RefreshWalkCommand):
    help = (
        "Make local StripeProduct and StripePrice rows match Stripe: page through Stripe's products, "
        "then its prices (100 per request), create the missing rows, update changed ones, and mark "
        "deleted the rows Stripe no longer lists. Writes in bulk, one round of queries per page. Rows "
        "whose creation here is unfinished are left to the operations journal. Safe to run again and "
        "on several hosts."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        started = timezone.now()
        lines = [
            self._refresh(StripeProduct, "products", started),
            self._refresh(StripePrice, "prices", started),
        ]
        if self.verbosity >= 1:
            self.stdout.write("refresh_prices: " + "; ".join(lines))

    def _refresh(self, model: type[StripeCatalogModel], service: str, started: datetime) -> str:
        id_field = ID_FIELDS[model]

        def sync_page(page: list[dict[str, Any]], requested_at: datetime | None = None) -> Counter[str]:
            return self._sync_page(model, page, requested_at)

        seen, totals = sync_pages(self, service, sync_page, name="refresh_prices")
        mirrored = model._default_manager.filter(is_created_at_stripe=True, is_deleted=False)
        deleted = update_unseen(mirrored, id_field, seen, started, is_deleted=True)
        return (
            f"{len(seen)} {service} at Stripe, {totals['created']} created, {totals['updated']} updated, "
            f"{totals['unchanged']} unchanged, {deleted} marked deleted"
            + (f", {totals['skipped']} left to newer webhooks or the journal" if totals["skipped"] else "")
        )

    def _sync_page(
        self, model: type[StripeCatalogModel], page: list[dict[str, Any]], requested_at: datetime | None
    ) -> Counter[str]:
        """Apply one page of Stripe objects: a SELECT and at most two bulk writes."""
        id_field, fields = ID_FIELDS[model], synced_fields(model)
        now = timezone.now()
        counts: Counter[str] = Counter()
        to_create, to_update = [], []
        manager: Any = model._default_manager
        with library_atomic(using=router.db_for_write(model)):
            local = {
                getattr(row, id_field): row
                for row in manager.select_for_update().filter(**{f"{id_field}__in": [o["id"] for o in page]})
            }
            waiting = _created_here_unfinished(page, local) if model is StripePrice else set()
            for data in page:
                row = local.get(data["id"])
                if row is None and data["id"] not in waiting:
                    row = model(is_created_at_stripe=True)
                    row.update_from_stripe_data(data, commit=False)
                    to_create.append(row)
                elif row is None or not row.is_created_at_stripe:
                    counts["skipped"] += 1  # its creation here is unfinished: the journal records it
                elif newer_than_page(row.last_event_at, requested_at):
                    counts["skipped"] += 1
                elif row.is_deleted or _differs(row, data):
                    row.update_from_stripe_data(data, commit=False)
                    row.is_deleted, row.updated = False, now  # Stripe lists it: it is not deleted
                    to_update.append(row)
            manager.bulk_update(to_update, fields, batch_size=WRITE_BATCH)
            # Another host (or a webhook) may insert the same object meanwhile.
            manager.bulk_create(to_create, batch_size=WRITE_BATCH, ignore_conflicts=True)
        counts.update(created=len(to_create), updated=len(to_update))
        counts["unchanged"] = len(page) - counts["created"] - counts["updated"] - counts["skipped"]
        return counts


def _differs(row: StripeCatalogModel, data: dict[str, Any]) -> bool:
    return any(getattr(row, name) != value for name, value in row.values_from_stripe(data).items())


def _created_here_unfinished(page: list[dict[str, Any]], local: dict[str, Any]) -> set[str]:
    """Ids of the page's prices that our own unfinished creations made: their rows wait for the
    journal's answer without a Stripe id yet, so they are not listed in ``local``. One query, only
    when the page has prices that carry an operation's id and have no row."""
    candidates: dict[uuid.UUID, str] = {}
    for data in page:
        operation = (data.get("metadata") or {}).get("operation")
        if data["id"] in local or not operation:
            continue
        try:
            candidates[uuid.UUID(str(operation))] = data["id"]
        except ValueError:
            continue  # not the journal's
    if not candidates:
        return set()
    unfinished = StripeOperation.objects.filter(
        kind=PRICE, uuid__in=list(candidates), state__in=StripeOperation.UNRESOLVED
    ).values_list("uuid", flat=True)
    return {candidates[operation_uuid] for operation_uuid in unfinished}
