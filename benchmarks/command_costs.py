"""Stripe HTTP requests, SQL queries and peak memory of the cron commands.

    DJANGO_SETTINGS_MODULE=tests.settings .venv/bin/python benchmarks/command_costs.py [--quick]

By default: refresh_coupons and refresh_customers over 100, 1,000 and 5,000 objects, charge_stripe
over 1,000 pending charges, end_subscriptions over 100. ``--quick`` skips 5,000 and uses 100
charges (a smoke run); ``--sizes`` / ``--charge-sizes`` / ``--end-sizes`` override.

Starts its own fake Stripe through the test wrapper (``python -m aa_stripe.testing.fakestripe.server``,
which turns off localstripe's pickle dump to disk on every write) behind a recording ``FaultProxy``,
creates a test database (SQLite in memory, or the one DATABASE_URL names, prefixed ``test_``), seeds
each scenario straight at the fake over one keep-alive session (not recorded), runs the command with
``call_command`` and counts the requests the proxy saw, the queries Django ran (a counting
``execute_wrapper``: no SQL text is kept, so the count does not inflate the memory figure) and the
peak of Python memory allocated during the run (tracemalloc, started just before and stopped just
after the command; the fake runs in another process, the proxy's small request records are included).

Prints a table and a PASS/MISS line per target: requests = ceil(N/100) for the list-based commands
and exactly N for charges; queries per page bounded; peak memory not growing with N beyond one page.
A MISS is reported, not fatal: the exit status is non-zero only when the benchmark cannot run.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from aa_stripe import stripe_api  # noqa: E402
from aa_stripe.models import (  # noqa: E402
    StripeCharge,
    StripeCoupon,
    StripeCustomer,
    StripeSubscription,
    StripeSubscriptionPlan,
)
from aa_stripe.testing.fakestripe.plugin import API_KEY, FakeStripe  # noqa: E402
from aa_stripe.testing.fakestripe.proxy import FaultProxy  # noqa: E402

READY_TIMEOUT = 20.0
#: The promise checked here: at most this many queries per page of 100 objects, plus a few per run.
MAX_QUERIES_PER_PAGE = 6
MAX_QUERIES_PER_RUN = 4
PAGE = 100
HTTP_TIMEOUT = 30


@dataclass
class Measure:
    command: str
    n: int
    run: str
    requests: int
    list_requests: int
    queries: int
    transactions: int
    peak_kib: float
    seconds: float
    summary: str


class QueryCounter:
    """An ``execute_wrapper`` that only counts (CaptureQueriesContext keeps every SQL text), and
    counts transactions: a statement outside any atomic block is one (autocommit), and so is each
    outermost atomic block that runs a statement."""

    def __init__(self) -> None:
        self.count = 0
        self.transactions = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        blocks = context["connection"].atomic_blocks
        if sql == "BEGIN":  # SQLite's explicit start of an atomic block, counted with the block
            pass
        elif not blocks:
            self.transactions += 1
        elif not getattr(blocks[0], "_bench_counted", False):
            blocks[0]._bench_counted = True
            self.transactions += 1
        return execute(sql, params, many, context)


@contextmanager
def fake_stripe() -> Iterator[FakeStripe]:
    """localstripe on a free port, a FaultProxy in front, settings pointing at the proxy."""
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "aa_stripe.testing.fakestripe.server", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            url = wait_for_ready(server, log)
            with (
                FaultProxy(url) as proxy,
                override_settings(STRIPE_API_BASE=proxy.url, STRIPE_API_KEY=API_KEY),
            ):
                yield FakeStripe(url=proxy.url, direct_url=url, proxy=proxy)
        finally:
            server.terminate()
            server.wait(timeout=10)


def wait_for_ready(server: subprocess.Popen, log: Any) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and server.poll() is None:
        log.seek(0)
        for line in log.read().decode(errors="replace").splitlines():
            if line.startswith("READY "):
                return line.split(" ", 1)[1].strip()
        time.sleep(0.05)
    log.seek(0)
    raise RuntimeError(f"the fake Stripe server did not start:\n{log.read().decode(errors='replace')}")


@contextmanager
def test_database() -> Iterator[None]:
    """A fresh test database; on a server, one of its own name (a test run may use test_<NAME>)."""
    old_name = connection.settings_dict["NAME"]
    if connection.vendor != "sqlite":
        connection.settings_dict["TEST"]["NAME"] = f"test_{old_name}_command_costs"
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def reset(fake: FakeStripe) -> None:
    """An empty fake, a proxy that forgot everything, empty tables."""
    fake.wipe()
    fake.proxy.reset()
    for model in (StripeCharge, StripeSubscription, StripeSubscriptionPlan, StripeCustomer):
        model.objects.all().delete()
    StripeCoupon._base_manager.all().delete()  # a plain QuerySet: StripeCoupon.delete() calls Stripe
    get_user_model().objects.all().delete()


def measure(fake: FakeStripe, command: str, n: int, run: str, *args: str) -> Measure:
    fake.proxy.reset()
    out = StringIO()
    counter = QueryCounter()
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    try:
        with connection.execute_wrapper(counter):
            call_command(command, *args, stdout=out, stderr=StringIO())
    except CommandError as err:
        raise RuntimeError(f"{command} failed: {err}") from err
    finally:
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    calls = fake.proxy.calls()
    listing = [c for c in calls if c.method == "GET" and c.path.count("/") == 2]
    summary = out.getvalue().strip().splitlines()[-1]
    return Measure(
        command,
        n,
        run,
        len(calls),
        len(listing),
        counter.count,
        counter.transactions,
        peak / 1024,
        seconds,
        summary,
    )


_sessions: dict[str, requests.Session] = {}


def session(fake: FakeStripe) -> requests.Session:
    """One keep-alive session to the fake itself (behind the proxy's back) for seeding."""
    if fake.direct_url not in _sessions:
        _sessions[fake.direct_url] = requests.Session()
        _sessions[fake.direct_url].headers["Authorization"] = f"Bearer {API_KEY}"
    return _sessions[fake.direct_url]


def direct_post(fake: FakeStripe, path: str, **data: Any) -> dict[str, Any]:
    response = session(fake).post(f"{fake.direct_url}{path}", data=data, timeout=HTTP_TIMEOUT)
    response.raise_for_status()
    return response.json()


def listed(fake: FakeStripe, path: str) -> list[dict[str, Any]]:
    found, params = [], {"limit": 100}
    while True:
        response = session(fake).get(f"{fake.direct_url}{path}", params=params, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        page = response.json()
        found += page["data"]
        if not page["has_more"]:
            return found
        params["starting_after"] = page["data"][-1]["id"]


def make_users(count: int) -> list[Any]:
    User = get_user_model()
    User.objects.bulk_create([User(username=f"user{i}", email=f"user{i}@example.com") for i in range(count)])
    return list(User.objects.order_by("pk"))


# --- scenarios -----------------------------------------------------------------------------------


def bench_coupons(fake: FakeStripe, n: int) -> list[Measure]:
    """N coupons at Stripe; half of them local (a quarter of those stale), N/10 local ones gone."""
    for i in range(n):
        direct_post(fake, "/v1/coupons", id=f"c{i:05d}", duration="once", percent_off=str(1 + i % 90))
    at_stripe = listed(fake, "/v1/coupons")
    rows = []
    for i, data in enumerate(at_stripe[: n // 2]):
        values = StripeCoupon.values_from_stripe(data)
        if i % 4 == 0:
            values["times_redeemed"] = 99
        rows.append(StripeCoupon(**values, stripe_response=data, is_created_at_stripe=True))
    gone_at = timezone.now() - timedelta(days=30)
    rows += [
        StripeCoupon(coupon_id=f"gone{i}", duration="once", percent_off=1, created=gone_at)
        for i in range(n // 10)
    ]
    StripeCoupon.objects.bulk_create(rows)
    first = measure(fake, "refresh_coupons", n, "first")
    second = measure(fake, "refresh_coupons", n, "again")
    return [first, second]


def bench_customers(fake: FakeStripe, n: int) -> list[Measure]:
    """N customers with a card at Stripe, all local; half with stale cards, N/10 local ones gone."""
    card = {
        "object": "card",
        "number": "4242424242424242",
        "exp_month": "12",
        "exp_year": str(timezone.localdate().year + 1),
        "cvc": "123",
    }
    for i in range(n):
        # An inline card: one request per customer instead of a token and a customer.
        direct_post(
            fake, "/v1/customers", description=f"customer {i}", **{f"source[{k}]": v for k, v in card.items()}
        )
    users = make_users(n + n // 10)
    rows = []
    for i, data in enumerate(listed(fake, "/v1/customers")):
        stale = i % 2 == 0
        rows.append(
            StripeCustomer(
                user=users[i],
                stripe_customer_id=data["id"],
                is_created_at_stripe=True,
                sources=[] if stale else data["sources"]["data"],
                default_source="" if stale else data["default_source"],
                stripe_response=data,
            )
        )
    rows += [
        StripeCustomer(user=users[n + i], stripe_customer_id=f"cus_gone{i}", is_created_at_stripe=True)
        for i in range(n // 10)
    ]
    StripeCustomer.objects.bulk_create(rows)
    return [measure(fake, "refresh_customers", n, "first"), measure(fake, "refresh_customers", n, "again")]


def customers_for(fake: FakeStripe, users: list[Any]) -> None:
    for user in users:
        customer = StripeCustomer.objects.create(user=user, stripe_js_response=fake.card_token())
        customer.create_at_stripe()


def bench_charges(fake: FakeStripe, n: int) -> list[Measure]:
    """N pending charges spread over 5 users (one Stripe charge request per row, by nature)."""
    users = make_users(5)
    customers_for(fake, users)
    StripeCharge.objects.bulk_create(
        [StripeCharge(user=users[i % 5], amount=500 + i, description=f"Order {i}") for i in range(n)]
    )
    return [measure(fake, "charge_stripe", n, "first"), measure(fake, "charge_stripe", n, "again")]


def bench_end_subscriptions(fake: FakeStripe, n: int) -> list[Measure]:
    """N subscriptions past their end date (a retrieve and an update per subscription, by nature)."""
    users = make_users(1)
    customers_for(fake, users)
    plan = StripeSubscriptionPlan.objects.create(amount=500, name="bench", interval="month")
    plan.create_at_stripe()
    ended = timezone.localdate() - timedelta(days=1)
    for _ in range(n):
        StripeSubscription.objects.create(user=users[0], plan=plan, end_date=ended).create_at_stripe()
    return [measure(fake, "end_subscriptions", n, "first"), measure(fake, "end_subscriptions", n, "again")]


# --- checks and output ---------------------------------------------------------------------------

#: Peak memory may grow with N by at most what one page costs: the peak of a one-page run (N=100).
REFRESH_COMMANDS = ("refresh_coupons", "refresh_customers")


def request_and_query_checks(m: Measure) -> list[tuple[bool, str]]:
    """(passed, description) for the request and query targets of one run."""
    checks = []
    pages = max(1, math.ceil(m.n / PAGE))
    where = f"{m.command} N={m.n} ({m.run} run)"
    if m.command in REFRESH_COMMANDS:
        ok = m.list_requests == pages and m.requests == pages
        checks.append(
            (ok, f"{where}: {m.requests} Stripe requests, target ceil(N/100) = {pages} list requests")
        )
        bound = pages * MAX_QUERIES_PER_PAGE + MAX_QUERIES_PER_RUN
        checks.append(
            (
                m.queries <= bound,
                f"{where}: {m.queries} SQL queries = {m.queries / pages:.1f} per page, "
                f"bound {MAX_QUERIES_PER_PAGE} per page + {MAX_QUERIES_PER_RUN} = {bound}",
            )
        )
    expected = {"charge_stripe": m.n, "end_subscriptions": 2 * m.n}.get(m.command)
    if expected is not None:
        expected = expected if m.run == "first" else 0
        target = {"charge_stripe": "exactly N", "end_subscriptions": "2N"}[m.command] if expected else "0"
        ok = m.requests == expected
        checks.append((ok, f"{where}: {m.requests} Stripe requests, target {target} = {expected}"))
    return checks


def seen_ids_kib_per_1000(command: str) -> float:
    """What 1,000 more ids of this command's shape cost in a set (the by-design O(N) part)."""
    shape = "c{:05d}" if command == "refresh_coupons" else "cus_{:014d}"
    gc.collect()
    tracemalloc.start()
    ids = {shape.format(i) for i in range(1000, 2000)}
    small = tracemalloc.get_traced_memory()[0]
    ids |= {shape.format(i) for i in range(2000, 11000)}  # 10,000: the set's growth amortised
    large = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del ids
    return (large - small) / 9 / 1024


def memory_checks(measures: list[Measure]) -> list[tuple[bool, str]]:
    """Peak memory against N, per refresh command and run, for commands measured at 2+ sizes.

    PASS when the peak at the largest N exceeds the peak at the smallest (a one-page run, N=100)
    by no more than that one-page peak. The growth per 1,000 objects is the marginal one, between
    the two largest sizes (the step from 100 to 1,000 includes fixed-size buffers filling up, e.g.
    the 2,000-row chunks update_unseen reads); next to it, what the set of seen ids costs alone."""
    checks = []
    for command in REFRESH_COMMANDS:
        ids_per_1000 = seen_ids_kib_per_1000(command)
        for run in ("first", "again"):
            by_n = {m.n: m.peak_kib for m in measures if m.command == command and m.run == run}
            if len(by_n) < 2:
                continue
            sizes = sorted(by_n)
            small, below, large = sizes[0], sizes[-2], sizes[-1]
            one_page = by_n[small]
            growth = by_n[large] - one_page
            per_1000 = (by_n[large] - by_n[below]) / (large - below) * 1000
            ok = growth <= one_page
            reach = ""
            if per_1000 > 0 and not ok:
                reach = "; already past it"
            elif per_1000 > 0:
                at = large + (one_page - growth) / per_1000 * 1000
                reach = f"; at that rate it would reach one page at N~{at:,.0f}"
            checks.append(
                (
                    ok,
                    f"{command} ({run} run) peak memory: "
                    + ", ".join(f"{by_n[n]:.0f} KiB at N={n}" for n in sizes)
                    + f"; {per_1000:+.0f} KiB per 1,000 objects from {below} to {large} (the set of seen "
                    f"ids alone: ~{ids_per_1000:.0f} KiB per 1,000); growth {small}->{large} "
                    f"{growth:+.0f} KiB is "
                    + ("within" if ok else "beyond")
                    + f" one page ({one_page:.0f} KiB, the peak at N={small}){reach}",
                )
            )
    return checks


def table(measures: list[Measure]) -> str:
    header = (
        "command",
        "N",
        "run",
        "Stripe requests",
        "of them lists",
        "SQL queries",
        "per 100",
        "peak KiB",
        "secs",
    )
    lines = [header, tuple("-" * len(h) for h in header)]
    for m in measures:
        per_100 = f"{m.queries / max(1, m.n) * 100:.1f}"
        row = (
            m.command,
            m.n,
            m.run,
            m.requests,
            m.list_requests,
            m.queries,
            per_100,
            f"{m.peak_kib:.0f}",
            f"{m.seconds:.2f}",
        )
        lines.append(tuple(str(cell) for cell in row))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    cells = (" | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines)
    return "\n".join(cells)


def run(sizes: list[int], charge_sizes: list[int], end_sizes: list[int]) -> list[Measure]:
    measures: list[Measure] = []
    with fake_stripe() as fake, test_database():
        # A discarded warm-up run of each command: the first run imports modules and fills caches,
        # which would otherwise be counted in the peak memory of the smallest size.
        for bench in (bench_coupons, bench_customers, bench_charges, bench_end_subscriptions):
            reset(fake)
            bench(fake, 10)
        for n in sizes:
            for bench in (bench_coupons, bench_customers):
                reset(fake)
                measures += bench(fake, n)
        for bench, bench_sizes in ((bench_charges, charge_sizes), (bench_end_subscriptions, end_sizes)):
            for n in bench_sizes:
                reset(fake)
                measures += bench(fake, n)
    return measures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: N = 100, 1,000; 100 charges")
    parser.add_argument("--sizes", type=int, nargs="+", help="N for refresh_* (default 100 1000 5000)")
    parser.add_argument("--charge-sizes", type=int, nargs="*", help="N for charge_stripe (default 1000)")
    parser.add_argument("--end-sizes", type=int, nargs="*", help="N for end_subscriptions (default 100)")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([100, 1000] if args.quick else [100, 1000, 5000])
    charge_sizes = args.charge_sizes if args.charge_sizes is not None else ([100] if args.quick else [1000])
    end_sizes = args.end_sizes if args.end_sizes is not None else [100]
    started = time.perf_counter()
    try:
        measures = run(sizes, charge_sizes, end_sizes)
    except Exception as err:
        print(f"command_costs: cannot run: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"database: {connection.vendor}; Stripe API version: {stripe_api.api_version()}")
    print(table(measures))
    print()
    for m in measures:
        print(f"{m.command} N={m.n} {m.run}: {m.summary}")
    print()
    for m in measures:
        if m.command == "charge_stripe" and m.run == "first":
            # The journal's cost on the happy path: before it, 7.0 (PostgreSQL) / 8.0 (SQLite)
            # statements and 1 transaction per charge; the target is at most 4 more statements.
            print(
                f"charge_stripe N={m.n}: {m.queries / m.n:.1f} SQL statements and "
                f"{m.transactions / m.n:.1f} transactions per charge (happy path)"
            )
    print()
    checks = [check for m in measures for check in request_and_query_checks(m)] + memory_checks(measures)
    for ok, text in checks:
        print(f"{'PASS' if ok else 'MISS'}: {text}")
    missed = sum(not ok for ok, _ in checks)
    print(f"\n{len(checks) - missed} PASS, {missed} MISS; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
