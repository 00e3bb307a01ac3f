"""What the refresh commands share: paging Stripe's lists, leaving webhook-fresh rows alone,
and marking rows Stripe no longer lists."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import QuerySet
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import AaStripeError

#: A row whose last webhook event is this close to (or after) the time a page was requested may
#: hold newer data than the page: it is left alone (Stripe's event times have 1-second resolution
#: and the clocks of Stripe and this host differ a little).
FRESHNESS_MARGIN = timedelta(seconds=5)
WRITE_BATCH = 500

Page = list[dict[str, Any]]


def timed_pages(service: str, params: Mapping[str, Any] | None = None) -> Iterator[tuple[datetime, Page]]:
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


def sync_pages(
    command: BaseCommand,
    service: str,
    sync_page: Callable[[Page, datetime], Counter[str]],
    params: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> tuple[set[str], Counter[str]]:
    """Apply Stripe's list of ``service`` page by page; the ids seen (~100 bytes each; pages are
    not kept) and the totals of ``sync_page``'s counts. A Stripe error ends the run with a
    ``CommandError`` that says how far it got (``name``: the command's, ``refresh_<service>`` by
    default)."""
    seen: set[str] = set()
    totals: Counter[str] = Counter()
    try:
        for requested_at, page in timed_pages(service, params):
            totals.update(sync_page(page, requested_at))
            seen.update(obj["id"] for obj in page)
            if command.verbosity >= 2:
                command.stdout.write(f"  {len(seen)} {service} read from Stripe")
    except AaStripeError as err:
        done = ", ".join(f"{count} {what}" for what, count in totals.items() if count) or "nothing changed"
        command_name = name or f"refresh_{service}"
        raise CommandError(
            f"{command_name}: Stripe error after {len(seen)} {service} ({done}): {err.message}"
        ) from err
    return seen, totals


def update_unseen(
    queryset: QuerySet, id_field: str, seen: set[str], started: datetime, **changes: Any
) -> int:
    """Apply ``changes`` to the rows of ``queryset`` whose ``id_field`` Stripe did not list.

    Rows written since ``started`` are spared (an object created meanwhile is newer than the
    listing); the next run checks them.
    """
    candidates = queryset.filter(updated__lt=started)
    unseen = [
        pk
        for pk, object_id in candidates.values_list("pk", id_field).iterator(chunk_size=2000)
        if object_id not in seen
    ]
    updated = 0
    for start in range(0, len(unseen), WRITE_BATCH):
        batch = candidates.filter(pk__in=unseen[start : start + WRITE_BATCH])
        updated += batch.update(**changes, updated=timezone.now())
    return updated
