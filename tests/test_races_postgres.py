"""Concurrency on PostgreSQL: OS processes and a threaded live server racing on the same rows.

* two ``charge_stripe`` processes share 60 pending charges while staff refund them over HTTP
  (GraphQL ``refundStripeCharge`` on pytest-django's live server) as soon as they are charged;
* 240 signed webhook deliveries (200 events, 40 repeats) from 8 threads over HTTP to the live server;
* two ``parse_stripe_webhooks`` processes share 100 stored, unparsed rows.

The processes run ``python -m django <command> --settings=tests.subprocess_settings`` against this
test's database (committed rows: ``transactional_db``). A gate makes them really start together:
the test holds an ACCESS EXCLUSIVE lock on the table the command reads first, starts both processes,
waits until both are blocked on it, then lets them go. PostgreSQL only: SQLite's in-memory test
database cannot be shared with other processes, and it has no row locks.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.test import Client
from graphql_relay import to_global_id

from aa_stripe.models import StripeCharge, StripeCoupon, StripeRefund, StripeWebhook
from aa_stripe.testing import make_event, post_webhook, signed_webhook_request
from tests.conftest import make_customer
from tests.graphql_helpers import staff
from tests.processes import shared_database_url
from tests.stripe_fixtures import stripe_object

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="processes and row locks need PostgreSQL"),
]

ROOT = Path(__file__).resolve().parent.parent
PROCESS_TIMEOUT = 120.0
HTTP_TIMEOUT = 30.0
WORKER_APP = "aa_stripe_race_worker"


# --- OS processes --------------------------------------------------------------------------------


def start_command(*args: str, api_base: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "AA_STRIPE_TEST_DATABASE_URL": shared_database_url(WORKER_APP)}
    env.pop("AA_STRIPE_TEST_API_BASE", None)  # without it Stripe is unreachable
    if api_base:
        env["AA_STRIPE_TEST_API_BASE"] = api_base
    return subprocess.Popen(
        [sys.executable, "-m", "django", *args, "--settings=tests.subprocess_settings"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,  # a few KB at most: no pipe fills up before communicate()
        stderr=subprocess.PIPE,
        text=True,
    )


def blocked_on(table: str) -> int:
    """How many other backends wait for a lock on ``table`` (pg_locks is read afresh every time)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT pid) FROM pg_locks WHERE relation = %s::regclass AND NOT granted",
            [table],
        )
        return cursor.fetchone()[0]


