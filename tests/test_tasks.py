"""``aa_stripe.tasks`` and ``--enqueue`` through the task framework, in this process.

The database backend (django-tasks-db) is the real engine here: tasks are enqueued into its table and
run by its own ``db_worker --batch``. Processes, RQ and killed workers: tests/test_tasks_engines_postgres.py.
"""

from __future__ import annotations

import logging
import time
from io import StringIO
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django_tasks_db.models import DBTaskResult

from aa_stripe.checks import check_task_backend
from aa_stripe.exceptions import StripeTaskFailed
from aa_stripe.models import StripeCharge, StripeCoupon, StripeOperation, StripeWebhook
from aa_stripe.operations import journal
from aa_stripe.signals import webhook_pre_parse
from aa_stripe.task_framework import _Window, framework
from aa_stripe.tasks import (
    DRAIN_BATCH,
    charge_stripe_charge,
    parse_stripe_webhook,
    parse_waiting_stripe_webhooks,
    reconcile_stripe_operation,
    run_refresh_command,
)
from aa_stripe.testing import make_event, post_webhook
from tests.conftest import make_customer
from tests.test_payment_methods import _post

pytestmark = pytest.mark.django_db(transaction=True)

DB_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# Django's own (django.tasks on Django 6), else the backport's.
FRAMEWORK = framework().__name__
DUMMY_TASKS = {"default": {"BACKEND": f"{FRAMEWORK}.backends.dummy.DummyBackend"}}
IMMEDIATE_TASKS = {"default": {"BACKEND": f"{FRAMEWORK}.backends.immediate.ImmediateBackend"}}
# A Redis nobody listens on: every enqueue fails as it does when the broker is down.
DOWN_RQ_TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend"}}
DOWN_RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:9/0", "SOCKET_CONNECT_TIMEOUT": 1}}


@pytest.fixture
def db_tasks(settings: Any) -> None:
    # Through pytest-django's ``settings`` (not a second override_settings): the tests change more
    # settings through it, and overrides undone out of order would leak into later tests.
    settings.TASKS = DB_TASKS
    settings.STRIPE_WEBHOOK_DEFERRED_PARSING = True


def run_worker() -> None:
    """django-tasks-db's worker, until its queue is empty."""
    call_command("db_worker", "--batch", "--interval", "0", "--no-startup-delay", stdout=StringIO())


def queued(task: Any) -> list[Any]:
    """The arguments of every enqueued (not yet run) ``task``: positional ones, or args and kwargs."""
    rows = DBTaskResult.objects.ready().filter(task_path=task.module_path).order_by("enqueued_at")
    return [row.args_kwargs if row.args_kwargs["kwargs"] else row.args_kwargs["args"] for row in rows]


def coupon_event(coupon_id: str = "TENOFF") -> dict[str, Any]:
    coupon = {
        "id": coupon_id,
        "object": "coupon",
        "duration": "once",
        "percent_off": 10,
        "created": 1700000000,
        "valid": True,
        "livemode": False,
        "metadata": {},
    }
    return make_event("coupon.created", coupon)


# --- webhooks: deferred parsing enqueues on commit -------------------------------------------------


def test_a_burst_of_events_costs_one_enqueue_and_one_task_parses_them_all(
    client, db_tasks, settings, monkeypatch
):
    settings.STRIPE_WEBHOOK_ENQUEUE_WINDOW = 0.2
    monkeypatch.setattr(_Window, "clock", lambda: 100.0)  # every post within the window, however slow
    events = [coupon_event(f"BURST{n}") for n in range(5)]
    answers = [post_webhook(client, event).json()["status"] for event in [*events, events[0]]]

    assert answers == ["stored"] * 5 + ["duplicate"]
    [task] = queued(parse_waiting_stripe_webhooks)
    assert task["args"] == [] and task["kwargs"]["linger"] == 0.2
    assert time.time() - 5 < task["kwargs"]["enqueued_at"] <= time.time()
    assert not StripeWebhook.objects.filter(is_parsed=True).exists()

    run_worker()

    assert StripeCoupon.objects.count() == 5
    assert set(StripeWebhook.objects.values_list("is_parsed", "parse_attempts", "parse_error")) == {
        (True, 1, "")
    }
    assert DBTaskResult.objects.get().return_value == {"parsed": 5, "failed": 0}
    monkeypatch.setattr(_Window, "clock", lambda: 100.2)  # the window has passed: the next one enqueues
    post_webhook(client, coupon_event("LATER"))
    assert len(queued(parse_waiting_stripe_webhooks)) == 1


