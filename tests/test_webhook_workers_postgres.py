"""``parse_stripe_webhooks`` workers sharing a backlog on PostgreSQL: batches taken with leases.

* 2,000 stored events of mixed types, shuffled, 10% of them about one coupon within the same second
  (each a tie the handler settles by reading the coupon from the fake Stripe), parsed by three
  worker processes at once: each row parsed once by one of them, no error, no deadlock.
* A worker SIGKILLed mid-batch: the rows of its batch stay taken until its lease ends, then the
  other workers parse them; each row is parsed once all the same.

The workers are ``python -m django parse_stripe_webhooks --settings=tests.subprocess_settings``
against this test's database (committed rows: ``transactional_db``). PostgreSQL only.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
from collections import Counter
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from aa_stripe.models import StripeCoupon, StripeWebhook
from aa_stripe.testing import make_event
from tests.test_payment_methods import _post
from tests.test_races_postgres import finish, processes_started_together, realistic_events, start_command

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="processes and row locks need PostgreSQL"),
]

PARSED_LINE = re.compile(r"^Parsed (\S+) \(", re.MULTILINE)
WAIT = 120.0


def hot_coupon_events(fake_stripe: Any, count: int, now: int) -> list[dict[str, Any]]:
    """``count`` updates of one coupon made in the same second: each is a tie, read from Stripe."""
    made = _post(fake_stripe, "/v1/coupons", {"id": "HOT", "duration": "forever", "percent_off": "5"})
    _post(fake_stripe, "/v1/coupons/HOT", {"metadata[round]": "last"})
    return [
        make_event(
            "coupon.updated",
            {**made, "metadata": {"round": str(n)}},
            created=now,
            data={"object": {**made, "metadata": {"round": str(n)}}, "previous_attributes": {"metadata": {}}},
        )
        for n in range(count)
    ]


def store_all(events: list[dict[str, Any]]) -> None:
    for event in events:
        assert StripeWebhook.store_event(event)[1]


def wait_until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def parsed_count() -> int:
    return StripeWebhook.objects.filter(is_parsed=True).count()


def test_three_workers_parse_2000_mixed_events_each_once(fake_stripe):
    now = int(time.time())
    events = realistic_events(1800, now) + hot_coupon_events(fake_stripe, 200, now - 20)
    random.Random(2000).shuffle(events)
    store_all(events)
    command = ["parse_stripe_webhooks", "--batch", "100", "--verbosity", "2"]

    with processes_started_together(
        StripeWebhook, command, command, command, api_base=fake_stripe.url
    ) as procs:
        results = finish(procs)

    assert [code for code, _out, _err in results] == [0, 0, 0], [err[-2000:] for _c, _o, err in results]
    assert [err for _code, _out, err in results] == ["", "", ""]
    by_worker = [PARSED_LINE.findall(out) for _code, out, _err in results]
    assert all(by_worker), [len(ids) for ids in by_worker]  # each took a share
    parsed = Counter(event_id for ids in by_worker for event_id in ids)
    assert parsed == Counter(event["id"] for event in events)  # each by one worker, once
    rows = StripeWebhook.objects.values_list("is_parsed", "parse_attempts", "parse_error", "lease_token")
    assert Counter(rows) == {(True, 1, "", ""): 2000}
    # The effects, once: a coupon per coupon.created; the ties ended as Stripe's coupon is.
    assert StripeCoupon.objects.filter(coupon_id__startswith="RACE").count() == 450
    assert StripeCoupon.objects.get(coupon_id="HOT").metadata == {"round": "last"}


def test_a_worker_killed_mid_batch_leaves_its_rows_to_the_others_after_its_lease():
    events = realistic_events(1000, int(time.time()))
    random.Random(1000).shuffle(events)
    store_all(events)

    doomed = start_command("parse_stripe_webhooks", "--batch", "400", "--lease", "3", "--verbosity", "2")
    try:
        wait_until(lambda: parsed_count() >= 20, "the first worker has parsed some of its batch")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.communicate(timeout=WAIT)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    killed_at = timezone.now()
    parsed_before = set(StripeWebhook.objects.filter(is_parsed=True).values_list("id", flat=True))
    held = list(
        StripeWebhook.objects.filter(is_parsed=False)
        .exclude(lease_token="")
        .values_list("id", "lease_token", "lease_until")
    )
    # Killed mid-batch: rows of its batch are left unparsed, still taken until the lease ends.
    assert held and len({token for _id, token, _until in held}) == 1
    [lease_end] = {until for _id, _token, until in held}
    assert lease_end > killed_at
    assert 20 <= len(parsed_before) < 400

    survivor = ["parse_stripe_webhooks", "--loop", "--interval", "0.2", "--batch", "50", "--lease", "3"]
    survivors = [start_command(*survivor, "--verbosity", "2") for _ in range(2)]
    try:
        wait_until(lambda: parsed_count() == 1000, "every row is parsed")
        for proc in survivors:
            proc.send_signal(signal.SIGTERM)  # stops after the current row
        results = finish(survivors)
    finally:
        for proc in survivors:
            if proc.poll() is None:
                proc.kill()

    assert [code for code, _out, _err in results] == [0, 0], results
    by_survivors = Counter(event_id for _code, out, _err in results for event_id in PARSED_LINE.findall(out))
    assert set(by_survivors) | parsed_before == {event["id"] for event in events}
    assert not set(by_survivors) & parsed_before and set(by_survivors.values()) == {1}
    # Each row once, the killed worker's unfinished row included (its transaction rolled back).
    rows = StripeWebhook.objects.values_list("is_parsed", "parse_attempts", "parse_error", "lease_token")
    assert Counter(rows) == {(True, 1, "", ""): 1000}
    # The rows it held were parsed by the others only once its lease had ended.
    held_ids = [row_id for row_id, _token, _until in held]
    first_parsed = min(StripeWebhook.objects.filter(id__in=held_ids).values_list("updated", flat=True))
    assert first_parsed >= lease_end