@contextmanager
def processes_started_together(model: Any, *commands: list[str], api_base: str | None = None) -> Iterator:
    """Start ``commands``; they all block on ``model``'s table until every one of them is ready.

    Yields the running processes (killed on the way out if still running)."""
    table = model._meta.db_table
    procs: list[subprocess.Popen] = []
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {connection.ops.quote_name(table)} IN ACCESS EXCLUSIVE MODE")
            procs = [start_command(*command, api_base=api_base) for command in commands]
            deadline = time.monotonic() + PROCESS_TIMEOUT
            while blocked_on(table) < len(procs):
                exited = [proc for proc in procs if proc.poll() is not None]
                if exited or time.monotonic() > deadline:
                    for proc in procs:
                        proc.kill()
                    details = [proc.communicate() for proc in procs]
                    raise AssertionError(f"the processes never all reached {table}: {details}")
                time.sleep(0.05)
        # committed: the lock is released and the processes start at the same moment
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each process, once it exits."""
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=PROCESS_TIMEOUT)
        results.append((proc.returncode, out, err))
    return results


class Sampler(threading.Thread):
    """Runs a ``SELECT count(...)`` every 10 ms on a connection of its own, until stopped.

    ``peak`` is the largest count seen, ``hits`` the number of samples that counted anything."""

    def __init__(self, sql: str, *params: Any) -> None:
        super().__init__(daemon=True)
        self.sql, self.params = sql, params
        self.halt = threading.Event()
        self.peak = self.hits = 0

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                with connection.cursor() as cursor:
                    cursor.execute(self.sql, self.params)
                    count = cursor.fetchone()[0]
                self.peak, self.hits = max(self.peak, count), self.hits + bool(count)
                self.halt.wait(0.01)
        finally:
            connections.close_all()

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.join(10)


def worker_lock_waits() -> Sampler:
    """Samples the processes' waits for a row lock another of these processes holds (SKIP LOCKED
    should make them pass over each other's rows). Waits for the gate's table lock are ``relation``
    waits, and waits for a row a request of the live server holds for a moment (a refund locks its
    charge) are not between the processes: neither is counted."""
    return Sampler(
        "SELECT count(*) FROM pg_stat_activity waiting WHERE waiting.application_name = %s"
        " AND waiting.wait_event_type = 'Lock' AND waiting.wait_event IN ('transactionid', 'tuple')"
        " AND EXISTS (SELECT 1 FROM pg_stat_activity holder WHERE holder.application_name = %s"
        " AND holder.pid = ANY(pg_blocking_pids(waiting.pid)))",
        WORKER_APP,
        WORKER_APP,
    )


# --- 1. two charge_stripe processes and GraphQL refunds over HTTP -------------------------------

REFUND = """
mutation($input: RefundStripeChargeInput!) {
  refundStripeCharge(input: $input) {
    charge { amountRefunded isRefunded }
    errors { field code message }
  }
}
"""
CHARGED_LINE = re.compile(r"^charge #(\d+) \(.*\): charged (ch_\w+)$", re.MULTILINE)
# A run may skip a row the other run is sending (", N charged meanwhile by another run or in progress
# there"): PostgreSQL can let both see it pending for a moment; the journal's claim lets one send.
SUMMARY_LINE = re.compile(
    r"^charge_stripe: (\d+) charged, 0 declined, 0 left for retry, 0 errors"
    r"(?:, \d+ charged meanwhile by another run or in progress there)?$",
    re.M,
)


def signed_in_headers(user: Any) -> dict[str, str]:
    """Cookie and CSRF headers of a session of ``user``, for requests to the live server."""
    client = Client()
    client.force_login(user)
    cookie_name = django_settings.SESSION_COOKIE_NAME
    session_id = client.cookies[cookie_name].value
    token = get_token(HttpRequest())
    return {"Cookie": f"{cookie_name}={session_id}; csrftoken={token}", "X-CSRFToken": token}


class Refunder:
    """Sends refundStripeCharge over HTTP from a pool of threads; remembers every answer."""

    def __init__(self, url: str, headers: dict[str, str], pool: ThreadPoolExecutor) -> None:
        self.url, self.headers, self.pool = url, headers, pool
        self.answers: list[tuple[int, int | None, int, dict[str, Any]]] = []  # (pk, amount, status, body)
        self.futures: list[Future] = []
        self.lock = threading.Lock()

    def send(self, pk: int, amount: int | None) -> Future:
        future = self.pool.submit(self._post, pk, amount)
        self.futures.append(future)
        return future

    def _post(self, pk: int, amount: int | None) -> tuple[int, dict[str, Any]]:
        variables = {"input": {"charge": to_global_id("StripeCharge", pk), "amount": amount}}
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while True:
            response = requests.post(
                self.url,
                json={"query": REFUND, "variables": variables},
                headers=self.headers,
                timeout=HTTP_TIMEOUT,
            )
            try:
                body = response.json()
            except ValueError:
                body = {"text": response.text[:500]}
            with self.lock:
                self.answers.append((pk, amount, response.status_code, body))
            # Another refund of this charge is in flight: as a client would, try again shortly.
            if ("charge", "IN_PROGRESS") not in error_codes(body) or time.monotonic() > deadline:
                return response.status_code, body
            time.sleep(0.02)

    def wait(self) -> None:
        for future in self.futures:
            future.result(timeout=PROCESS_TIMEOUT)


def payload(body: dict[str, Any]) -> dict[str, Any]:
    return (body.get("data") or {}).get("refundStripeCharge") or {}


def error_codes(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(error["field"], error["code"]) for error in payload(body).get("errors") or []]


# What staff do with a row once it is charged (by its position among the rows, modulo 4), sent at once:
#   0: two full refunds: one refunds, the other is refused;
#   1: two partial refunds of 100: both refund;
#   2: a partial refund of 300 and a full refund: all of it ends up refunded, in either order;
#   3: nothing.
PLANS: list[list[int | None]] = [[None, None], [100, 100], [300, None], []]


def expected_refunded(index: int, amount: int) -> int:
    return [amount, 200, amount, 0][index % 4]


def fake_list(fake_stripe: Any, path: str) -> list[dict[str, Any]]:
    """Every object of a list endpoint at the fake (read directly, page by page)."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = fake_stripe.get(path, **params)
        found += page["data"]
        if not page["has_more"]:
            return found
        params["starting_after"] = page["data"][-1]["id"]


