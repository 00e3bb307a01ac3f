"""``aa_stripe.tasks`` on real task engines, with real worker processes, on PostgreSQL.

The webhook tests run on both engines: RQ on Redis (``django_tasks_rq.RQBackend``, two ``rqworker``
processes) and the database backend (``django_tasks_db.DatabaseBackend``, two ``db_worker``
processes); the fan-out test on RQ. No mock broker, nothing patched: the test process enqueues as a
host would (the webhook view of pytest-django's threaded live server, ``charge_stripe --enqueue`` as
a process) and the workers run the tasks against this test's database (committed rows:
``transactional_db``).

* 2,200 signed deliveries over HTTP from 8 threads (2,000 events, 10% about one coupon within the
  same second, 200 re-deliveries, some racing their first delivery) with
  ``STRIPE_WEBHOOK_DEFERRED_PARSING``: each event stored once and enqueued once, each parsed once by a
  task, its effects made once.
* A worker SIGKILLed while it parses an event: the other one drains the queue, the engine never runs
  the killed task again, and ``parse_stripe_webhooks`` (the cron fallback) parses that one event.
* 500 chargeable rows (PaymentIntents), ``charge_stripe --enqueue`` run before the workers start and
  again while they charge (every row not done yet enqueued twice): each row is paid once at the fake
  Stripe, the duplicate tasks change nothing.

Redis is never assumed: ``tests.task_engines.ensure_redis`` uses the one of
``AA_STRIPE_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``) when it answers, else starts a
``redis-server`` of its own; the RQ tests are skipped when neither is possible.
"""

from __future__ import annotations

import io
import logging
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, models

# Imported now, under tests.settings' TASKS (Django's ImmediateBackend), as the rest of the suite does:
# on Django 6 ``@task()`` builds each task with the class of the backend TASKS names at import
# time, and django-tasks-rq's (the backport's Task) is refused by django-tasks-db's backend there.
import aa_stripe.tasks  # noqa: F401
from aa_stripe.models import StripeCharge, StripeCoupon, StripeWebhook
from aa_stripe.tasks import DRAIN_BATCH, DRAIN_LEASE
from aa_stripe.testing import signed_webhook_request
from tests.conftest import make_customer
from tests.processes import shared_database_url
from tests.task_engines import (
    ENGINES,
    ROOT,
    EngineUnavailable,
    WorkerProcess,
    engine_counts,
    ensure_redis,
    finished_jobs,
    rq_queues,
    running_jobs,
    start_workers,
    stop_workers,
    subprocess_env,
    tasks_setting,
    wait_until,
)
from tests.test_races_postgres import fake_list, realistic_events
from tests.test_webhook_workers_postgres import hot_coupon_events

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="worker processes need PostgreSQL"),
]

THREADS = 8
WEBHOOK_PATH = "/aa-stripe/webhooks"
HTTP_TIMEOUT = 30.0
WAIT = 150.0
# What a worker's log must never show: a task that raised, a deadlock PostgreSQL broke, a crash.
TROUBLE = re.compile(r"Traceback|[Dd]eadlock|Error|Exception|CRITICAL")
# Where a worker's log turns to its shutdown (SIGTERM from the test): what it prints from there on is
# the engine's own business (db_worker's handler calls sys.exit(), which Python 3.13 may report as
# "Exception ignored" when the signal lands in a __del__); the exit code is asserted instead.
SHUTDOWN = re.compile(r"Received Terminated|warm shut down requested|cold shut down")


def working(log: str) -> str:
    """A worker's log up to its shutdown."""
    found = SHUTDOWN.search(log)
    return log if found is None else log[: found.start()]


