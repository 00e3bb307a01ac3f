"""Deferred webhook ingest with a task enqueue (django-tasks: database backend, RQ) against the floor,
and end-to-end parse throughput of task workers.

    DJANGO_SETTINGS_MODULE=tests.settings .venv/bin/python benchmarks/task_engines.py [--events 2400]

Reuses ``webhooks.py``'s events, seeds, floor view and statement counter. On the current database:

1. ingest: the same signed events posted in-process (Django's test client) to these variants, in
   interleaved rounds (rotated and reversed, each from the same tables, queues emptied):

   * ``deferred``: ``STRIPE_WEBHOOK_DEFERRED_PARSING = True`` and no worker backend (``TASKS`` is
     Django's ``ImmediateBackend``): the deferred mode without a task engine, nothing enqueued;
   * ``a task per burst (db|rq)``: the same with ``TASKS['default']`` = ``django_tasks_db.DatabaseBackend``
     or ``django_tasks_rq.RQBackend``, and the library's default ``STRIPE_WEBHOOK_ENQUEUE_WINDOW``
     (0.5 s): the process enqueues ``parse_waiting_stripe_webhooks`` at most once per window;
   * ``a task per event (db|rq)``: ``STRIPE_WEBHOOK_ENQUEUE_WINDOW = 0``, a ``parse_stripe_webhook``
     task per stored event (no target: what the window saves);
   * ``floor``: ``webhooks.py``'s view that verifies the signature and inserts one row.

   RQ runs on the Redis of ``tests.task_engines.ensure_redis()`` (``AA_STRIPE_BENCH_REDIS_URL``, else
   127.0.0.1:6379/14, not the tests' database; else a redis-server of its own; its database is
   emptied with FLUSHDB), and is skipped when there is none. Prints medians of events/s, the ratio
   to the floor, SQL statements per event and, for RQ, Redis commands and connections per event (an
   untimed counting pass), the time spent inside the backend's ``enqueue`` per event, and PASS/MISS
   against 0.9 of the floor for the default (a task per burst). Every round checks what was
   enqueued: one task per event, or between one and one per window of the round's duration.
2. PostgreSQL only, end to end: ``--parse-events`` of the events stored and enqueued (both ways),
   then as many worker processes as the machine has cores (``os.cpu_count()``) of each engine parse
   them (``tests.task_engines.start_workers``: ``db_worker``; ``rqworker`` with django-tasks-rq's job
   class and RQ's SimpleWorker), beside as many ``parse_stripe_webhooks`` processes (the cron command,
   no task engine; ``webhooks.timed_parse``). The workers start while this process holds an exclusive
   lock of the webhook table, and the clock starts once every one of them waits for it, so Python's
   start-up is not timed; it stops when no event is left unparsed. Prints events/s, the ratio to the
   ingest rate of (1) of the same setup, PostgreSQL sessions and (RQ) Redis commands per event.

``--profile`` adds variants to the ingest table (no target): the floor view followed by a database
enqueue in autocommit (two commits) and in one transaction with its INSERT (one commit), and a task
per event on RQ with one pooled Redis client (django-rq makes a new client, so a new connection, per
enqueue); then a cProfile of the per-event enqueue calls alone.
Exits 0 when it ran (a missed target is reported, not fatal), non-zero when it cannot run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import webhooks as bench  # sets up Django (tests.settings unless DJANGO_SETTINGS_MODULE says otherwise)
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.test.utils import override_settings, setup_test_environment
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django_tasks_db.models import DBTaskResult

from aa_stripe.conf import SETTINGS, webhook_secrets
from aa_stripe.models import StripeSubscriptionPlan, StripeWebhook
from aa_stripe.task_framework import default_backend
from aa_stripe.tasks import parse_stripe_webhook
from aa_stripe.testing import signed_webhook_request
from aa_stripe.testing.fakestripe.plugin import API_KEY, _start_server, _stop_server
from aa_stripe.testing.fakestripe.proxy import FaultProxy
from tests.processes import shared_database_url
from tests.task_engines import (
    EngineUnavailable,
    engine_counts,
    ensure_redis,
    flush_redis,
    rq_queues,
    start_workers,
    stop_workers,
    subprocess_env,
    tasks_setting,
)

ROOT = bench.ROOT
BENCH_REDIS_URL = os.environ.get("AA_STRIPE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
TARGET_ENQUEUE = 0.9  # deferred ingest with an enqueue, as a share of the floor's events/s
IMMEDIATE = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
DB_TASKS = tasks_setting("db")
RQ_TASKS = tasks_setting("rq")
VARIANTS = ("deferred", "burst-db", "burst-rq", "per-event-db", "per-event-rq", "floor")
TARGETED = ("burst-db", "burst-rq")  # the library's default
LABELS = {
    "deferred": "deferred",
    "burst-db": "deferred + a task per burst (db)",
    "burst-rq": "deferred + a task per burst (rq)",
    "per-event-db": "deferred + a task per event (db)",
    "per-event-rq": "deferred + a task per event (rq)",
    "floor": "floor",
    # --profile only
    "floor+db-2tx": "floor + db enqueue, 2 commits",
    "floor+db-1tx": "floor + db enqueue, 1 transaction",
    "per-event-rq-pooled": "a task per event (rq), pooled client",
}
TASKS_OF = {
    "deferred": IMMEDIATE,
    "burst-db": DB_TASKS,
    "burst-rq": RQ_TASKS,
    "per-event-db": DB_TASKS,
    "per-event-rq": RQ_TASKS,
    "floor": IMMEDIATE,
    "floor+db-2tx": DB_TASKS,
    "floor+db-1tx": DB_TASKS,
    "per-event-rq-pooled": RQ_TASKS,
}
RQ_VARIANTS = {"burst-rq", "per-event-rq", "per-event-rq-pooled"}
PER_EVENT = {"per-event-db", "per-event-rq", "floor+db-2tx", "floor+db-1tx", "per-event-rq-pooled"}
BURST = {"burst-db", "burst-rq"}
#: STRIPE_WEBHOOK_ENQUEUE_WINDOW of the "per burst" variants: the library's default.
WINDOW = SETTINGS["WEBHOOK_ENQUEUE_WINDOW"][1]


# --- the floor with a database enqueue (--profile): what one transaction would save --------------


@csrf_exempt
def floor_enqueue_two_commits(request: HttpRequest) -> JsonResponse:
    """The floor, then an enqueue in autocommit: two INSERTs, two commits (what the library does)."""
    response = bench.floor_view(request)
    if response.status_code == 200:
        parse_stripe_webhook.enqueue(json.loads(response.content)["id"])
    return response


@csrf_exempt
def floor_enqueue_one_transaction(request: HttpRequest) -> JsonResponse:
    """The floor's INSERT and the enqueue's INSERT in one transaction: one commit."""
    with transaction.atomic():
        response = bench.floor_view(request)
        if response.status_code == 200:
            parse_stripe_webhook.enqueue(json.loads(response.content)["id"])
    return response


def floor_urlconf(name: str, view: Any) -> str:
    """A URLconf (a module of its own, for ROOT_URLCONF) where the floor's URL answers with ``view``."""
    module = types.ModuleType(name)
    module.urlpatterns = [path(bench.FLOOR_URL.lstrip("/"), view)]  # type: ignore[attr-defined]
    sys.modules[name] = module
    return name


