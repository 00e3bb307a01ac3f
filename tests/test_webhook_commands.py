"""parse_stripe_webhooks, prune_stripe_webhooks and check_pending_webhooks, through call_command."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import django
import pytest
import time_machine
from django.contrib.sites.models import Site
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.db.models import F
from django.test import modify_settings
from django.utils import timezone

from aa_stripe.management.commands import check_pending_webhooks, prune_stripe_webhooks
from aa_stripe.models import StripeWebhook
from aa_stripe.models import webhooks as webhooks_module
from aa_stripe.signals import webhook_pre_parse
from aa_stripe.testing import make_event, post_webhook
from tests.conftest import make_customer

pytestmark = pytest.mark.django_db

NOW = int(time.time())


def store(created: int = NOW) -> StripeWebhook:
    event = make_event(
        "invoice.paid", {"id": f"in_{uuid.uuid4().hex[:12]}", "object": "invoice"}, created=created
    )
    return StripeWebhook.store_event(event)[0]


def run(*args: str, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


class ParseLog:
    """A webhook_pre_parse receiver: records the ids parsed (thread-safe) and fails chosen ones."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.failing: set[str] = set()
        self.on_parse = None
        self.lock = threading.Lock()

    def __call__(self, sender, instance, **kwargs) -> None:
        with self.lock:
            self.seen.append(instance.id)
        if self.on_parse:
            self.on_parse(instance)
        if instance.id in self.failing:
            raise RuntimeError(f"boom for {instance.id}")


@pytest.fixture
def parse_log():
    log = ParseLog()
    webhook_pre_parse.connect(log, sender=StripeWebhook, weak=False, dispatch_uid="test-parse-log")
    yield log
    webhook_pre_parse.disconnect(sender=StripeWebhook, dispatch_uid="test-parse-log")


# --- parse_stripe_webhooks ----------------------------------------------------------------------


def test_parses_pending_rows_oldest_event_first(parse_log, client, settings):
    settings.STRIPE_WEBHOOK_DEFERRED_PARSING = True
    newest = store(NOW)
    tie_first, tie_second = store(NOW - 60), store(NOW - 60)  # same second: received first goes first
    StripeWebhook.objects.filter(pk=tie_second.pk).update(created=F("created") + timedelta(seconds=1))
    delivered = make_event("invoice.paid", {"id": "in_1", "object": "invoice"}, created=NOW - 3600)
    assert post_webhook(client, delivered).json()["status"] == "stored"
    already = store(NOW - 7200)
    already.process()
    parse_log.seen.clear()

    out, err = run("parse_stripe_webhooks")

    assert parse_log.seen == [delivered["id"], tie_first.id, tie_second.id, newest.id]
    assert out == "Stripe webhooks: 4 parsed, 0 failed.\n" and err == ""
    assert set(StripeWebhook.objects.values_list("is_parsed", "parse_attempts")) == {(True, 1)}


def test_a_failed_parse_is_recorded_the_rest_parsed_and_the_run_fails(parse_log):
    first, failing, last = store(NOW - 30), store(NOW - 20), store(NOW - 10)
    parse_log.failing.add(failing.id)

    err = io.StringIO()
    with pytest.raises(CommandError, match=r"^Stripe webhooks: 2 parsed, 1 failed\.$"):
        call_command("parse_stripe_webhooks", stdout=io.StringIO(), stderr=err)
    assert err.getvalue() == f"Failed {failing.id} (invoice.paid): RuntimeError: boom for {failing.id}\n"

    assert parse_log.seen == [first.id, failing.id, last.id]
    failing.refresh_from_db()
    assert (failing.is_parsed, failing.parse_attempts) == (False, 1)
    assert failing.parse_error == f"RuntimeError: boom for {failing.id}"
    assert StripeWebhook.objects.filter(is_parsed=True).count() == 2

    # Without --failed the failed row waits; nothing else to do.
    assert run("parse_stripe_webhooks") == ("Stripe webhooks: 0 parsed, 0 failed.\n", "")

    # Still failing: --failed tries it once per run, and the run fails again.
    with pytest.raises(CommandError, match="0 parsed, 1 failed"):
        run("parse_stripe_webhooks", "--failed", verbosity=0)
    failing.refresh_from_db()
    assert failing.parse_attempts == 2

    # The cause is gone: --failed parses it; a further run finds nothing (idempotent).
    parse_log.failing.clear()
    parse_log.seen.clear()
    out, _err = run("parse_stripe_webhooks", "--failed", verbosity=2)
    assert out == f"Parsed {failing.id} (invoice.paid).\nStripe webhooks: 1 parsed, 0 failed.\n"
    failing.refresh_from_db()
    assert (failing.is_parsed, failing.parse_error, failing.parse_attempts) == (True, "", 3)
    assert run("parse_stripe_webhooks", "--failed") == ("Stripe webhooks: 0 parsed, 0 failed.\n", "")
    assert parse_log.seen == [failing.id]