def test_window_zero_enqueues_one_task_per_event_and_none_for_a_redelivery(client, db_tasks, settings):
    settings.STRIPE_WEBHOOK_ENQUEUE_WINDOW = 0
    event = coupon_event()
    first = post_webhook(client, event)
    again = post_webhook(client, event)  # Stripe's re-delivery: stored once, enqueued once

    assert first.status_code == again.status_code == 200
    assert (first.json()["status"], again.json()["status"]) == ("stored", "duplicate")
    assert queued(parse_stripe_webhook) == [[event["id"]]]
    assert not StripeWebhook.objects.get(pk=event["id"]).is_parsed

    run_worker()

    webhook = StripeWebhook.objects.get(pk=event["id"])
    assert (webhook.is_parsed, webhook.parse_attempts, webhook.parse_error) == (True, 1, "")
    assert StripeCoupon.objects.get(coupon_id="TENOFF").percent_off == 10
    assert DBTaskResult.objects.get().status == "SUCCESSFUL"


def test_the_waiting_events_task_hands_over_to_a_successor_and_reports_failures(client, db_tasks):
    for n in range(DRAIN_BATCH + 1):
        StripeWebhook.store_event(coupon_event(f"BACKLOG{n}"))
    StripeWebhook.store_event(coupon_event("BROKEN"))
    DBTaskResult.objects.all().delete()  # what the stores enqueued: run by hand here

    # max_seconds=0: one batch, then its successor is enqueued (an engine's job timeout never hits it)
    assert parse_waiting_stripe_webhooks.call(linger=0, max_seconds=0) == {"parsed": DRAIN_BATCH, "failed": 0}
    [successor] = queued(parse_waiting_stripe_webhooks)
    now = pytest.approx(time.time(), abs=5)
    assert successor["kwargs"] == {"linger": 0, "max_seconds": 0, "enqueued_at": now}

    def fail(sender: Any, instance: StripeWebhook, **kwargs: Any) -> None:
        if instance.data_object["id"] == "BROKEN":
            raise RuntimeError("the host's receiver failed")

    webhook_pre_parse.connect(fail)
    try:
        with pytest.raises(StripeTaskFailed, match=r"^1 Stripe webhooks parsed, 1 failed: evt_"):
            parse_waiting_stripe_webhooks.call(linger=0)
    finally:
        webhook_pre_parse.disconnect(fail)
    assert StripeWebhook.objects.filter(is_parsed=False).get().parse_error.startswith("RuntimeError")


@pytest.mark.parametrize("tasks", [IMMEDIATE_TASKS, DUMMY_TASKS], ids=["immediate", "dummy"])
def test_backends_without_workers_get_nothing_and_the_cron_parses(client, tasks):
    with override_settings(TASKS=tasks, STRIPE_WEBHOOK_DEFERRED_PARSING=True):
        response = post_webhook(client, coupon_event())
    assert response.json()["status"] == "stored"
    assert not StripeWebhook.objects.get().is_parsed  # not parsed in the request (Immediate)
    call_command("parse_stripe_webhooks", stdout=StringIO())
    assert StripeWebhook.objects.get().is_parsed


def test_without_deferred_parsing_the_view_parses_and_enqueues_nothing(client):
    with override_settings(TASKS=DB_TASKS, STRIPE_WEBHOOK_DEFERRED_PARSING=False):
        response = post_webhook(client, coupon_event())
    assert response.json()["status"] == "parsed"
    assert not DBTaskResult.objects.exists()