URLCONFS = {
    "floor+db-2tx": floor_urlconf("bench_task_engines_floor_2tx", floor_enqueue_two_commits),
    "floor+db-1tx": floor_urlconf("bench_task_engines_floor_1tx", floor_enqueue_one_transaction),
}
FLOOR_LIKE = {"floor", "floor+db-2tx", "floor+db-1tx"}  # posted to the floor's URL


# --- task engines -------------------------------------------------------------------------------


def rq_queue() -> Any:
    import django_rq
    from django_tasks_rq import Job

    return django_rq.get_queue("default", job_class=Job)


def empty_queues(redis: str | None) -> None:
    """No DBTaskResult rows, nothing in RQ's Redis database (FLUSHDB of that database only)."""
    DBTaskResult.objects.all().delete()
    if redis is not None:
        flush_redis(redis)


def enqueued(variant: str) -> int:
    """Tasks enqueued (and not run) for ``variant``'s engine."""
    if variant in RQ_VARIANTS:
        return rq_queue().count
    return DBTaskResult.objects.count()


class RedisCommands:
    """Commands (by name) and connections the Redis server counted: ``INFO commandstats``/``stats``
    before and after (our own INFO calls left out). Exact when nothing else uses that server."""

    def __init__(self, url: str) -> None:
        from redis import Redis

        self.redis = Redis.from_url(url)

    def snapshot(self) -> tuple[dict[str, int], int]:
        stats = self.redis.info("commandstats")
        calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
        return calls, int(self.redis.info("stats")["total_connections_received"])

    @contextmanager
    def counting(self) -> Iterator[dict[str, int]]:
        result: dict[str, int] = {}
        before, conns = self.snapshot()
        yield result
        after, conns_after = self.snapshot()
        after["info"] = after.get("info", 0) - 2  # the first snapshot's two INFO calls
        for name, calls in after.items():
            if calls - before.get(name, 0):
                result[name] = calls - before.get(name, 0)
        result["(connections)"] = conns_after - conns


