"""``end_subscriptions`` (and its ``end_subscription`` alias) against the fake Stripe server."""

from __future__ import annotations

import sys
from datetime import timedelta
from io import StringIO
from types import SimpleNamespace

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.models import StripeSubscription, subscription_operations
from aa_stripe.operations import journal

pytestmark = pytest.mark.django_db


def run(*args: str, command: str = "end_subscriptions") -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_failing(*args: str) -> tuple[str, str]:
    err = StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("end_subscriptions", *args, stdout=StringIO(), stderr=err)
    return str(excinfo.value), err.getvalue()


@pytest.fixture
def make(customer, plan):
    def make(days_from_today: int | None) -> StripeSubscription:
        end = None if days_from_today is None else timezone.localdate() + timedelta(days=days_from_today)
        sub = StripeSubscription.objects.create(user=customer.user, plan=plan, end_date=end)
        sub.create_at_stripe()
        return sub

    return make


def cancel_requests(fake_stripe) -> list[tuple[str, str]]:
    """(method, subscription id) of every request that cancels a subscription."""
    calls = fake_stripe.proxy.calls(path_prefix="/v1/subscriptions/")
    return [
        (c.method, c.path.rsplit("/", 1)[1])
        for c in calls
        if c.method == "DELETE" or (c.method == "POST" and c.params.get("cancel_at_period_end") == "true")
    ]


def test_cancels_the_due_subscriptions_at_the_period_end(fake_stripe, make):
    due = [make(-3), make(0)]
    running, open_ended = make(5), make(None)

    out, err = run("-v", "2")

    assert "end_subscriptions: 2 canceled (at the period end), 0 already canceled, 0 failed" in out
    assert err == ""
    assert cancel_requests(fake_stripe) == [("POST", s.stripe_subscription_id) for s in due]
    for sub in due:
        sub.refresh_from_db()
        assert (sub.status, sub.at_period_end) == ("active", True)
        assert f"canceled {sub.stripe_subscription_id}" in out
        assert fake_stripe.get(f"/v1/subscriptions/{sub.stripe_subscription_id}")["cancel_at_period_end"]
    for sub in (running, open_ended):
        sub.refresh_from_db()
        assert (sub.status, sub.at_period_end) == ("active", False)

    # Idempotent: nothing is due any more, Stripe is not asked again.
    assert "0 canceled (at the period end), 0 already canceled, 0 failed" in run()[0]
    assert len(cancel_requests(fake_stripe)) == 2


def test_now_cancels_immediately(fake_stripe, make):
    due, running = make(-1), make(3)

    out, _ = run("--now")

    assert "end_subscriptions: 1 canceled (now), 0 already canceled, 0 failed" in out
    assert cancel_requests(fake_stripe) == [("DELETE", due.stripe_subscription_id)]
    due.refresh_from_db()
    assert due.status == "canceled" and due.canceled_at is not None
    assert fake_stripe.get(f"/v1/subscriptions/{due.stripe_subscription_id}")["status"] == "canceled"
    running.refresh_from_db()
    assert running.status == "active"
    assert "0 canceled (now)" in run("--now")[0]


@pytest.mark.parametrize(("args", "method"), [((), "POST"), (("--now",), "DELETE")])
def test_a_failure_does_not_stop_the_others_and_exits_non_zero(fake_stripe, make, args, method):
    first, failing, last = make(-3), make(-2), make(-1)
    path = f"/v1/subscriptions/{failing.stripe_subscription_id}"
    fake_stripe.proxy.inject("status", method=method, path_prefix=path, status=500)

    message, err = run_failing(*args)

    assert message.startswith("end_subscriptions: 2 canceled (")
    assert message.endswith("0 already canceled, 1 failed")
    assert f"subscription #{failing.pk} {failing.stripe_subscription_id}" in err
    assert "Injected 500 from FaultProxy." in err
    for sub in (first, last):
        sub.refresh_from_db()
        assert sub.at_period_end or sub.status == "canceled"
    failing.refresh_from_db()
    assert not failing.at_period_end and failing.status == "active"

    # The next run picks up the one that failed.
    assert "1 canceled" in run(*args)[0]


def test_a_subscription_canceled_meanwhile_is_counted_not_failed(fake_stripe, make):
    sub = make(-1)
    requests.delete(
        f"{fake_stripe.direct_url}/v1/subscriptions/{sub.stripe_subscription_id}",
        headers={"Authorization": f"Bearer {fake_stripe.api_key}"},
        timeout=10,
    ).raise_for_status()  # e.g. in the dashboard

    out, _ = run()

    assert "0 canceled (at the period end), 1 already canceled, 0 failed" in out
    sub.refresh_from_db()
    assert sub.status == "canceled"


