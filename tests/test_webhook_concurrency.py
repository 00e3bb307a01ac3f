"""Stripe delivering the same event several times at once, each delivery on its own DB connection.

PostgreSQL only: there concurrent inserts of one primary key really race (the losers wait for the
winner's commit, then hit the unique index); SQLite serialises writers, so the test is skipped.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client

from aa_stripe.models import StripeWebhook
from aa_stripe.testing import make_event, signed_webhook_request

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent inserts need PostgreSQL"),
]

THREADS = 8
URL = "/aa-stripe/webhooks"


def in_threads(work: Callable[[int, Client], list[Any]]) -> list[Any]:
    """``work(thread_number)`` in THREADS threads released at once; each closes its connections."""
    barrier = threading.Barrier(THREADS)

    def run(number: int) -> list[Any]:
        client = Client()  # one per thread
        try:
            barrier.wait(timeout=10)
            return work(number, client)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(THREADS) as pool:
        return [outcome for outcomes in pool.map(run, range(THREADS)) for outcome in outcomes]


def deliver(client: Client, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    response = client.post(URL, data=body, content_type="application/json", headers=headers)
    return response.status_code, response.json()


def test_the_same_event_delivered_eight_times_at_once_is_stored_and_parsed_once(parse_counts):
    event = make_event("ping.raced", {"id": "obj_1", "object": "thing"})
    body, headers = signed_webhook_request(event)

    outcomes = in_threads(lambda number, client: [deliver(client, body, headers)])

    assert [status for status, _ in outcomes] == [200] * THREADS, outcomes
    statuses = Counter(reply["status"] for _, reply in outcomes)
    assert statuses == {"parsed": 1, "duplicate": THREADS - 1}, outcomes
    assert list(StripeWebhook.objects.values_list("id", "is_parsed")) == [(event["id"], True)]
    assert parse_counts == {event["id"]: 1}


def test_distinct_events_interleaved_with_duplicates_are_each_stored_and_parsed_once(parse_counts):
    events = [make_event("ping.raced", {"id": f"obj_{n}", "object": "thing"}) for n in range(12)]
    deliveries = [signed_webhook_request(event) for event in events]

    def work(number: int, client: Client) -> list[tuple[int, dict[str, Any]]]:
        # every thread delivers every event (so each is raced 8 times), each thread in its own order
        order = random.Random(number).sample(deliveries, len(deliveries))
        return [deliver(client, body, headers) for body, headers in order]

    outcomes = in_threads(work)

    assert len(outcomes) == THREADS * len(events)
    assert not [o for o in outcomes if o[0] >= 500], outcomes
    assert {status for status, _ in outcomes} == {200}
    per_event = Counter((reply["id"], reply["status"]) for _, reply in outcomes)
    for event in events:
        assert (per_event[(event["id"], "parsed")], per_event[(event["id"], "duplicate")]) == (1, THREADS - 1)
    stored = dict(StripeWebhook.objects.values_list("id", "is_parsed"))
    assert stored == {event["id"]: True for event in events}
    assert parse_counts == {event["id"]: 1 for event in events}