@contextmanager
def timed_enqueue(spent: list[float], profile: cProfile.Profile | None = None) -> Iterator[None]:
    """Each call of the default backend's ``enqueue`` appends its time to ``spent`` (and, with
    ``profile``, is profiled: only the enqueue, not the rest of the request)."""
    backend = default_backend()
    enqueue = backend.enqueue

    def timed(*args: Any, **kwargs: Any) -> Any:
        if profile is not None:
            profile.enable()
        started = time.perf_counter()
        try:
            return enqueue(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)
            if profile is not None:
                profile.disable()

    backend.enqueue = timed
    try:
        yield
    finally:
        del backend.enqueue


@contextmanager
def pooled_rq_client(url: str) -> Iterator[None]:
    """django_rq.get_queue() builds a new Redis client (a new pool: a new connection) per call; this
    hands every get_queue the same client instead (--profile: what a pooled connection saves)."""
    import django_rq.queues
    from redis import Redis

    client = Redis.from_url(url)
    original = django_rq.queues.get_connection
    django_rq.queues.get_connection = lambda name="default", use_strict_redis=False: client
    try:
        yield
    finally:
        django_rq.queues.get_connection = original


# --- ingest -------------------------------------------------------------------------------------


@dataclass
class Round:
    variant: str
    events: int
    seconds: float
    enqueue_seconds: list[float]
    statements: dict[str, int] | None = None  # counting pass only: by kind (webhooks.KINDS)
    redis: dict[str, int] | None = None  # counting pass only: Redis commands by name

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def run_round(
    client: Client,
    proxy: FaultProxy,
    variant: str,
    piece: bench.Slice,
    user: Any,
    plan: StripeSubscriptionPlan,
    redis: str | None,
    counting: bool = False,
    profile: cProfile.Profile | None = None,
) -> Round:
    bench.reset_tables(piece.seed, user, plan)
    empty_queues(redis)
    bodies = [signed_webhook_request(event) for event in piece.events]
    proxy.reset()
    spent: list[float] = []
    redis_counts: dict[str, int] | None = None
    pooled = pooled_rq_client(redis) if variant == "per-event-rq-pooled" and redis else nullcontext()
    with (
        override_settings(
            STRIPE_WEBHOOK_DEFERRED_PARSING=variant not in FLOOR_LIKE,
            STRIPE_WEBHOOK_ENQUEUE_WINDOW=WINDOW if variant in BURST else 0,
            TASKS=TASKS_OF[variant],
            ROOT_URLCONF=URLCONFS.get(variant, bench.__name__),
        ),
        pooled,
        timed_enqueue(spent, profile),
    ):
        parse_stripe_webhook.get_backend()  # the backend made before the clock starts
        counter = RedisCommands(redis) if counting and redis and variant in RQ_VARIANTS else None
        with counter.counting() if counter else nullcontext({}) as redis_counts:
            kind = "floor" if variant in FLOOR_LIKE else "deferred"  # which URL: the floor's or ours
            posted = bench.post_slice(client, proxy, kind, bodies, count_queries=counting)
    if posted.bad:
        raise RuntimeError(f"{variant}: {posted.bad} responses were not 200")
    stored = StripeWebhook.objects.count()
    if stored != len(piece.events):
        raise RuntimeError(f"{variant}: {stored} rows stored for {len(piece.events)} events")
    expected = len(piece.events) if variant in PER_EVENT else 0
    got = enqueued(variant)
    if variant in BURST:  # at least one, at most one per window (the first one at the first event)
        expected = got if 1 <= got <= 1 + posted.seconds / WINDOW else -1
    if got != expected:
        raise RuntimeError(f"{variant}: {got} tasks enqueued for {len(piece.events)} events")
    if len(proxy.calls()):
        raise RuntimeError(f"{variant}: {len(proxy.calls())} Stripe requests while storing")
    statements = None
    if posted.queries is not None:
        statements = {kind: sum(q[kind] for q in posted.queries) for kind in bench.KINDS}
    return Round(variant, len(piece.events), posted.seconds, spent, statements, redis_counts or None)


