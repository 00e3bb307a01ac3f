"""Order tolerance for webhook handlers: Stripe delivers events at least once and out of order.

Each mirrored row remembers Stripe's ``created`` time of the last event applied to it
(``last_event_at``). An older event is skipped; a newer one is applied from the data it
carries; only a tie (Stripe's clock has 1-second resolution, and one action often emits several
events in the same second) re-reads the object from Stripe, the one source that knows which
state is the latest.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from aa_stripe.models import StripeWebhook

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