def test_two_charge_stripe_processes_and_http_refunds_race_on_60_rows(fake_stripe, live_server):
    users = [
        get_user_model().objects.create_user(
            username=f"payer{n}", email=f"payer{n}@example.com", password="pw"
        )
        for n in range(4)
    ]
    for someone in users:
        make_customer(fake_stripe, someone)
    rows = [
        StripeCharge.objects.create(user=someone, amount=1000 + 10 * i + n, description=f"Order {i}-{n}")
        for i in range(15)
        for n, someone in enumerate(users)
    ]
    position = {row.pk: index for index, row in enumerate(rows)}
    probed = rows[-5:]  # charged last (oldest first, 60 rows): still pending right after the start
    refunder_headers = signed_in_headers(staff("refunder", "change_stripecharge"))
    fake_stripe.proxy.reset()  # count the race's requests only
    # Every charge and refund takes 50 ms at "Stripe": runs and refunds overlap, rows stay locked a while.
    fake_stripe.proxy.inject("delay", method="POST", path_prefix="/v1/charges", seconds=0.05, times=len(rows))
    fake_stripe.proxy.inject("delay", method="POST", path_prefix="/v1/refunds", seconds=0.05, times=1000)
    command = ["charge_stripe", "--verbosity", "2"]

    with worker_lock_waits() as waits, ThreadPoolExecutor(8) as pool:
        refunder = Refunder(live_server.url + "/graphql/", refunder_headers, pool)
        with processes_started_together(StripeCharge, command, command, api_base=fake_stripe.url) as procs:
            probes = [refunder.send(row.pk, None) for row in probed]
            planned: set[int] = set()
            while True:
                running = any(proc.poll() is None for proc in procs)
                charged = set(StripeCharge.objects.filter(is_charged=True).values_list("pk", flat=True))
                for pk in sorted(charged - planned):
                    planned.add(pk)
                    for amount in PLANS[position[pk] % 4]:
                        refunder.send(pk, amount)
                if not running:
                    break
                time.sleep(0.02)
            results = finish(procs)
        refunder.wait()

    # Both processes exit 0 and split the rows: each row charged by exactly one of them.
    assert [code for code, _out, _err in results] == [0, 0], results
    assert [err for _code, _out, err in results] == ["", ""], results
    by_process = [dict(CHARGED_LINE.findall(out)) for _code, out, _err in results]
    summaries = [[int(n) for n in SUMMARY_LINE.findall(out)] for _code, out, _err in results]
    assert summaries == [[len(found)] for found in by_process], results
    assert all(by_process), results  # both did part of the work
    assert not by_process[0].keys() & by_process[1].keys()
    assert {int(pk) for found in by_process for pk in found} == set(position)
    assert waits.hits == 0  # SKIP LOCKED: neither process ever waited for a row the other one held

    # Stripe: exactly one POST /v1/charges per row, one charge per row, as recorded locally.
    posts = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert sorted(p.idempotency_key for p in posts) == sorted(f"charge:{row.uuid}:1" for row in rows)
    assert {(p.status, p.replayed) for p in posts} == {(200, False)}
    at_fake = {charge["id"]: charge for charge in fake_list(fake_stripe, "/v1/charges")}
    assert len(at_fake) == len(rows)
    charged_by = {ch: int(pk) for found in by_process for pk, ch in found.items()}
    for row in StripeCharge.objects.all():
        assert row.is_charged and not row.charge_attempt_failed and row.attempt == 1
        assert charged_by[row.stripe_charge_id] == row.pk
        assert at_fake[row.stripe_charge_id]["amount"] == row.amount
        assert at_fake[row.stripe_charge_id]["metadata"]["charge_uuid"] == str(row.uuid)

    # Every answer is a 200 without GraphQL errors; refusals are payload errors on "charge".
    assert not [a for a in refunder.answers if a[2] != 200 or "errors" in a[3]], refunder.answers
    refused = [a for a in refunder.answers if error_codes(a[3])]
    allowed = {(("charge", "NOT_ALLOWED"),), (("charge", "IN_PROGRESS"),)}  # the latter was retried
    assert {tuple(error_codes(a[3])) for a in refused} <= allowed, refused

    # A refund racing a still-pending row is refused as such; nothing of it reached Stripe.
    for future in probes:
        status, body = future.result()
        assert status == 200 and payload(body)["errors"] == [
            {"field": "charge", "code": "NOT_ALLOWED", "message": "This charge was not charged."}
        ], body

    # Refunds: never above the charge, each one once at Stripe, the fake agrees with every row.
    succeeded = Counter(
        pk for pk, _amount, _status, body in refunder.answers if payload(body).get("errors") == []
    )
    refund_posts = fake_stripe.proxy.calls("POST", "/v1/refunds")
    assert {(p.status, p.replayed) for p in refund_posts} == {(200, False)}
    assert len(refund_posts) == StripeRefund.objects.count() == sum(succeeded.values())
    fake_refunds = fake_list(fake_stripe, "/v1/refunds")
    assert sorted(r["id"] for r in fake_refunds) == sorted(
        StripeRefund.objects.values_list("stripe_refund_id", flat=True)
    )
    double_full = 0
    for row in StripeCharge.objects.all():
        index = position[row.pk]
        refunds = list(row.refunds.values_list("amount", flat=True))
        assert row.amount_refunded == sum(refunds) == expected_refunded(index, row.amount), (index, refunds)
        assert row.amount_refunded <= row.amount and row.pending_refund_amount is None
        assert row.is_refunded == (row.amount_refunded == row.amount)
        assert at_fake_refunded(fake_stripe, row) == row.amount_refunded
        assert succeeded[row.pk] == len(refunds)
        if index % 4 == 0:
            double_full += 1
            assert refunds == [row.amount]  # the second full refund was refused
    assert double_full == 15