def order_for(round_no: int, variants: tuple[str, ...]) -> list[str]:
    """Rotate and reverse, so no variant always runs first, last or after the same one."""
    shift = round_no % len(variants)
    rotated = list(variants[shift:] + variants[:shift])
    return rotated[::-1] if round_no % 2 else rotated


def report_ingest(
    rounds: list[Round],
    counted: list[Round],
    variants: tuple[str, ...],
    slices: list[bench.Slice],
    redis: str | None,
) -> dict[str, float]:
    """Print the ingest table and the targets; returns each variant's median events/s."""
    db = f"{connection.vendor} ({connection.settings_dict['NAME']})"
    events = sum(len(s.events) for s in slices)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nDeferred ingest with a task enqueue on {db}, {os.cpu_count()} cores, load average {load}")
    print(
        f"{events} distinct events over {len(slices)} rounds, each variant from the same tables; "
        f"Redis: {redis or 'none'}"
    )
    header = "{:<38} {:>8} {:>11} {:>7} {:>9} {:>10} {:>11} {:>10}".format(
        "variant", "events/s", "min..max", "/floor", "SQL/event", "enqueue ms", "Redis cmd/ev", "conns/ev"
    )
    print(header)
    print("-" * len(header))
    medians: dict[str, float] = {}
    for variant in variants:
        mine = [r for r in rounds if r.variant == variant]
        if mine:
            medians[variant] = statistics.median(r.rate for r in mine)
    for variant in [*VARIANTS, *(v for v in variants if v not in VARIANTS)]:
        label = LABELS[variant]
        if variant not in medians:
            if variant in VARIANTS:
                print(f"{label:<38} skipped: no Redis")
            continue
        mine = [r for r in rounds if r.variant == variant]
        rates = [r.rate for r in mine]
        count = next(r for r in counted if r.variant == variant)
        sql = sum((count.statements or {}).values()) / count.events
        spent = [s for r in mine for s in r.enqueue_seconds]
        enqueue_ms = f"{1000 * sum(spent) / sum(r.events for r in mine):.3f}" if spent else "-"
        if count.redis:
            commands = sum(v for k, v in count.redis.items() if not k.startswith("("))
            redis_cmds = f"{commands / count.events:.2f}"
            conns = f"{count.redis.get('(connections)', 0) / count.events:.2f}"
        else:
            redis_cmds = conns = "-"
        print(
            f"{label:<38} {medians[variant]:>8.0f} {f'{min(rates):.0f}..{max(rates):.0f}':>11} "
            f"{medians[variant] / medians['floor']:>7.2f} {sql:>9.2f} {enqueue_ms:>10} {redis_cmds:>11} "
            f"{conns:>10}"
        )
    print(
        "SQL/event: every statement (data, BEGIN/COMMIT, savepoints) of a post, counting pass; enqueue ms:"
        " time inside the backend's enqueue calls, per event (timed rounds)."
    )
    for variant in TARGETED:
        name = f"{LABELS[variant]} >= {TARGET_ENQUEUE} x floor"
        if variant not in medians:
            print(f"SKIP  {name}: no Redis")
            continue
        ratio = medians[variant] / medians["floor"]
        print(f"{'PASS' if ratio >= TARGET_ENQUEUE else 'MISS'}  {name}: {ratio:.2f}")
    for r in counted:
        if r.redis:
            breakdown = ", ".join(
                f"{k} {v / r.events:.2f}" for k, v in sorted(r.redis.items(), key=lambda kv: -kv[1])
            )
            print(f"Redis per event, {LABELS[r.variant]}: {breakdown}")
    return medians


