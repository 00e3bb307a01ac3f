"""The one rule every handler follows: Stripe delivers events at least once and in any order.

- A deletion is final. Every ``*.deleted`` event leaves a :class:`StripeTombstone` keyed by the
  object's id and Stripe ``created`` time; no other event of that very object is applied after it
  (an id reused by a newer object is another object).
- Each mirrored row remembers Stripe's ``created`` time of the last event applied to it
  (``last_event_at``). An older event is skipped; a newer one is applied from the data it carries;
  only a tie (Stripe's clock has 1-second resolution, and one action often emits several events in
  the same second; a re-parse of the same event too) re-reads the object from Stripe, the one
  source that knows which state is the latest.
- Our own writes count too, where no rule of the object's own orders its states: an event made
  before (or less than :data:`WRITE_MARGIN` after) the answer to a request the operations journal
  sent about the row, or while such a request is unanswered, may describe a state older than the
  one the request left, so Stripe is read instead of applying it (:func:`predates_our_write`,
  given as ``stale`` by the customer, coupon and catalog handlers: a late ``customer.created`` must
  not clear the default card set a second later). Charges, subscriptions and invoices order their
  states by their own rules (attempts, statuses that only move forward, final statuses).
- Stripe is read before any row lock is taken (see :class:`NeedsStripeObject`), never while one is
  held.

A handler finds (and locks) its row, then asks :func:`incoming` what to apply; it keeps only what
differs between object types.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple

from django.contrib.contenttypes.models import ContentType
from django.db import models

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeInvalidRequestError
from aa_stripe.models import StripeOperation, StripeTombstone, StripeWebhook
from aa_stripe.models.base import timestamp_to_datetime
from aa_stripe.models.webhooks import NeedsStripeObject

logger = logging.getLogger("aa_stripe")


class Apply(enum.Enum):
    SKIP = "skip"  # the row already reflects a newer event
    DATA = "data"  # apply the object the event carries
    REFETCH = "refetch"  # same second as the last applied event: ask Stripe


def decide(row: Any, webhook: StripeWebhook) -> Apply:
    """How to apply ``webhook`` to ``row``; also moves ``row.last_event_at`` forward (unsaved)."""
    created = webhook.event_created
    last = row.last_event_at
    if created is None:
        return Apply.REFETCH if last is not None else Apply.DATA
    if last is not None and created < last:
        logger.info("Stripe event %s is older than the last one applied to %r: skipped", webhook.id, row)
        return Apply.SKIP
    row.last_event_at = created
    return Apply.REFETCH if last == created else Apply.DATA


#: Stripe's clock and this host's differ a little, and event times have 1-second resolution: an event
#: made up to this long before a request the journal sent may still describe the state before it.
WRITE_MARGIN = timedelta(seconds=5)


def predates_our_write(row: Any, webhook: StripeWebhook) -> bool:
    """Whether a request the journal sent about ``row`` may have been done at Stripe after the event
    was made: one answered at or after the event's time (less :data:`WRITE_MARGIN`), or one not
    answered yet. The row may hold (or be about to hold) that request's answer, newer than the
    event's object. (A request is done at Stripe between its sending and its answer, and a slow one
    takes longer than the margin.)"""
    created = webhook.event_created
    if row.pk is None or created is None:
        return False
    return StripeOperation.objects.filter(
        models.Q(resolved_at__gte=created - WRITE_MARGIN)
        | models.Q(resolved_at__isnull=True, last_sent_at__isnull=False),
        content_type=ContentType.objects.get_for_model(type(row)),
        object_id=str(row.pk),
    ).exists()


def is_deletion(webhook: StripeWebhook) -> bool:
    return webhook.event_type.endswith(".deleted")


def bury_if_deleted(webhook: StripeWebhook, data: dict[str, Any] | None = None) -> bool:
    """Record the tombstone of a deletion event's object; whether the event is a deletion."""
    if not is_deletion(webhook):
        return False
    data = webhook.data_object if data is None else data
    if data.get("id") and data.get("object"):
        StripeTombstone.bury(
            data["object"],
            data["id"],
            timestamp_to_datetime(data.get("created")),
            webhook.event_created,
            webhook.id,
        )
    return True


def is_buried(webhook: StripeWebhook, data: dict[str, Any] | None = None) -> bool:
    """Whether the event's object was deleted (by an event applied before this one)."""
    data = webhook.data_object if data is None else data
    if not data.get("id") or not data.get("object"):
        return False
    return StripeTombstone.is_buried(
        data["object"], data["id"], timestamp_to_datetime(data.get("created")), webhook.event_created
    )


def stripe_object(webhook: StripeWebhook, service: str, object_id: str) -> dict[str, Any]:
    """Stripe's current object for this parse, fetched before the handler's locks were taken.

    The first call raises :class:`NeedsStripeObject`; ``StripeWebhook.parse`` rolls the handler's
    savepoint back, fetches, and runs the handler again, when this returns the fetched object.
    A deleted object comes back as Stripe's deleted stub ``{"id", "deleted": True}``.
    """
    key = (service, object_id)
    if key not in webhook.stripe_objects:
        raise NeedsStripeObject(key, lambda: retrieve(service, object_id))
    return webhook.stripe_objects[key]


def retrieve(service: str, object_id: str) -> dict[str, Any]:
    """Stripe's current object, or a deleted stub when Stripe no longer has it."""
    try:
        params = {"expand": ["sources"]} if service == "customers" else None
        return stripe_api.call(service, "retrieve", object_id, params=params)
    except StripeInvalidRequestError as err:
        if err.kind != "not_found" and err.http_status != 404:
            raise
        return {"id": object_id, "deleted": True}


class Change(NamedTuple):
    """What a handler applies: a Stripe object, and whether the object is deleted."""

    data: dict[str, Any]
    deleted: bool


def incoming(
    webhook: StripeWebhook,
    row: Any,
    service: str,
    stale: Callable[[dict[str, Any]], bool] | None = None,
) -> Change | None:
    """What to apply to ``row`` (locked, or new and unsaved) for this event; None to leave it alone.

    ``stale(data)`` says when the data of an event newer than the row's clock may still be older
    than something already applied (e.g. a customer's card list, or an answer of ours:
    :func:`predates_our_write`): Stripe is asked instead.
    After a tie the object is Stripe's current one; when Stripe no longer has it, or its object of
    that id is a newer namesake (another ``created``), the event's own object is applied as
    deleted. A deletion stays a deletion whatever Stripe answers. ``row.last_event_at`` is moved
    forward (unsaved).
    """
    data = webhook.data_object
    deletion = bury_if_deleted(webhook, data)
    if not deletion and is_buried(webhook, data):
        logger.info("Stripe event %s: %s %s was deleted before: skipped", webhook.id, service, data.get("id"))
        return None
    how = decide(row, webhook)
    if how is Apply.SKIP:
        return None
    if how is Apply.DATA and (deletion or not (stale and stale(data))):
        return Change(data, deletion)
    fresh = stripe_object(webhook, service, data["id"])
    namesake = data.get("created") is not None and fresh.get("created") not in (None, data["created"])
    if fresh.get("deleted") or namesake:
        return Change(data, True)
    return Change(fresh, deletion)


def is_stub(data: dict[str, Any]) -> bool:
    """Stripe's answer for a deleted object, ``{id, object, deleted}``: it says nothing else."""
    return set(data) <= {"id", "object", "deleted"}
