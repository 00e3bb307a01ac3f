"""Stripe HTTP requests and SQL queries of the cron commands, for N = 100 and N = 1,000 objects.

    DJANGO_SETTINGS_MODULE=tests.settings .venv/bin/python benchmarks/command_costs.py [--sizes 100 1000]

Starts its own fake Stripe (localstripe, ``python -m aa_stripe.testing.fakestripe.server``) behind a
recording ``FaultProxy``, creates a test database (SQLite in memory, or the one DATABASE_URL names,
prefixed ``test_``), seeds each scenario straight at the fake (not recorded), runs the command with
``call_command`` and counts the requests the proxy saw and the queries Django ran. Prints a table;
exits non-zero when it cannot run or a count breaks the promise (ceil(N/100) list requests,
queries per page bounded).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
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
from django.test.utils import CaptureQueriesContext, override_settings  # noqa: E402
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


@dataclass
class Measure:
    command: str
    n: int
    run: str
    requests: int
    list_requests: int
    queries: int
    seconds: float
    summary: str


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
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        try:
            call_command(command, *args, stdout=out, stderr=StringIO())
        except CommandError as err:
            raise RuntimeError(f"{command} failed: {err}") from err
    seconds = time.perf_counter() - started
    calls = fake.proxy.calls()
    listing = [c for c in calls if c.method == "GET" and c.path.count("/") == 2]
    summary = out.getvalue().strip().splitlines()[-1]
    return Measure(command, n, run, len(calls), len(listing), len(queries), seconds, summary)


def direct_post(fake: FakeStripe, path: str, **data: Any) -> dict[str, Any]:
    response = requests.post(
        f"{fake.direct_url}{path}", data=data, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    )
    response.raise_for_status()
    return response.json()


def listed(fake: FakeStripe, path: str) -> list[dict[str, Any]]:
    found, params = [], {"limit": 100}
    while True:
        page = fake.get(path, **params)
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
    for i in range(n):
        direct_post(fake, "/v1/customers", source=fake.card_token()["id"], description=f"customer {i}")
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


def problems(m: Measure) -> list[str]:
    found = []
    pages = max(1, math.ceil(m.n / 100))
    if m.command.startswith("refresh_"):
        if m.list_requests != pages or m.requests != pages:
            found.append(f"{m.command} N={m.n}: {m.requests} requests, expected {pages} list requests")
        if m.queries > pages * MAX_QUERIES_PER_PAGE + MAX_QUERIES_PER_RUN:
            found.append(f"{m.command} N={m.n}: {m.queries} queries exceed the per-page bound")
    expected = {"charge_stripe": m.n, "end_subscriptions": 2 * m.n}.get(m.command)
    if expected is not None and m.requests != (expected if m.run == "first" else 0):
        found.append(f"{m.command} N={m.n} ({m.run} run): {m.requests} requests")
    return found


def table(measures: list[Measure]) -> str:
    header = ("command", "N", "run", "Stripe requests", "of them lists", "SQL queries", "per 100", "secs")
    lines = [header, tuple("-" * len(h) for h in header)]
    for m in measures:
        per_100 = f"{m.queries / max(1, m.n) * 100:.1f}"
        row = (m.command, m.n, m.run, m.requests, m.list_requests, m.queries, per_100, f"{m.seconds:.2f}")
        lines.append(tuple(str(cell) for cell in row))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    cells = (" | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines)
    return "\n".join(cells)


def run(sizes: list[int], charge_sizes: list[int]) -> list[Measure]:
    measures: list[Measure] = []
    with fake_stripe() as fake, test_database():
        for n in sizes:
            for bench in (bench_coupons, bench_customers):
                reset(fake)
                measures += bench(fake, n)
        for n in charge_sizes:
            for bench in (bench_charges, bench_end_subscriptions):
                reset(fake)
                measures += bench(fake, n)
    return measures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="N for refresh_*")
    parser.add_argument("--charge-sizes", type=int, nargs="*", default=[100], help="N for charge/end")
    args = parser.parse_args(argv)
    try:
        measures = run(args.sizes, args.charge_sizes)
    except Exception as err:
        print(f"command_costs: cannot run: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"database: {connection.vendor}; Stripe API version: {stripe_api.api_version()}")
    print(table(measures))
    print()
    for m in measures:
        print(f"{m.command} N={m.n} {m.run}: {m.summary}")
    broken = [problem for m in measures for problem in problems(m)]
    for problem in broken:
        print(f"PROMISE BROKEN: {problem}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