# --- end to end: worker processes drain the queue (PostgreSQL) ----------------------------------


def merged_seed(slices: list[bench.Slice]) -> bench.Seed:
    """One seed for every slice (their objects' ids are distinct per round)."""
    seed = bench.Seed()
    for piece in slices:
        seed.customers += piece.seed.customers
        seed.charges += piece.seed.charges
        seed.subscriptions += piece.seed.subscriptions
        seed.coupons += piece.seed.coupons
        seed.intents += piece.seed.intents
    return seed


def drain(
    client: Client,
    proxy: FaultProxy,
    variant: str,
    slices: list[bench.Slice],
    user: Any,
    plan: StripeSubscriptionPlan,
    redis: str | None,
    workers: int,
    log_dir: Path,
) -> tuple[int, float, int, dict[str, int]]:
    """Store and enqueue every event, then time ``workers`` worker processes of ``engine`` parsing them.

    The workers start (``tests.task_engines.start_workers``) while this process holds an exclusive
    lock of the webhook table; each takes a task and waits for the lock; the clock starts when every
    one of them waits, and stops when no event is left unparsed. Returns the events, the seconds,
    the database sessions the workers opened and (RQ) the Redis commands from their start to their stop."""
    engine = "rq" if variant in RQ_VARIANTS else "db"
    bench.reset_tables(merged_seed(slices), user, plan)
    empty_queues(redis)
    events = [event for piece in slices for event in piece.events]
    bodies = [signed_webhook_request(event) for event in events]
    window = WINDOW if variant in BURST else 0
    with override_settings(
        STRIPE_WEBHOOK_DEFERRED_PARSING=True, STRIPE_WEBHOOK_ENQUEUE_WINDOW=window, TASKS=TASKS_OF[variant]
    ):
        posted = bench.post_slice(client, proxy, "deferred", bodies)
    tasks = enqueued(variant)
    if posted.bad or not (tasks == len(events) if variant in PER_EVENT else tasks >= workers):
        raise RuntimeError(f"{variant}: {tasks} tasks enqueued for {len(events)} events")
    env = subprocess_env(
        shared_database_url(f"aa_stripe_bench_{engine}_worker"),
        engine=engine,
        redis_url=redis,
        api_base=proxy.url,
        deferred=True,
    )
    table = StripeWebhook._meta.db_table
    sessions = database_sessions()
    running: list[Any] = []
    unparsed = StripeWebhook.objects.filter(is_parsed=False)
    counting = RedisCommands(redis).counting() if engine == "rq" and redis else nullcontext({})
    with counting as redis_counts:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {connection.ops.quote_name(table)} IN ACCESS EXCLUSIVE MODE")
                running = start_workers(engine, workers, env, log_dir, prefix=f"bench-{os.getpid()}")
                deadline = time.monotonic() + 60
                while True:
                    cursor.execute(
                        "SELECT count(DISTINCT pid) FROM pg_locks"
                        " WHERE relation = %s::regclass AND NOT granted",
                        [table],
                    )
                    if cursor.fetchone()[0] >= workers:
                        break
                    if time.monotonic() > deadline or not all(w.alive() for w in running):
                        raise RuntimeError(
                            f"{engine}: the workers did not reach the webhook table: {logs(running)}"
                        )
                    time.sleep(0.01)
                started = time.perf_counter()
            deadline = time.monotonic() + 600
            while unparsed.exists():
                if time.monotonic() > deadline or not all(w.alive() for w in running):
                    raise RuntimeError(f"{engine}: {unparsed.count()} events left unparsed: {logs(running)}")
                time.sleep(0.01)
            seconds = time.perf_counter() - started
            # Untimed: the other tasks per burst find nothing left and end after their linger.
            deadline = time.monotonic() + 60
            while (counts := engine_counts(engine))["queued"] or counts["running"]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{variant}: tasks still {dict(counts)}: {logs(running)}")
                time.sleep(0.05)
        finally:
            # Every event is parsed (a worker that died before was an error above): how they stop does
            # not matter here (one still stopping after 5 s is killed).
            stop_workers(running, timeout=5)
        time.sleep(0.5)  # the workers' backends report their statistics as they exit
        sessions = database_sessions() - sessions
    failed = StripeWebhook.objects.exclude(parse_error="").count()
    counts = engine_counts(engine)
    if failed or counts.get("successful") != tasks or set(counts) != {"successful"}:
        raise RuntimeError(f"{variant}: {failed} parses failed, tasks {dict(counts)} of {tasks} enqueued")
    empty_queues(redis)
    return len(events), seconds, sessions, redis_counts