@dataclass
class Engine:
    """The engine of a test: TASKS (and RQ_QUEUES) of this process already point at it."""

    name: str
    redis_url: str | None
    log_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    # What the library logged at WARNING or above in this process, e.g. an event stored but not
    # enqueued (the broker refused it): none is expected.
    warnings: list[str] = field(default_factory=list)

    def env(self, api_base: str | None) -> dict[str, str]:
        return subprocess_env(
            shared_database_url("aa_stripe_task_worker"),
            engine=self.name,
            redis_url=self.redis_url,
            api_base=api_base,
            deferred=True,
        )

    def start(self, count: int, api_base: str | None) -> list[WorkerProcess]:
        started = start_workers(self.name, count, self.env(api_base), self.log_dir)
        self.workers += started
        return started

    def state(self) -> str:
        """The engine's counts, the parsed rows and the end of each worker's log (for a timeout)."""
        logs = "\n".join(f"--- {worker.name}:\n{worker.log()[-3000:]}" for worker in self.workers)
        counts = f"{engine_counts(self.name)}, {parsed_count()} rows parsed, warnings: {self.warnings[:5]}"
        return f"{counts}\n{logs}"

    def wait(self, predicate: Any, what: str) -> None:
        wait_until(predicate, what, WAIT, details=self.state)

    def logs(self) -> str:
        return "\n".join(f"--- {worker.name}:\n{worker.log()}" for worker in self.workers)

    def working_logs(self) -> str:
        """Each worker's log up to its shutdown (see :func:`working`)."""
        return "\n".join(f"--- {worker.name}:\n{working(worker.log())}" for worker in self.workers)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> Iterator[Engine]:
    """TASKS of this process set to the engine (RQ on a Redis ``ensure_redis`` found or started);
    the workers a test starts are stopped (killed if need be) afterwards."""
    name = request.param
    with ExitStack() as stack:
        redis_url = None
        if name == "rq":
            try:
                redis_url = stack.enter_context(ensure_redis())
            except EngineUnavailable as err:
                pytest.skip(f"RQ needs Redis: {err}")
            settings.RQ_QUEUES = rq_queues(redis_url)
        settings.TASKS = tasks_setting(name)
        running = Engine(name, redis_url, tmp_path / "workers")
        handler = WarningsKept(running.warnings)
        logging.getLogger("aa_stripe").addHandler(handler)
        try:
            yield running
        finally:
            logging.getLogger("aa_stripe").removeHandler(handler)
            stop_workers(running.workers, timeout=10)