def test_limit_parses_the_oldest_rows_only(parse_log):
    rows = [store(NOW - age) for age in (10, 40, 30, 20)]
    assert run("parse_stripe_webhooks", "--limit", "2")[0] == "Stripe webhooks: 2 parsed, 0 failed.\n"
    assert parse_log.seen == [rows[1].id, rows[2].id]
    with pytest.raises(CommandError, match="at least 1"):
        run("parse_stripe_webhooks", "--limit", "0")


def test_loop_polls_for_new_rows_until_max_loops(parse_log, monkeypatch):
    first = store(NOW - 10)
    arrived, empty_claims = [], []
    claim = StripeWebhook.claim_batch

    def claim_batch(**options):  # a row arrives while the worker waits after its first pass
        token, batch = claim(**options)
        if not batch:
            empty_claims.append(token)
            if len(empty_claims) == 1:
                arrived.append(store(NOW))
        return token, batch

    monkeypatch.setattr(StripeWebhook, "claim_batch", claim_batch)
    out, _err = run("parse_stripe_webhooks", "--loop", "--interval", "0", "--max-loops", "3")

    assert parse_log.seen == [first.id, arrived[0].id]
    assert len(empty_claims) == 3  # each pass ends when no row is left
    assert (
        out
        == "Pass 1: 1 parsed, 0 failed.\nPass 2: 1 parsed, 0 failed.\nStripe webhooks: 2 parsed, 0 failed.\n"
    )