def database_sessions() -> int:
    """Sessions (connections) PostgreSQL counted on this database so far (pg_stat_database)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def logs(workers: list[Any]) -> str:
    return "\n".join(f"--- {w.name}:\n{w.log()[-2000:]}" for w in workers)


def report_end_to_end(
    client: Client,
    proxy: FaultProxy,
    slices: list[bench.Slice],
    user: Any,
    plan: StripeSubscriptionPlan,
    redis: str | None,
    medians: dict[str, float],
    log_dir: Path,
) -> None:
    """Parse throughput of ``cores`` workers of each engine against that engine's ingest rate, and of
    as many ``parse_stripe_webhooks`` processes (no task engine: the cron command) against deferred's."""
    cores = os.cpu_count() or 1
    events = [event for piece in slices for event in piece.events]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nEnd to end: {len(events)} stored events parsed by {cores} worker processes (load average {load})"
    )
    header = "{:<44} {:>8} {:>9} {:>9} {:>11} {:>12} {:>10}".format(
        "workers", "seconds", "events/s", "/ingest", "sessions/ev", "Redis cmd/ev", "conns/ev"
    )
    print(header)
    print("-" * len(header))
    seconds = bench.timed_parse(client, proxy, bench.Slice(events, merged_seed(slices)), user, plan, cores)
    rate = len(events) / seconds
    label = f"parse_stripe_webhooks x{cores} (no engine)"
    print(
        f"{label:<44} {seconds:>8.2f} {rate:>9.0f} {rate / medians['deferred']:>9.2f} "
        f"{'-':>11} {'-':>12} {'-':>10}"
    )
    for variant in ("burst-db", "burst-rq", "per-event-db", "per-event-rq"):
        engine = "rq" if variant in RQ_VARIANTS else "db"
        worker = "db_worker" if engine == "db" else "rqworker (SimpleWorker)"
        label = f"{worker} x{cores}, {'a task per burst' if variant in BURST else 'a task per event'}"
        if engine == "rq" and not redis:
            print(f"{label:<44} skipped: no Redis")
            continue
        count, seconds, sessions, commands = drain(
            client, proxy, variant, slices, user, plan, redis, cores, log_dir
        )
        rate = count / seconds
        ratio = rate / medians[variant]
        cmds = sum(v for k, v in commands.items() if not k.startswith("("))
        redis_cmds = f"{cmds / count:.2f}" if commands else "-"
        conns = f"{commands['(connections)'] / count:.2f}" if commands else "-"
        print(
            f"{label:<44} {seconds:>8.2f} {rate:>9.0f} {ratio:>9.2f} {sessions / count:>11.2f} "
            f"{redis_cmds:>12} {conns:>10}"
        )
        if commands:
            top = sorted(commands.items(), key=lambda kv: -kv[1])[:12]
            print("  Redis per event: " + ", ".join(f"{k} {v / count:.2f}" for k, v in top))
    print(
        "/ingest: parse events/s over the ingest events/s above of the same setup (deferred; the task"
        " engine's variant).\nsessions/ev: PostgreSQL connections the workers opened per event; Redis:"
        " every command and connection from the workers' start to their stop (idle polling included)."
    )


# --- profile ------------------------------------------------------------------------------------