def test_end_subscription_is_an_alias(fake_stripe, make):
    due = make(-1)

    out, _ = run("--now", command="end_subscription")

    assert "end_subscription: 1 canceled (now), 0 already canceled, 0 failed" in out
    due.refresh_from_db()
    assert due.status == "canceled"


def test_quiet_run_prints_nothing_on_success(fake_stripe, make):
    make(-1)
    assert run("-v", "0") == ("", "")


# --- Sentry ----------------------------------------------------------------------------------------


def test_failures_go_to_sentry_when_it_is_configured(fake_stripe, make, monkeypatch):
    """A stand-in ``sentry_sdk`` module: the library only calls is_initialized, capture_exception, flush."""
    captured: list[tuple[BaseException, dict]] = []
    stub = SimpleNamespace(
        is_initialized=lambda: True,
        capture_exception=lambda error, **scope: captured.append((error, scope)),
        flush=lambda: None,
    )
    monkeypatch.setitem(sys.modules, "sentry_sdk", stub)
    failing = make(-1)
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/subscriptions/", status=500)

    message, err = run_failing()

    assert message.endswith("1 failed (reported to Sentry)")
    assert err == ""
    [(error, scope)] = captured
    assert error.message == "Injected 500 from FaultProxy."
    assert scope["extras"]["stripe_subscription_id"] == failing.stripe_subscription_id
    assert scope["tags"] == {"command": "end_subscriptions"}


def test_failures_go_to_stderr_when_sentry_is_installed_but_not_initialised(fake_stripe, make, monkeypatch):
    stub = SimpleNamespace(is_initialized=lambda: False, capture_exception=None, flush=None)
    monkeypatch.setitem(sys.modules, "sentry_sdk", stub)
    failing = make(-1)
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/subscriptions/", status=500)

    message, err = run_failing()

    assert message.endswith("1 failed")
    assert failing.stripe_subscription_id in err and "Injected 500" in err


def test_failures_reach_a_real_sentry_sdk(fake_stripe, make):
    sentry_sdk = pytest.importorskip("sentry_sdk", reason="sentry_sdk is not installed in this environment")
    envelopes: list = []

    class Transport(sentry_sdk.transport.Transport):
        def capture_envelope(self, envelope) -> None:
            envelopes.append(envelope)

    sentry_sdk.init(dsn="http://public@127.0.0.1:9/1", transport=Transport, default_integrations=False)
    try:
        failing = make(-1)
        fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/subscriptions/", status=500)
        message, _err = run_failing()
    finally:
        sentry_sdk.init()  # no DSN: Sentry off again
    assert message.endswith("1 failed (reported to Sentry)")
    events = [item.payload.json for envelope in envelopes for item in envelope.items if item.type == "event"]
    assert any(failing.stripe_subscription_id in str(event.get("extra")) for event in events)


# --- the journal: no transaction during the call, several hosts at once ---------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("args", [(), ("--now",)])
def test_end_subscriptions_holds_no_transaction_while_stripe_answers(fake_stripe, customer, plan, args):
    """The command called Stripe inside transaction.atomic with the row locked (SELECT ... FOR
    UPDATE SKIP LOCKED). A transactional test: Django's own view of open transactions is exact."""
    due = StripeSubscription.objects.create(
        user=customer.user, plan=plan, end_date=timezone.localdate() - timedelta(days=1)
    )
    due.create_at_stripe()
    original = stripe_api.call
    open_during_writes: list[bool] = []

    def call(service, method, *ids, **kwargs):
        if method not in stripe_api.READ_METHODS:
            open_during_writes.append(any(c.in_atomic_block for c in connections.all(initialized_only=True)))
        return original(service, method, *ids, **kwargs)

    stripe_api.call = call
    try:
        assert "1 canceled" in run(*args)[0]
    finally:
        stripe_api.call = original

    assert open_during_writes == [False]


def test_end_subscriptions_leaves_a_cancel_another_host_is_sending(fake_stripe, customer, plan):
    due = StripeSubscription.objects.create(
        user=customer.user, plan=plan, end_date=timezone.localdate() - timedelta(days=1)
    )
    due.create_at_stripe()
    journal.claim(subscription_operations.plan_cancel(due, at_period_end=True))  # another host's
    fake_stripe.proxy.reset()

    out, _ = run()

    assert "0 canceled (at the period end), 0 already canceled, 0 failed, 1 in progress elsewhere" in out
    assert cancel_requests(fake_stripe) == []