def test_sigterm_stops_the_worker_after_the_current_row(parse_log):
    first, second = store(NOW - 10), store(NOW)
    parse_log.on_parse = lambda webhook: os.kill(os.getpid(), signal.SIGTERM)
    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()

    out, err = run("parse_stripe_webhooks", "--loop", "--interval", "60")

    assert time.monotonic() - started < 30
    assert out == "Pass 1: 1 parsed, 0 failed.\nStripe webhooks: 1 parsed, 0 failed.\n"
    assert err == "SIGTERM received: stopping after the current webhook.\n"
    assert StripeWebhook.objects.get(id=first.id).is_parsed
    assert not StripeWebhook.objects.get(id=second.id).is_parsed
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_stops_cleanly_and_leaves_the_row_pending(parse_log):
    row = store()

    def interrupt(webhook):
        raise KeyboardInterrupt

    parse_log.on_parse = interrupt
    out, err = run("parse_stripe_webhooks", "--loop")
    assert (out, err) == ("Stripe webhooks: 0 parsed, 0 failed.\n", "Interrupted: stopping.\n")
    row.refresh_from_db()
    assert (row.is_parsed, row.parse_error, row.parse_attempts) == (False, "", 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_two_workers_parse_each_row_exactly_once(parse_log):
    rows = [store(NOW - i) for i in range(50)]
    parse_log.on_parse = lambda webhook: time.sleep(0.005)  # widen the window for a double parse
    barrier = threading.Barrier(2)
    outputs: list[str] = []

    def worker() -> None:
        try:
            barrier.wait()
            outputs.append(run("parse_stripe_webhooks", "--batch", "5")[0])  # batches: both get some
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(parse_log.seen) == sorted(row.id for row in rows)
    assert set(StripeWebhook.objects.values_list("is_parsed", "parse_attempts")) == {(True, 1)}
    counts = sorted(int(out.split()[2]) for out in outputs)
    assert sum(counts) == 50 and counts[0] > 0, outputs  # both workers took a share


# --- batches with leases -------------------------------------------------------------------------


def test_a_batch_is_one_workers_until_its_lease_ends(parse_log):
    rows = [store(NOW - 10 + i) for i in range(5)]

    token, batch = StripeWebhook.claim_batch(size=3, lease=timedelta(seconds=60))
    assert [w.id for w in batch] == [r.id for r in rows[:3]]  # oldest event first
    other, rest = StripeWebhook.claim_batch(size=10)
    assert [w.id for w in rest] == [r.id for r in rows[3:]]  # another worker: the rows nobody holds
    assert StripeWebhook.claim_batch()[1] == []

    # A row is parsed by its batch only; the other token passes over it (None) and parses nothing.
    assert batch[0].process_claimed(other) is None
    assert batch[0].process_claimed(token) is True
    assert batch[0].process_claimed(token) is None  # parsed already
    assert parse_log.seen == [rows[0].id]
    # Stopping early gives the rest back at once; the other worker's rows stay its own.
    assert StripeWebhook.release(token) == 2
    assert [w.id for w in StripeWebhook.claim_batch(size=10)[1]] == [r.id for r in rows[1:3]]
    parsed = StripeWebhook.objects.get(pk=rows[0].id)
    assert (parsed.is_parsed, parsed.parse_attempts, parsed.lease_token, parsed.lease_until) == (
        True,
        1,
        "",
        None,
    )


def test_a_lease_that_ran_out_is_taken_by_another_worker(parse_log):
    row = store(NOW)
    first, [taken] = StripeWebhook.claim_batch(size=10, lease=timedelta(seconds=60))
    StripeWebhook.objects.filter(pk=row.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    second, [again] = StripeWebhook.claim_batch(size=10)

    assert again.process_claimed(second) is True
    assert taken.process_claimed(first) is None  # the first worker, back: no longer its row
    assert parse_log.seen == [row.id]


def test_a_failed_parse_of_a_batch_row_is_recorded_and_the_row_given_back(parse_log):
    row = store(NOW)
    parse_log.failing.add(row.id)
    token, [webhook] = StripeWebhook.claim_batch()

    assert webhook.process_claimed(token) is False

    row.refresh_from_db()
    assert (row.is_parsed, row.parse_attempts, row.lease_token, row.lease_until) == (False, 1, "", None)
    assert row.parse_error == f"RuntimeError: boom for {row.id}"


def test_a_failure_does_not_take_a_row_another_worker_took_meanwhile(parse_log, monkeypatch):
    row = store(NOW)
    parse_log.failing.add(row.id)
    first, [webhook] = StripeWebhook.claim_batch()
    taken: list[str] = []
    log_exception = webhooks_module.logger.exception

    def lease_ran_out_meanwhile(*args, **kwargs):
        # Between the failed parse's rollback and the record of its failure, the first worker's lease
        # ran out and another worker took the row.
        StripeWebhook.objects.filter(pk=row.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
        taken.append(StripeWebhook.claim_batch()[0])
        log_exception(*args, **kwargs)

    monkeypatch.setattr(webhooks_module.logger, "exception", lease_ran_out_meanwhile)
    assert webhook.process_claimed(first) is False

    row.refresh_from_db()
    # The failure is not recorded over the other worker's lease: the row is still its to parse.
    assert (row.parse_error, row.parse_attempts, row.lease_token) == ("", 0, taken[0])
    parse_log.failing.clear()
    assert row.process_claimed(taken[0]) is True


def test_the_view_parses_a_row_a_worker_has_not_reached_and_the_worker_passes_over_it(parse_log):
    row = store(NOW)
    token, [leased] = StripeWebhook.claim_batch()

    assert StripeWebhook.objects.get(pk=row.pk).process_unless_claimed() is True  # the webhook view's parse
    assert leased.process_claimed(token) is None

    assert parse_log.seen == [row.id]
    row.refresh_from_db()
    assert (row.is_parsed, row.parse_attempts, row.lease_token) == (True, 1, "")


def test_a_receiver_saving_the_row_during_its_parse_keeps_it_parsed(parse_log):
    row = store(NOW)
    parse_log.on_parse = lambda webhook: webhook.save()
    token, [webhook] = StripeWebhook.claim_batch()

    assert webhook.process_claimed(token) is True

    row.refresh_from_db()
    assert (row.is_parsed, row.parse_attempts, row.lease_token, row.lease_until) == (True, 1, "", None)
    assert StripeWebhook.claim_batch()[1] == []


@pytest.mark.parametrize(("option", "value"), [("--batch", "0"), ("--lease", "0.5")])
def test_batch_and_lease_options_are_checked(option, value):
    with pytest.raises(CommandError, match="must be at least 1"):
        run("parse_stripe_webhooks", option, value)


def test_small_batches_parse_the_whole_queue(parse_log):
    rows = [store(NOW - i) for i in range(7)]
    out, _err = run("parse_stripe_webhooks", "--batch", "2")
    assert out == "Stripe webhooks: 7 parsed, 0 failed.\n"
    assert sorted(parse_log.seen) == sorted(r.id for r in rows)
    assert set(StripeWebhook.objects.values_list("is_parsed", "lease_token")) == {(True, "")}


# --- prune_stripe_webhooks ----------------------------------------------------------------------


def aged(webhook: StripeWebhook, days: int) -> StripeWebhook:
    StripeWebhook.objects.filter(pk=webhook.pk).update(created=timezone.now() - timedelta(days=days))
    return webhook


def test_prune_deletes_old_parsed_rows_only(parse_log, monkeypatch):
    old_parsed = [store() for _ in range(3)]
    young_parsed, old_failed = store(), store()
    parse_log.failing.add(old_failed.id)
    with pytest.raises(CommandError):
        run("parse_stripe_webhooks")
    old_pending = store()  # never parsed
    for row in [*old_parsed, old_failed, old_pending]:
        aged(row, 40)
    aged(young_parsed, 29)
    monkeypatch.setattr(prune_stripe_webhooks, "BATCH_SIZE", 2)  # several batches

    out, _err = run("prune_stripe_webhooks", "--older-than", "30", "--dry-run")
    assert out.startswith("Dry run: would delete 3 parsed Stripe webhooks received before ")
    assert StripeWebhook.objects.count() == 6

    out, _err = run("prune_stripe_webhooks", "--older-than", "30")
    assert out.startswith("Deleted 3 parsed Stripe webhooks received before ")
    left = {young_parsed.id, old_failed.id, old_pending.id}
    assert set(StripeWebhook.objects.values_list("id", flat=True)) == left
    assert run("prune_stripe_webhooks", "--older-than", "30")[0].startswith("Deleted 0 ")
    with pytest.raises(CommandError, match="at least 1 day"):
        run("prune_stripe_webhooks", "--older-than", "0")


# --- check_pending_webhooks ---------------------------------------------------------------------


@pytest.fixture
def alarm_settings(settings):
    # Django 6 takes plain addresses (tuples are deprecated there); 5.2 needs (name, address).
    settings.ADMINS = ["ops@example.com"] if django.VERSION >= (6,) else [("Ops", "ops@example.com")]
    settings.ENV_PREFIX = "staging-eu"
    settings.STRIPE_PENDING_WEBHOOKS_THRESHOLD = 2
    return settings


def make_customers(fake_stripe, users) -> list[dict]:
    """Customers made at the fake: two events each (customer.created, customer.source.created)."""
    for user in users:
        make_customer(fake_stripe, user)
    return fake_stripe.get("/v1/events", limit=100)["data"]


def check(*args: str) -> str:
    return run("check_pending_webhooks", "--grace-minutes", "0", *args)[0]


def test_no_alarm_when_every_event_is_stored(fake_stripe, alarm_settings, user, other_user, mailoutbox):
    for event in make_customers(fake_stripe, [user, other_user]):
        StripeWebhook.store_event(event)
    assert check() == (
        "OK. Stripe webhooks on example.com: 0 of 4 Stripe events missing (threshold 2), "
        "0 failed to parse, 4 waiting to be parsed.\n"
    )
    assert mailoutbox == []
    [listing] = fake_stripe.proxy.calls("GET", "/v1/events")
    assert listing.status == 200


def test_alarm_and_mail_when_more_events_than_the_threshold_are_missing(
    fake_stripe, alarm_settings, user, other_user, mailoutbox
):
    events = make_customers(fake_stripe, [user, other_user])
    stored, missing = events[0], events[1:]
    StripeWebhook.store_event(stored)

    with pytest.raises(CommandError, match=r"3 of 4 Stripe events missing \(threshold 2\)"):
        check()

    [mail] = mailoutbox
    assert mail.to == ["ops@example.com"]
    assert (
        mail.subject
        == "[Django] [staging-eu] Stripe webhooks on example.com: 3 events missing, 0 failed to parse"
    )
    assert "Environment: staging-eu" in mail.body
    assert all(event["id"] in mail.body for event in missing) and stored["id"] not in mail.body


def test_missing_events_up_to_the_threshold_are_no_alarm(fake_stripe, alarm_settings, user, mailoutbox):
    make_customers(fake_stripe, [user])
    assert "2 of 2 Stripe events missing (threshold 2)" in check()
    assert mailoutbox == []
    with pytest.raises(CommandError):
        check("--threshold", "1")


def test_event_types_the_endpoint_does_not_subscribe_to_are_not_expected(fake_stripe, alarm_settings, user):
    make_customers(fake_stripe, [user])
    assert "0 of 0 Stripe events missing" in check("--event-type", "invoice.*", "--threshold", "0")
    assert "1 of 1 Stripe events missing" in check("--event-type", "customer.source.*", "--threshold", "1")
    assert "1 of 1 Stripe events missing" in check("--event-type", "customer.created", "--threshold", "1")


def test_events_younger_than_the_grace_period_are_in_flight(fake_stripe, alarm_settings, user, mailoutbox):
    events = make_customers(fake_stripe, [user, user])
    created = datetime.fromtimestamp(max(event["created"] for event in events), tz=UTC)
    with time_machine.travel(created + timedelta(minutes=4)):
        assert "0 of 0 Stripe events missing" in run("check_pending_webhooks")[0]
    with time_machine.travel(created + timedelta(minutes=6)), pytest.raises(CommandError, match="4 of 4"):
        run("check_pending_webhooks")
    with time_machine.travel(created + timedelta(minutes=6)):
        assert "0 of 0" in run("check_pending_webhooks", "--grace-minutes", "10")[0]
    assert len(mailoutbox) == 1


def test_failed_parses_alone_raise_the_alarm(fake_stripe, alarm_settings, parse_log, mailoutbox):
    failing, fine = store(), store()
    parse_log.failing.add(failing.id)
    with pytest.raises(CommandError):
        run("parse_stripe_webhooks")

    with pytest.raises(CommandError, match=r"0 of 0 Stripe events missing .* 1 failed to parse, 0 waiting"):
        check()

    [mail] = mailoutbox
    assert mail.subject.endswith(": 0 events missing, 1 failed to parse")
    assert f"{failing.id} invoice.paid: RuntimeError: boom for {failing.id}" in mail.body
    assert "parse_stripe_webhooks --failed" in mail.body and fine.id not in mail.body


def test_a_newest_stored_event_older_than_stripe_keeps_events_is_no_false_alarm(
    fake_stripe, alarm_settings, mailoutbox
):
    store(NOW - 40 * 24 * 3600).process()
    assert "0 of 0 Stripe events missing" in check()
    assert mailoutbox == []
    [listing] = fake_stripe.proxy.calls("GET", "/v1/events")
    assert abs(int(listing.query["created[gt]"]) - (time.time() - 30 * 24 * 3600)) < 60


def test_the_lookback_starts_shortly_before_the_newest_stored_event(fake_stripe, alarm_settings):
    store(NOW - 3 * 24 * 3600).process()
    store(NOW - 3600).process()
    check()
    [listing] = fake_stripe.proxy.calls("GET", "/v1/events")
    assert int(listing.query["created[gt]"]) == NOW - 3600 - 10 * 60


def test_with_nothing_stored_the_last_30_days_are_compared(fake_stripe, alarm_settings, user, mailoutbox):
    assert "0 of 0" in check()  # a fresh install with a quiet Stripe account
    [listing] = fake_stripe.proxy.calls("GET", "/v1/events")
    assert abs(int(listing.query["created[gt]"]) - (time.time() - 30 * 24 * 3600)) < 60
    make_customers(fake_stripe, [user, user])
    with pytest.raises(CommandError, match="4 of 4"):  # nothing arrives: the endpoint is not set up
        check()


def test_site_option(fake_stripe, alarm_settings, parse_log, mailoutbox):
    parse_log.failing.add(store().id)
    with pytest.raises(CommandError):
        run("parse_stripe_webhooks")
    shop = Site.objects.create(domain="shop.example.com", name="Shop")
    with pytest.raises(CommandError, match=r"on Shop \(shop.example.com\)"):
        check("--site", str(shop.pk))
    with pytest.raises(CommandError, match="There is no Site with id 999"):
        check("--site", "999")
    with modify_settings(INSTALLED_APPS={"remove": ["django.contrib.sites"]}):
        with pytest.raises(CommandError, match=r"^Stripe webhooks: 0 of 0"):
            check()
        with pytest.raises(CommandError, match=r"--site needs django\.contrib\.sites"):
            check("--site", "1")
    assert [mail.subject.split(": ")[0] for mail in mailoutbox] == [
        "[Django] [staging-eu] Stripe webhooks on Shop (shop.example.com)",
        "[Django] [staging-eu] Stripe webhooks",
    ]


def test_stripe_failing_is_a_command_error(fake_stripe, alarm_settings, mailoutbox):
    fake_stripe.proxy.inject("status", method="GET", path_prefix="/v1/events", status=500)
    with pytest.raises(CommandError, match="Could not list Stripe's events"):
        check()
    assert mailoutbox == []


def test_a_mail_failure_still_raises_the_alarm(fake_stripe, alarm_settings, user, monkeypatch):
    def broken_mail(*args, **kwargs):
        raise ConnectionRefusedError("no SMTP server")

    monkeypatch.setattr(check_pending_webhooks, "mail_admins", broken_mail)
    make_customers(fake_stripe, [user, user])
    with pytest.raises(CommandError, match=r"4 of 4 .*\(mail to ADMINS failed: no SMTP server\)"):
        check()


# --- check_pending_webhooks --unhandled -------------------------------------------------------------


def test_unhandled_lists_stored_types_no_handler_acts_on_with_counts(settings):
    settings.STRIPE_API_KEY = ""  # reads only this database
    for event_type, count in [("invoiceitem.created", 3), ("payout.created", 1), ("coupon.created", 2)]:
        for i in range(count):
            StripeWebhook.store_event(
                make_event(event_type, {"id": f"x_{i}", "object": "x"}, created=NOW + i)
            )

    out, _err = run("check_pending_webhooks", "--unhandled")

    lines = out.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [
        ["invoiceitem.created", "3"],
        ["payout.created", "1"],
    ]
    assert "newest " + datetime.fromtimestamp(NOW + 2, tz=UTC).isoformat() in lines[0]
    assert lines[-1] == "2 stored event types (4 events) that no built-in handler acts on."