def test_broker_down_the_event_is_stored_answered_200_and_the_cron_parses_it(client, caplog):
    with (
        override_settings(
            TASKS=DOWN_RQ_TASKS, RQ_QUEUES=DOWN_RQ_QUEUES, STRIPE_WEBHOOK_DEFERRED_PARSING=True
        ),
        caplog.at_level(logging.WARNING, logger="aa_stripe"),
    ):
        response = post_webhook(client, coupon_event())
        second = post_webhook(client, coupon_event("SECOND"))  # within the window: it tries again

    assert (response.status_code, response.json()["status"]) == (200, "stored")
    for event_id in (response.json()["id"], second.json()["id"]):
        assert f"Stripe webhook {event_id} stored but not enqueued (ConnectionError" in caplog.text
    assert "parse_stripe_webhooks will parse it" in caplog.text
    call_command("parse_stripe_webhooks", stdout=StringIO())
    assert StripeWebhook.objects.filter(is_parsed=True).count() == 2


def test_a_backend_that_cannot_be_loaded_loses_nothing_and_the_check_says_so(client, caplog):
    broken = {"default": {"BACKEND": "no.such.Backend"}}
    with override_settings(TASKS=broken, STRIPE_WEBHOOK_DEFERRED_PARSING=True):
        # (called directly: on Django 6, Django's own check of TASKS raises before this one runs)
        [warning] = [m for m in check_task_backend() if m.id == "aa_stripe.W003"]
        with caplog.at_level(logging.WARNING, logger="aa_stripe"):
            response = post_webhook(client, coupon_event())
    assert "TASKS['default'] cannot be loaded" in warning.msg
    assert (response.status_code, response.json()["status"]) == (200, "stored")
    assert "stored but not enqueued" in caplog.text
    assert StripeWebhook.objects.filter(is_parsed=False).count() == 1


def test_parse_task_is_idempotent_and_raises_on_a_failed_parse(client, db_tasks):
    event = coupon_event()
    post_webhook(client, event)
    assert parse_stripe_webhook.call(event["id"]) == "parsed"
    assert parse_stripe_webhook.call(event["id"]) == "already parsed"  # the queued one runs after
    run_worker()
    assert StripeWebhook.objects.get(pk=event["id"]).parse_attempts == 1
    assert parse_stripe_webhook.call("evt_never_stored") == "missing"

    broken = coupon_event("BROKEN")
    post_webhook(client, broken)

    def fail(sender: Any, instance: StripeWebhook, **kwargs: Any) -> None:
        raise RuntimeError("the host's receiver failed")

    webhook_pre_parse.connect(fail)
    try:
        with pytest.raises(StripeTaskFailed, match="could not be parsed: RuntimeError: the host's receiver"):
            parse_stripe_webhook.call(broken["id"])
    finally:
        webhook_pre_parse.disconnect(fail)
    webhook = StripeWebhook.objects.get(pk=broken["id"])
    assert (webhook.is_parsed, webhook.parse_attempts) == (False, 1) and webhook.parse_error


# --- charges -------------------------------------------------------------------------------------


def test_charge_task_charges_once_and_leaves_what_is_not_to_charge(fake_stripe, user):
    make_customer(fake_stripe, user)
    charge = StripeCharge.objects.create(user=user, amount=1500, description="Order 1")

    assert charge_stripe_charge.call(charge.pk) == "charged"
    assert charge_stripe_charge.call(charge.pk) == "skipped"  # a second task, or the cron, finds it done

    charge.refresh_from_db()
    assert charge.is_charged
    assert len(fake_stripe.proxy.calls("POST", "/v1/payment_intents")) == 1
    manual = StripeCharge.objects.create(user=user, amount=100, description="by hand", is_manual_charge=True)
    assert charge_stripe_charge.call(manual.pk) == "skipped"


def test_charge_task_declined_and_waiting(fake_stripe, user, other_user):
    make_customer(fake_stripe, user, "4000000000000341")  # attaches, then declines
    make_customer(fake_stripe, other_user, "4000002760003184")  # always asks for 3-D Secure
    declined = StripeCharge.objects.create(user=user, amount=1500, description="declined")
    waiting = StripeCharge.objects.create(user=other_user, amount=1500, description="3DS")

    assert charge_stripe_charge.call(declined.pk) == "declined"
    assert charge_stripe_charge.call(waiting.pk) == "waiting"
    assert charge_stripe_charge.call(waiting.pk) == "skipped"  # never retried off-session