def at_fake_refunded(fake_stripe: Any, row: StripeCharge) -> int:
    return fake_stripe.get(f"/v1/charges/{row.stripe_charge_id}")["amount_refunded"]


# --- 2. 240 webhook deliveries from 8 threads over HTTP -------------------------------------------

THREADS = 8
WEBHOOK_PATH = "/aa-stripe/webhooks"


def realistic_events(count: int, now: int) -> list[dict[str, Any]]:
    """Events that are stored and parsed without asking Stripe, in four kinds (``count // 4`` each):

    coupons created in the dashboard (each becomes a row), and charges, customers and invoices made
    outside the library (stored, parsed, nothing to change)."""
    quarter = count // 4
    events = []
    for n in range(quarter):
        coupon = stripe_object(
            "coupon", id=f"RACE{n}", created=now - 60, amount_off=100 + n, currency="usd", percent_off=None
        )
        events.append(make_event("coupon.created", coupon, created=now - 60))
        charge = stripe_object("charge", id=f"ch_elsewhere{n:04d}", metadata={"order": str(n)})
        events.append(make_event("charge.succeeded", charge, created=now - 50))
        customer = stripe_object("customer", id=f"cus_elsewhere{n:04d}")
        events.append(make_event("customer.created", customer, created=now - 40))
        invoice = stripe_object("invoice", id=f"in_elsewhere{n:04d}")
        events.append(make_event("invoice.paid", invoice, created=now - 30))
    return events