def profile_enqueue(
    client: Client, proxy: FaultProxy, piece: bench.Slice, user: Any, plan: Any, redis: str | None
) -> None:
    """cProfile of the backend's ``enqueue`` calls only, over one round of each enqueue variant."""
    for variant in ("per-event-db", "per-event-rq", "per-event-rq-pooled"):
        if variant in RQ_VARIANTS and not redis:
            continue
        profile = cProfile.Profile()
        run_round(client, proxy, variant, piece, user, plan, redis, profile=profile)
        for order, limit in (("cumulative", 28), ("tottime", 12)):
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(order).print_stats(limit)
            lines = [
                line.replace(str(ROOT / ".venv/lib/python3.11/site-packages/"), "")
                for line in out.getvalue().splitlines()
            ]
            print(
                f"\ncProfile of the enqueues of one {LABELS[variant]} round ({len(piece.events)} events), "
                f"by {order}:"
            )
            print("\n".join(line for line in lines if line.strip()))


# --- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2400, help="distinct events in all (default 2400)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (default 8)")
    parser.add_argument(
        "--parse-events", type=int, default=1200, help="events the workers parse, end to end (default 1200)"
    )
    parser.add_argument("--profile", action="store_true", help="also profile the enqueue paths (see above)")
    parser.add_argument("--no-workers", action="store_true", help="skip the end-to-end part (PostgreSQL)")
    args = parser.parse_args()
    if args.rounds < 1 or args.events < args.rounds * 50:
        parser.error("need at least one round and 50 events per round")

    setup_test_environment()
    slices = bench.build_slices(args.events, args.rounds)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        try:
            # A Redis database of its own (FLUSHDB before and after): not the tests' (15).
            redis: str | None = stack.enter_context(ensure_redis(BENCH_REDIS_URL))
        except EngineUnavailable as err:
            print(f"RQ skipped: {err}")
            redis = None
        rq_settings = {"RQ_QUEUES": rq_queues(redis)} if redis else {}
        variants = tuple(v for v in VARIANTS if redis or v not in RQ_VARIANTS)
        if args.profile:
            variants += ("floor+db-2tx", "floor+db-1tx")
            variants += ("per-event-rq-pooled",) if redis else ()
        proc, url, log = _start_server(Path(tmp) / "localstripe.log")
        try:
            with (
                FaultProxy(url) as proxy,
                override_settings(
                    STRIPE_API_BASE=proxy.url,
                    STRIPE_API_KEY=API_KEY,
                    ROOT_URLCONF=bench.__name__,
                    STRIPE_MAX_NETWORK_RETRIES=0,
                    DEBUG=False,
                    **rq_settings,
                ),
                bench.test_database(),
            ):
                bench.FLOOR_SECRET[:] = webhook_secrets()[:1]
                if not bench.FLOOR_SECRET:
                    raise RuntimeError("STRIPE_WEBHOOK_ENDPOINT_SECRET is not set")
                user = get_user_model().objects.create(username="bench")
                plan = StripeSubscriptionPlan.objects.create(
                    name="bench", amount=1500, interval="month", is_created_at_stripe=True
                )
                client = Client()
                # Warm-up, untimed: imports, connections; statements and Redis commands counted.
                counted = [
                    run_round(client, proxy, v, slices[0], user, plan, redis, counting=True) for v in variants
                ]
                rounds = [
                    run_round(client, proxy, v, piece, user, plan, redis)
                    for r, piece in enumerate(slices)
                    for v in order_for(r, variants)
                ]
                medians = report_ingest(rounds, counted, variants, slices, redis)
                if connection.vendor == "postgresql" and not args.no_workers:
                    parsed = slices[: max(1, round(args.parse_events / len(slices[0].events)))]
                    report_end_to_end(
                        client, proxy, parsed, user, plan, redis, medians, Path(tmp) / "workers"
                    )
                if args.profile:
                    profile_enqueue(client, proxy, slices[0], user, plan, redis)
        finally:
            _stop_server(proc, log)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # any failure to run is reported and exits non-zero
        print(f"benchmarks/task_engines.py could not run: {err!r}", file=sys.stderr)
        sys.exit(1)