def test_charge_task_stripe_down_raises_and_the_journal_keeps_the_key(fake_stripe, user, settings):
    make_customer(fake_stripe, user)
    charge = StripeCharge.objects.create(user=user, amount=1500, description="Order 1")
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nobody answers

    with pytest.raises(StripeTaskFailed, match=f"charge #{charge.pk}: left for retry"):
        charge_stripe_charge.call(charge.pk)

    operation = StripeOperation.objects.exclude(state=StripeOperation.SUCCEEDED).get()
    assert operation.state == StripeOperation.UNKNOWN
    settings.STRIPE_API_BASE = fake_stripe.url
    assert reconcile_stripe_operation.call(operation.pk) == StripeOperation.SUCCEEDED
    assert reconcile_stripe_operation.call(operation.pk) == "finished"
    charge.refresh_from_db()
    assert charge.is_charged
    assert charge_stripe_charge.call(charge.pk) == "skipped"
    assert len({c.idempotency_key for c in fake_stripe.proxy.calls("POST", "/v1/payment_intents")}) == 1


def test_charge_stripe_enqueue_one_task_per_row_then_workers_charge_each_once(fake_stripe, user, db_tasks):
    make_customer(fake_stripe, user)
    rows = [
        StripeCharge.objects.create(user=user, amount=1000 + n, description=f"Order {n}") for n in range(3)
    ]
    invalid = StripeCharge.objects.create(user=user, amount=0, description="nothing to charge")

    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="charge_stripe --enqueue: 3 enqueued, 1 would not be sent"):
        call_command("charge_stripe", "--enqueue", stdout=out, stderr=err)
    assert f"charge #{invalid.pk} " in err.getvalue()
    call_command("charge_stripe", "--enqueue", "--limit", "2", stdout=out, stderr=err)  # enqueued again
    assert queued(charge_stripe_charge) == [[row.pk] for row in rows] + [[rows[0].pk], [rows[1].pk]]

    run_worker()

    for row in rows:
        row.refresh_from_db()
        assert row.is_charged
    assert len(fake_stripe.proxy.calls("POST", "/v1/payment_intents")) == 3
    assert {r.return_value for r in DBTaskResult.objects.all()} == {"charged", "skipped"}


def test_enqueue_refuses_dry_run_and_needs_no_api_key(settings, db_tasks):
    with pytest.raises(CommandError, match="--dry-run and --enqueue cannot be combined"):
        call_command("charge_stripe", "--enqueue", "--dry-run")
    with pytest.raises(CommandError, match="--dry-run and --enqueue cannot be combined"):
        call_command("reconcile_stripe_operations", "--enqueue", "--dry-run")
    settings.STRIPE_API_KEY = ""  # the workers call Stripe, not the process that enqueues
    call_command("charge_stripe", "--enqueue", stdout=StringIO())
    call_command("refresh_coupons", "--enqueue", stdout=StringIO())


def test_enqueue_with_the_broker_down_or_a_broken_backend_is_a_command_error(db):
    with (
        override_settings(TASKS=DOWN_RQ_TASKS, RQ_QUEUES=DOWN_RQ_QUEUES),
        pytest.raises(CommandError, match=r"refresh_coupons --enqueue: not enqueued: ConnectionError"),
    ):
        call_command("refresh_coupons", "--enqueue", stdout=StringIO())
    with (
        override_settings(TASKS={"default": {"BACKEND": "no.such.Backend"}}),
        pytest.raises(CommandError, match=r"--enqueue: TASKS\['default'\] cannot be loaded"),
    ):
        call_command("charge_stripe", "--enqueue", stdout=StringIO())