class WarningsKept(logging.Handler):
    """Keeps the messages of WARNING records and above (from any thread, e.g. the live server's)."""

    def __init__(self, kept: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.kept = kept

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append(record.getMessage())


def deadlocks() -> int:
    """Deadlocks PostgreSQL detected (and broke) in this database so far."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def parsed_count() -> int:
    return StripeWebhook.objects.filter(is_parsed=True).count()


# --- deliveries over HTTP ----------------------------------------------------------------------


def with_redeliveries(events: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Each event once, plus 10% re-deliveries: 70 events three times in a row (racing each other on
    the threads) and 60 once more at a random later place."""
    bursts = set(map(id, rng.sample(events, len(events) * 7 // 200)))
    blocks = [[event] * (3 if id(event) in bursts else 1) for event in events]
    schedule = [event for block in blocks for event in block]
    for event in rng.sample([e for e in events if id(e) not in bursts], len(events) * 6 // 200):
        first = next(n for n, seen in enumerate(schedule) if seen is event)
        schedule.insert(rng.randrange(first + 1, len(schedule) + 1), event)
    return schedule


def deliver(url: str, schedule: list[dict[str, Any]]) -> list[tuple[str, int, dict[str, Any]]]:
    """POST each delivery, signed afresh as Stripe does, from :data:`THREADS` threads in turn."""
    queue = iter(schedule)
    lock = threading.Lock()

    def client() -> list[tuple[str, int, dict[str, Any]]]:
        answers = []
        with requests.Session() as session:
            while True:
                with lock:
                    event = next(queue, None)
                if event is None:
                    return answers
                body, headers = signed_webhook_request(event)
                headers["Content-Type"] = "application/json"
                response = session.post(url, data=body, headers=headers, timeout=HTTP_TIMEOUT)
                try:
                    reply = response.json()
                except ValueError:
                    reply = {"text": response.text[:500]}
                answers.append((event["id"], response.status_code, reply))

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(client) for _ in range(THREADS)]
        return [answer for future in futures for answer in future.result(timeout=WAIT)]


def assert_answered(answers: list[tuple[str, int, dict[str, Any]]], schedule: list[dict[str, Any]]) -> None:
    """Every delivery answered 200: the first one of each event "stored", the others "duplicate"."""
    assert len(answers) == len(schedule)
    assert [answer for answer in answers if answer[1] != 200] == []
    per_event: dict[str, Counter[str]] = defaultdict(Counter)
    for event_id, _status, reply in answers:
        assert reply["id"] == event_id
        per_event[event_id][reply["status"]] += 1
    deliveries = Counter(event["id"] for event in schedule)
    assert per_event == {
        event_id: +Counter({"stored": 1, "duplicate": count - 1}) for event_id, count in deliveries.items()
    }


def mixed_events(fake_stripe: Any, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` events, shuffled: 90% of the four kinds of ``realistic_events`` (coupons created,
    charges, customers and invoices made elsewhere), 10% updates of the coupon HOT within one second."""
    now = int(time.time())
    hot = count // 10
    events = realistic_events(count - hot, now) + hot_coupon_events(fake_stripe, hot, now - 20)
    random.Random(seed).shuffle(events)
    return events


def assert_parsed_once(events: list[dict[str, Any]]) -> None:
    """Each event stored once and parsed once, without error, no lease left; its effects once."""
    rows = StripeWebhook.objects.values_list(
        "id", "is_parsed", "parse_attempts", "parse_error", "lease_token"
    )
    assert sorted(rows) == sorted((event["id"], True, 1, "", "") for event in events)
    coupons = sum(event["type"] == "coupon.created" for event in events)
    assert StripeCoupon.objects.filter(coupon_id__startswith="RACE").count() == coupons
    assert StripeCoupon.objects.get(coupon_id="HOT").metadata == {"round": "last"}  # as the fake has it


# --- 1. webhooks: deliveries over HTTP, parsed by the workers --------------------------------------


@pytest.mark.parametrize("window", [0.5, 0], ids=["burst-task", "task-per-event"])
def test_2200_deliveries_over_http_are_each_parsed_once_by_a_task(
    engine: Engine,
    window: float,
    fake_stripe: Any,
    live_server: Any,
    settings: Any,
    parse_counts: Counter[str],
):
    settings.STRIPE_WEBHOOK_DEFERRED_PARSING = True
    settings.STRIPE_WEBHOOK_ENQUEUE_WINDOW = window
    events = mixed_events(fake_stripe, 2000, seed=2000)
    schedule = with_redeliveries(events, random.Random(2200))
    assert (len(schedule), len({event["id"] for event in schedule})) == (len(events) * 11 // 10, len(events))
    workers = engine.start(2, api_base=fake_stripe.url)
    deadlocks_before = deadlocks()

    answers = deliver(live_server.url + WEBHOOK_PATH, schedule)
    if window:
        engine.wait(lambda: parsed_count() == len(events) and idle(engine), "the tasks parsed every event")
    else:
        engine.wait(lambda: ended(engine) >= len(events), "the workers ran every task")
    codes = stop_workers(workers)

    assert_answered(answers, schedule)
    assert engine.warnings == []  # each stored event was enqueued
    assert codes == [0, 0], engine.logs()[-5000:]
    assert not TROUBLE.search(engine.working_logs()), engine.logs()[-5000:]
    assert deadlocks() == deadlocks_before
    assert_parsed_once(events)
    assert parse_counts == Counter()  # the view only stored them: each parse was a worker's
    jobs = finished_jobs(engine.name)
    assert engine_counts(engine.name) == {"successful": len(jobs)}
    if window:
        # One task per burst: far fewer tasks than events, together they parsed each event once.
        assert 1 <= len(jobs) < len(events) // 10
        assert sum(job.return_value["parsed"] for job in jobs) == len(events)
        assert {job.return_value["failed"] for job in jobs} == {0}
    else:
        # One task per stored event (none for a re-delivery), each of them parsed its event.
        assert Counter(job.args for job in jobs) == Counter((event["id"],) for event in events)
        assert Counter(job.return_value for job in jobs) == {"parsed": len(events)}
    assert {job.worker for job in jobs} == {worker.name for worker in workers}  # both took a share


def idle(engine: Engine) -> bool:
    """Nothing queued or running at the engine."""
    counts = engine_counts(engine.name)
    return not counts["queued"] and not counts["running"]


# --- 2. a worker SIGKILLed mid-parse -------------------------------------------------------------


def test_a_worker_killed_mid_parse_loses_nothing_and_the_cron_parses_its_event(
    engine: Engine, fake_stripe: Any, live_server: Any, settings: Any
):
    settings.STRIPE_WEBHOOK_DEFERRED_PARSING = True
    settings.STRIPE_WEBHOOK_ENQUEUE_WINDOW = 0  # a task per event: the killed one is known by its event
    events = mixed_events(fake_stripe, 600, seed=600)
    workers = engine.start(2, api_base=fake_stripe.url)
    url = live_server.url + WEBHOOK_PATH
    half = len(events) // 2

    answers = deliver(url, events[:half])
    engine.wait(lambda: parsed_count() >= 100, "the workers have parsed some events")
    # The next read of the coupon HOT from "Stripe" is held unanswered: its worker stops mid-parse,
    # inside the transaction that marks the event parsed, and is killed there.
    fake_stripe.proxy.inject("hold_before", method="GET", path_prefix="/v1/coupons/HOT")
    answers += deliver(url, events[half:])
    fake_stripe.proxy.wait_held(1, timeout=WAIT)
    held = held_job(engine, events)
    [doomed] = [worker for worker in workers if worker.name == held.worker]
    [survivor] = [worker for worker in workers if worker is not doomed]
    assert doomed.kill() == -9
    fake_stripe.proxy.reset()  # the held connection is closed; no fault left

    engine.wait(lambda: ended(engine) >= len(events) - 1, "the survivor ran every other task")
    assert stop_workers([survivor]) == [0], survivor.log()[-5000:]
    assert_answered(answers, events)
    assert engine.warnings == []
    assert not TROUBLE.search(working(survivor.log())), survivor.log()[-5000:]
    [killed_event] = held.args
    # The engine never ran the killed task again: RQ does not retry an abandoned job (it stays in
    # the StartedJobRegistry until its timeout, then fails); the database backend leaves its row
    # RUNNING for good. The killed parse's transaction was rolled back: the event is unparsed.
    assert engine_counts(engine.name) == {"successful": len(events) - 1, "running": 1}
    assert [job.args for job in running_jobs(engine.name)] == [(killed_event,)]
    assert not StripeWebhook.objects.get(pk=killed_event).is_parsed
    assert {job.worker for job in finished_jobs(engine.name)} == {doomed.name, survivor.name}

    # So the cron fallback finishes the killed task's event: it parses exactly that one.
    out = io.StringIO()
    call_command("parse_stripe_webhooks", verbosity=2, stdout=out, stderr=out)
    assert re.findall(r"^Parsed (\S+) \(", out.getvalue(), re.MULTILINE) == [killed_event], out.getvalue()
    assert_parsed_once(events)


def test_a_worker_killed_mid_burst_task_loses_nothing(
    engine: Engine, fake_stripe: Any, live_server: Any, settings: Any
):
    """The default, one task per burst: the killed task's batch stays leased to it (at most
    ``DRAIN_BATCH`` rows, ``DRAIN_LEASE`` long); once that ends, the cron fallback parses them."""
    settings.STRIPE_WEBHOOK_DEFERRED_PARSING = True
    settings.STRIPE_WEBHOOK_ENQUEUE_WINDOW = 0.5
    events = mixed_events(fake_stripe, 600, seed=601)
    workers = engine.start(2, api_base=fake_stripe.url)
    url = live_server.url + WEBHOOK_PATH
    half = len(events) // 2

    answers = deliver(url, events[:half])
    engine.wait(lambda: parsed_count() >= 100, "the workers have parsed some events")
    fake_stripe.proxy.inject("hold_before", method="GET", path_prefix="/v1/coupons/HOT")
    answers += deliver(url, events[half:])
    fake_stripe.proxy.wait_held(1, timeout=WAIT)
    # The held worker waits inside the transaction that parses one event of its batch.
    held: list[str] = []
    engine.wait(lambda: bool(held.extend(waiting_in_transaction()) or held), "the held worker is known")
    [doomed] = [worker for worker in workers if worker.name == held[0]]
    [survivor] = [worker for worker in workers if worker is not doomed]
    assert doomed.kill() == -9
    fake_stripe.proxy.reset()

    leased = StripeWebhook.objects.filter(is_parsed=False).exclude(lease_token="")
    engine.wait(
        lambda: idle_but_killed(engine) and parsed_count() + leased.count() == len(events),
        "the survivor parsed every event but the killed task's batch",
    )
    # Its batch is leased to it (or, if the deliveries outlasted the lease, the survivor took it).
    assert leased.count() <= DRAIN_BATCH
    assert stop_workers([survivor]) == [0], survivor.log()[-5000:]
    assert_answered(answers, events)
    assert engine.warnings == []
    assert not TROUBLE.search(working(survivor.log())), survivor.log()[-5000:]
    assert engine_counts(engine.name)["running"] == 1  # never run again
    assert engine_counts(engine.name)["failed"] == 0

    # The cron fallback takes the killed task's rows once their lease has ended.
    leased_before_cron = leased.count()
    wait_until(lease_ended, "the killed task's lease ended", DRAIN_LEASE.total_seconds() + 30)
    out = io.StringIO()
    call_command("parse_stripe_webhooks", verbosity=2, stdout=out, stderr=out)
    cron_parsed = re.findall(r"^Parsed (\S+) \(", out.getvalue(), re.MULTILINE)
    assert len(cron_parsed) == leased_before_cron, out.getvalue()
    assert_parsed_once(events)


def waiting_in_transaction() -> list[str]:
    """The workers whose connection waits inside a transaction for more than a second."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT application_name FROM pg_stat_activity WHERE state = 'idle in transaction' "
            "AND application_name LIKE 'worker-%%' AND now() - state_change > interval '1 second'"
        )
        return [row[0] for row in cursor.fetchall()]


def idle_but_killed(engine: Engine) -> bool:
    """Nothing queued, and nothing running but the killed worker's task."""
    counts = engine_counts(engine.name)
    return not counts["queued"] and counts["running"] <= 1


def lease_ended() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        [now] = cursor.fetchone()
    latest = StripeWebhook.objects.filter(is_parsed=False).aggregate(models.Max("lease_until"))
    return latest["lease_until__max"] is None or latest["lease_until__max"] < now


def held_job(engine: Engine, events: list[dict[str, Any]]) -> Any:
    """The task whose worker waits for the held read of HOT: the one running task about HOT whose
    event is not parsed (the other worker may pass through such a task for a moment)."""
    hot = {event["id"] for event in events if event["type"] == "coupon.updated"}
    found: list[Any] = []

    def one() -> bool:
        found[:] = [
            job
            for job in running_jobs(engine.name)
            if job.args[0] in hot
            and not StripeWebhook.objects.filter(pk=job.args[0], is_parsed=True).exists()
        ]
        return len(found) == 1

    engine.wait(one, "the held worker's task is known")
    return found[0]


def ended(engine: Engine) -> int:
    """How many tasks the engine has finished, successfully or not."""
    counts = engine_counts(engine.name)
    return counts["successful"] + counts["failed"]


# --- 3. charge_stripe --enqueue: 500 rows, each enqueued twice -----------------------------------


def enqueue_charges(engine: Engine) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "charge_stripe",
            "--enqueue",
            "--settings=tests.subprocess_settings",
        ],
        cwd=ROOT,
        env=engine.env(api_base=None),  # --enqueue calls no Stripe
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def enqueued(run: subprocess.CompletedProcess) -> int:
    return int(re.search(r"^charge_stripe --enqueue: (\d+) enqueued", run.stdout, re.MULTILINE)[1])


def charged_count() -> int:
    return StripeCharge.objects.filter(is_charged=True).count()


# On RQ only, to keep this file within about three minutes: the task and its claim are the same on
# the database backend (tests.task_engines.start_workers("db", ...) runs it there as well).
@pytest.mark.parametrize("engine", ["rq"], indirect=True)
def test_500_rows_enqueued_twice_are_each_paid_once(engine: Engine, fake_stripe: Any):
    users = [
        get_user_model().objects.create_user(username=f"payer{n}", email=f"payer{n}@example.com")
        for n in range(50)
    ]
    for someone in users:
        make_customer(fake_stripe, someone)  # a card at the fake Stripe, the customer's default
    rows = [
        StripeCharge.objects.create(user=someone, amount=1000 + 10 * i + n, description=f"Order {i}-{n}")
        for i in range(10)
        for n, someone in enumerate(users)
    ]

    fake_stripe.proxy.reset()  # count the payments' requests only
    deadlocks_before = deadlocks()
    first = enqueue_charges(engine)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    assert enqueued(first) == len(rows), first.stdout[-2000:]
    workers = engine.start(2, api_base=fake_stripe.url)
    engine.wait(lambda: charged_count() >= 20, "the workers charged some rows")
    # While the workers charge: each row not charged (nor being sent) is enqueued a second time.
    second = enqueue_charges(engine)
    assert second.returncode == 0 and second.stderr == "", second.stderr
    enqueued_again = enqueued(second)
    assert 0 < enqueued_again <= len(rows) - 20, second.stdout[-2000:]
    engine.wait(lambda: ended(engine) >= len(rows) + enqueued_again, "the workers ran every task")
    codes = stop_workers(workers)

    assert codes == [0, 0], engine.logs()[-5000:]
    assert not TROUBLE.search(engine.working_logs()), engine.logs()[-5000:]
    assert deadlocks() == deadlocks_before
    jobs = finished_jobs(engine.name)
    assert engine_counts(engine.name) == {"successful": len(rows) + enqueued_again}
    outcomes = Counter(job.return_value for job in jobs)
    assert outcomes == {"charged": len(rows), "skipped": enqueued_again}, outcomes
    # Exactly one payment per row at the fake Stripe, as recorded here: one creation request per row
    # (its first attempt's idempotency key), never replayed, one PaymentIntent per row.
    creations = [
        call
        for call in fake_stripe.proxy.calls("POST", "/v1/payment_intents")
        if call.path == "/v1/payment_intents"
    ]
    assert sorted(call.idempotency_key for call in creations) == sorted(
        f"payment_intent:{row.uuid}:1" for row in rows
    )
    assert {(call.status, call.replayed) for call in creations} == {(200, False)}
    intents = fake_list(fake_stripe, "/v1/payment_intents")
    by_row = Counter(intent["metadata"]["charge_uuid"] for intent in intents)
    assert by_row == Counter(str(row.uuid) for row in rows)
    assert {intent["status"] for intent in intents} == {"succeeded"}
    at_fake = {intent["id"]: intent for intent in intents}
    for row in StripeCharge.objects.all():
        assert row.is_charged and not row.charge_attempt_failed and row.attempt == 1
        assert at_fake[row.payment_intent_id]["amount"] == row.amount