def deliveries_schedule(events: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """200 events and 40 repeats, shuffled: 15 events come three times in a row (deliveries racing
    each other on 8 threads), 10 come once more at a random place (a late redelivery)."""
    bursts = set(map(id, rng.sample(events, 15)))
    blocks = [[event] * (3 if id(event) in bursts else 1) for event in events]
    rng.shuffle(blocks)
    schedule = [event for block in blocks for event in block]
    for event in rng.sample([e for e in events if id(e) not in bursts], 10):
        schedule.insert(rng.randrange(len(schedule) + 1), event)
    return schedule


def test_240_deliveries_from_8_threads_over_http_store_and_parse_200_events_once(live_server, parse_counts):
    events = realistic_events(200, int(time.time()))
    schedule = deliveries_schedule(events, random.Random(20240601))
    assert (len(schedule), len({e["id"] for e in schedule})) == (240, 200)
    url = live_server.url + WEBHOOK_PATH
    queue = iter(schedule)
    queue_lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def worker() -> list[tuple[str, int, dict[str, Any]]]:
        answers = []
        with requests.Session() as session:
            barrier.wait(timeout=30)
            while True:
                with queue_lock:
                    event = next(queue, None)
                if event is None:
                    return answers
                body, headers = signed_webhook_request(event)  # re-signed, as Stripe does per delivery
                headers["Content-Type"] = "application/json"
                response = session.post(url, data=body, headers=headers, timeout=HTTP_TIMEOUT)
                try:
                    reply = response.json()
                except ValueError:
                    reply = {"text": response.text[:500]}
                answers.append((event["id"], response.status_code, reply))

    sampler = Sampler("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
    with sampler, ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(worker) for _ in range(THREADS)]
        answers = [answer for future in futures for answer in future.result(timeout=PROCESS_TIMEOUT)]

    assert len(answers) == 240
    assert [a for a in answers if a[1] >= 500] == []
    assert [a for a in answers if a[1] != 200] == []
    per_event = defaultdict(Counter)
    for event_id, _status, reply in answers:
        assert reply["id"] == event_id
        per_event[event_id][reply["status"]] += 1
    deliveries = Counter(e["id"] for e in schedule)
    for event in events:
        expected = {"parsed": 1, "duplicate": deliveries[event["id"]] - 1}
        assert per_event[event["id"]] == +Counter(expected), (event["type"], per_event[event["id"]])
    stored = list(StripeWebhook.objects.values_list("id", "is_parsed", "parse_attempts", "parse_error"))
    assert sorted(stored) == sorted((e["id"], True, 1, "") for e in events)
    assert parse_counts == Counter(e["id"] for e in events)
    assert sorted(StripeCoupon.objects.values_list("coupon_id", flat=True)) == sorted(
        f"RACE{n}" for n in range(50)
    )
    # The threaded live server's connections close after each request (CONN_MAX_AGE = 0): at most one per
    # server thread (8), the test's and the sampler's at a time, far below max_connections.
    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        max_connections = int(cursor.fetchone()[0])
    assert sampler.peak <= THREADS + 3 < max_connections


# --- 3. two parse_stripe_webhooks processes ------------------------------------------------------

PARSED_LINE = re.compile(r"^Parsed (\S+) \(", re.MULTILINE)
PARSE_SUMMARY = re.compile(r"^Stripe webhooks: (\d+) parsed, 0 failed\.$", re.MULTILINE)


def test_two_parse_stripe_webhooks_processes_parse_each_of_100_rows_once(client, settings):
    settings.STRIPE_WEBHOOK_DEFERRED_PARSING = True
    events = realistic_events(100, int(time.time()))
    for event in events:
        assert post_webhook(client, event).json() == {"id": event["id"], "status": "stored"}
    assert set(StripeWebhook.objects.values_list("is_parsed", "parse_attempts")) == {(False, 0)}
    command = ["parse_stripe_webhooks", "--batch", "10", "--verbosity", "2"]  # batches: both get some

    # No Stripe URL: Stripe is unreachable there, so any call to it would fail the parse.
    with worker_lock_waits() as waits, processes_started_together(StripeWebhook, command, command) as procs:
        results = finish(procs)

    assert [code for code, _out, _err in results] == [0, 0], results
    assert [err for _code, _out, err in results] == ["", ""], results
    by_process = [PARSED_LINE.findall(out) for _code, out, _err in results]
    summaries = [[int(n) for n in PARSE_SUMMARY.findall(out)] for _code, out, _err in results]
    assert summaries == [[len(ids)] for ids in by_process], results
    assert all(by_process), results  # both took a share
    parsed = list(itertools.chain(*by_process))
    assert sorted(parsed) == sorted(e["id"] for e in events)  # each row by exactly one process, once
    assert waits.hits == 0  # SKIP LOCKED: neither process ever waited for a row the other one held
    rows = StripeWebhook.objects.values_list("is_parsed", "parse_attempts", "parse_error")
    assert Counter(rows) == {(True, 1, ""): 100}
    assert StripeCoupon.objects.count() == 25


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