def test_enqueue_to_a_backend_without_workers_says_so(db):
    err = StringIO()
    with override_settings(TASKS=DUMMY_TASKS):
        call_command("charge_stripe", "--enqueue", stdout=StringIO(), stderr=err)
    assert "TASKS['default'] is DummyBackend" in err.getvalue()


# --- operations and refresh walks ----------------------------------------------------------------


def test_reconcile_enqueue_one_task_per_unfinished_operation(fake_stripe, user, settings, db_tasks):
    make_customer(fake_stripe, user)
    charge = StripeCharge.objects.create(user=user, amount=1500, description="Order 1")
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    with pytest.raises(StripeTaskFailed):
        charge_stripe_charge.call(charge.pk)
    settings.STRIPE_API_BASE = fake_stripe.url
    operation = StripeOperation.objects.get(state=StripeOperation.UNKNOWN)

    out = StringIO()
    call_command("reconcile_stripe_operations", "--enqueue", stdout=out, stderr=StringIO())
    assert "reconcile_stripe_operations --enqueue: 1 enqueued" in out.getvalue()
    assert queued(reconcile_stripe_operation) == [[operation.pk]]
    run_worker()
    operation.refresh_from_db()
    charge.refresh_from_db()
    assert operation.state == StripeOperation.SUCCEEDED and charge.is_charged


def test_refresh_enqueue_runs_the_whole_walk_as_one_task(fake_stripe, db_tasks):
    _post(fake_stripe, "/v1/coupons", {"id": "SPRING", "duration": "once", "percent_off": "15"})
    _post(
        fake_stripe,
        "/v1/coupons",
        {"id": "SUMMER", "duration": "once", "amount_off": "500", "currency": "usd"},
    )

    out = StringIO()
    call_command("refresh_coupons", "--enqueue", stdout=out)
    assert "refresh_coupons: the walk is enqueued" in out.getvalue()
    assert queued(run_refresh_command) == [["refresh_coupons", {}]]
    assert not StripeCoupon.objects.exists()
    run_worker()
    assert set(StripeCoupon.objects.values_list("coupon_id", flat=True)) == {"SPRING", "SUMMER"}
    assert "2 created" in DBTaskResult.objects.get().return_value

    call_command("refresh_invoices", "--enqueue", "--since", "all", stdout=out)
    assert queued(run_refresh_command) == [["refresh_invoices", {"since": "all"}]]
    with pytest.raises(StripeTaskFailed, match="'prune_stripe_webhooks' is not one of"):
        run_refresh_command.call("prune_stripe_webhooks")


# --- the system check ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deferred", "tasks", "expected"),
    [
        (
            True,
            IMMEDIATE_TASKS,
            "ImmediateBackend, which runs no worker: stored events are not enqueued "
            "to it (the parse would run in the webhook request)",
        ),
        (
            True,
            DUMMY_TASKS,
            "DummyBackend, which runs no worker: stored events are not enqueued to it "
            "(the parse would run never)",
        ),
        (True, DB_TASKS, None),
        (False, IMMEDIATE_TASKS, None),
        (True, None, None),  # no TASKS setting: deferred parsing is the cron's, as it always was
    ],
)
def test_check_warns_when_deferred_events_would_not_reach_a_worker(deferred, tasks, expected):
    overrides = {"STRIPE_WEBHOOK_DEFERRED_PARSING": deferred} | ({"TASKS": tasks} if tasks else {})
    with override_settings(**overrides):
        found = [m for m in run_checks() if m.id == "aa_stripe.W002"]
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0].msg


def test_journal_of_the_task_is_the_commands_journal(fake_stripe, user):
    """A row the cron is sending (its operation claimed, lease running) is not taken by a task."""
    make_customer(fake_stripe, user)
    charge = StripeCharge.objects.create(user=user, amount=1500, description="Order 1")
    from aa_stripe.operations.charge_queue import claim_next, queue

    _, operation = claim_next(queue().filter(pk=charge.pk))
    journal.claim(operation)  # the cron process is sending it now
    assert charge_stripe_charge.call(charge.pk) == "skipped"
    assert not fake_stripe.proxy.calls("POST", "/v1/payment_intents")
