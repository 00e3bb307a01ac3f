"""``charge_stripe`` against the fake Stripe server: results, HTTP requests, retries, races."""

from __future__ import annotations

import re
import threading
from contextlib import nullcontext
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections

from aa_stripe.management.commands import charge_stripe
from aa_stripe.models import StripeCharge
from aa_stripe.signals import stripe_charge_succeeded
from tests.conftest import make_customer

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("charge_stripe", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_failing(*args: str) -> tuple[str, str, str]:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("charge_stripe", *args, stdout=out, stderr=err)
    return str(excinfo.value), out.getvalue(), err.getvalue()


def make_user(name: str):
    return get_user_model().objects.create_user(username=name, email=f"{name}@example.com", password="pw")


def pending(user, count: int = 1, amount: int = 1000, **fields) -> list[StripeCharge]:
    return [
        StripeCharge.objects.create(user=user, amount=amount + i, description=f"Order {i}", **fields)
        for i in range(count)
    ]


def fake_charges(fake_stripe) -> list[dict]:
    """Every charge at the fake (read directly, page by page)."""
    found, params = [], {"limit": 100}
    while True:
        page = fake_stripe.get("/v1/charges", **params)
        found += page["data"]
        if not page["has_more"]:
            return found
        params["starting_after"] = page["data"][-1]["id"]


def test_charges_every_pending_row_of_several_users_oldest_first(fake_stripe, user, other_user):
    users = [user, other_user, make_user("carol")]
    for someone in users:
        make_customer(fake_stripe, someone)
    charges = [charge for someone in users for charge in pending(someone, 2)]

    out, err = run("-v", "2")

    assert "charge_stripe: 6 charged, 0 declined, 0 left for retry, 0 errors" in out
    assert err == ""
    posts = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert [p.idempotency_key for p in posts] == [f"charge:{c.uuid}:1" for c in charges]
    at_fake = {c["id"]: c for c in fake_charges(fake_stripe)}
    for charge in charges:
        charge.refresh_from_db()
        assert charge.is_charged and not charge.charge_attempt_failed
        assert f"charge #{charge.pk} " in out and charge.stripe_charge_id in out
        assert at_fake[charge.stripe_charge_id]["amount"] == charge.amount
        assert at_fake[charge.stripe_charge_id]["customer"] == charge.customer.stripe_customer_id
    assert len(at_fake) == 6


def test_a_declined_card_is_counted_and_reported_not_raised(fake_stripe, user, other_user):
    make_customer(fake_stripe, user, "4000000000000341")  # attaches, then declines charges
    make_customer(fake_stripe, other_user)
    [declined] = pending(user)
    [charged] = pending(other_user)

    out, _err = run()

    assert "charge_stripe: 1 charged, 1 declined, 0 left for retry, 0 errors" in out
    assert f"charge #{declined.pk} " in out and "declined: Your card was declined." in out
    declined.refresh_from_db()
    charged.refresh_from_db()
    assert declined.charge_attempt_failed and not declined.is_charged
    assert charged.is_charged
    # Not retried by the next run: a declined card needs a deliberate retry.
    assert "0 charged, 0 declined" in run()[0]
    assert len(fake_stripe.proxy.calls("POST", "/v1/charges")) == 2


@pytest.mark.parametrize("fault", ["status", "drop_before", "drop_after"])
def test_a_lost_or_failed_request_is_left_for_the_next_run_with_the_same_key(
    fake_stripe, customer, user, fault
):
    first, second = pending(user, 2)
    fake_stripe.proxy.inject(fault, method="POST", path_prefix="/v1/charges", times=1)

    message, out, err = run_failing()

    assert message == "charge_stripe: 1 charged, 0 declined, 1 left for retry, 0 errors"
    assert f"charge #{first.pk} " in err and "left for retry" in err
    first.refresh_from_db()
    assert not first.is_charged and not first.charge_attempt_failed
    second.refresh_from_db()
    assert second.is_charged  # the failure did not stop the run

    out, err = run()

    assert "charge_stripe: 1 charged, 0 declined, 0 left for retry, 0 errors" in out
    first.refresh_from_db()
    assert first.is_charged
    keys = [p.idempotency_key for p in fake_stripe.proxy.calls("POST", "/v1/charges")]
    # After a 5xx, which Stripe replays for the same key, the charge is looked up first and, not
    # found, sent under a new key; after a lost connection the same key is sent again.
    retry_key = f"charge:{first.uuid}:1~2" if fault == "status" else f"charge:{first.uuid}:1"
    assert keys == [f"charge:{first.uuid}:1", f"charge:{second.uuid}:1", retry_key]
    looked_up = [c for c in fake_stripe.proxy.calls("GET", "/v1/charges") if c.path == "/v1/charges"]
    assert len(looked_up) == (1 if fault == "status" else 0)
    mine = [c for c in fake_charges(fake_stripe) if c["metadata"].get("charge_uuid") == str(first.uuid)]
    assert [c["id"] for c in mine] == [first.stripe_charge_id]  # one charge, even after drop_after


def test_manual_failed_and_charged_rows_are_left_alone(fake_stripe, customer, user):
    [manual] = pending(user, is_manual_charge=True)
    [failed] = pending(user, charge_attempt_failed=True)
    [charged] = pending(user, is_charged=True, stripe_charge_id="ch_already")
    before = {c.pk: c.updated for c in (manual, failed, charged)}

    out, _err = run()

    assert "charge_stripe: 0 charged, 0 declined, 0 left for retry, 0 errors" in out
    assert fake_stripe.proxy.calls(path_prefix="/v1/charges") == []
    assert {c.pk: c.updated for c in StripeCharge.objects.all()} == before


def test_dry_run_lists_what_would_be_charged_and_charges_nothing(fake_stripe, customer, user):
    rows = pending(user, 3)
    [manual] = pending(user, is_manual_charge=True)

    out, _ = run("--dry-run")

    assert [int(pk) for pk in re.findall(r"would charge #(\d+)", out)] == [c.pk for c in rows]
    assert f"#{manual.pk}:" not in out
    assert "charge_stripe --dry-run: 3 would be charged" in out
    assert "charge_stripe --dry-run: 2 would be charged" in run("--dry-run", "--limit", "2")[0]
    assert fake_stripe.proxy.calls(path_prefix="/v1/charges") == []
    assert not StripeCharge.objects.filter(is_charged=True).exists()


def test_limit_charges_the_oldest_rows_only(fake_stripe, customer, user):
    rows = pending(user, 5)

    out, _ = run("--limit", "2")

    assert "charge_stripe: 2 charged" in out
    assert list(StripeCharge.objects.filter(is_charged=True).values_list("pk", flat=True)) == [
        rows[0].pk,
        rows[1].pk,
    ]
    with pytest.raises(CommandError, match="positive integer"):
        call_command("charge_stripe", "--limit", "0", stdout=StringIO(), stderr=StringIO())


def test_a_second_run_charges_nothing(fake_stripe, customer, user):
    pending(user, 3)
    assert "3 charged" in run()[0]
    calls = len(fake_stripe.proxy.calls())

    out, _err = run()

    assert "charge_stripe: 0 charged, 0 declined, 0 left for retry, 0 errors" in out
    assert len(fake_stripe.proxy.calls()) == calls
    assert len(fake_charges(fake_stripe)) == 3


def test_quiet_run_prints_nothing_on_success(fake_stripe, customer, user):
    pending(user)
    assert run("-v", "0") == ("", "")


def test_a_user_without_customer_is_an_error_that_does_not_stop_the_run(
    fake_stripe, customer, user, other_user
):
    [orphan] = pending(other_user)  # other_user has no Stripe customer
    [charge] = pending(user)

    message, _out, err = run_failing()

    assert message == "charge_stripe: 1 charged, 0 declined, 0 left for retry, 1 errors"
    assert f"charge #{orphan.pk} " in err and "no active Stripe customer" in err
    orphan.refresh_from_db()
    charge.refresh_from_db()
    assert not orphan.is_charged and not orphan.charge_attempt_failed  # retried once a card exists
    assert charge.is_charged


@pytest.mark.parametrize("failure", ["exception", "database"])
def test_a_failing_receiver_never_loses_the_recorded_charge(fake_stripe, customer, user, failure):
    first, second = pending(user, 2)

    def receiver(sender, instance, **kwargs):
        if instance.pk != first.pk:
            return
        if failure == "database":  # poisons the transaction: it must roll back
            StripeCharge.objects.create(user=None, amount=1, description="violates NOT NULL")
        raise RuntimeError("mail server down")

    stripe_charge_succeeded.connect(receiver, weak=False)
    try:
        message, _out, err = run_failing()
    finally:
        stripe_charge_succeeded.disconnect(receiver)

    assert message == "charge_stripe: 1 charged, 0 declined, 0 left for retry, 1 errors"
    first.refresh_from_db()
    assert first.is_charged and first.stripe_charge_id.startswith("ch_")
    assert f"charged {first.stripe_charge_id}, then " in err
    second.refresh_from_db()
    assert second.is_charged
    assert "0 charged" in run()[0]  # nothing charged twice
    assert len(fake_stripe.proxy.calls("POST", "/v1/charges")) == 2


# --- two runs at once (PostgreSQL: SQLite has no row locks) ----------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SKIP LOCKED needs PostgreSQL")
def test_two_runs_at_once_split_200_charges_and_charge_each_once(fake_stripe, user, other_user):
    users = [user, other_user, make_user("carol"), make_user("dave")]
    for someone in users:
        make_customer(fake_stripe, someone)
    rows = [charge for someone in users for charge in pending(someone, 50, amount=500)]
    fake_stripe.proxy.reset()  # count the runs' requests only
    barrier = threading.Barrier(2)
    outputs: list[str] = ["", ""]

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            outputs[index] = run()[0]
        except Exception as err:
            outputs[index] = repr(err)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    counts = [int(m.group(1)) for out in outputs if (m := re.search(r"(\d+) charged,", out))]
    assert len(counts) == 2 and sum(counts) == 200, outputs
    assert all(count > 0 for count in counts), outputs  # both runs did part of the work
    posts = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert len(posts) == 200
    assert sorted(p.idempotency_key for p in posts) == sorted(f"charge:{c.uuid}:1" for c in rows)
    assert len(fake_charges(fake_stripe)) == 200
    charged = StripeCharge.objects.filter(is_charged=True)
    assert charged.count() == 200
    assert len(set(charged.values_list("stripe_charge_id", flat=True))) == 200


# --- rows with input Stripe would refuse ---------------------------------------------------------------

SUMMARY_ONE_CHARGED = "charge_stripe: 1 charged, 0 declined, 0 left for retry, 0 errors"


def invalid_rows(user) -> list[StripeCharge]:
    return [
        StripeCharge.objects.create(user=user, amount=amount, description="Bad", **fields)
        for amount, fields in [
            (0, {}),
            (None, {}),
            (100_000_000, {}),
            (150, {"currency": "isk"}),
            (500, {"statement_descriptor": "Shop <3"}),
        ]
    ]


def test_invalid_rows_are_reported_never_sent_nor_marked_failed(fake_stripe, customer, user):
    bad = invalid_rows(user)
    [good] = pending(user)
    before = {row["id"]: row for row in StripeCharge.objects.filter(pk__in=[b.pk for b in bad]).values()}
    fake_stripe.proxy.reset()

    message, _out, err = run_failing()

    assert message == f"{SUMMARY_ONE_CHARGED}, 5 not sent (invalid input)"
    for row in bad:
        assert f"charge #{row.pk} " in err
    assert err.count("not sent to Stripe, invalid amount:") == 4
    assert err.count("not sent to Stripe, invalid statement_descriptor:") == 1
    assert "set is_manual_charge" in err
    [sent] = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert sent.idempotency_key == f"charge:{good.uuid}:1"
    # Left exactly as they were: not a failed attempt, no customer, no attempt started.
    assert {row["id"]: row for row in StripeCharge.objects.filter(pk__in=before).values()} == before


def test_invalid_rows_are_not_retried_and_are_charged_once_corrected(fake_stripe, customer, user):
    bad = invalid_rows(user)
    run_failing()

    message, _out, _err = run_failing()  # reported again, still never sent

    assert message.endswith(", 5 not sent (invalid input)")
    assert fake_stripe.proxy.calls("POST", "/v1/charges") == []

    StripeCharge.objects.filter(pk__in=[row.pk for row in bad]).update(amount=1000, statement_descriptor="")
    out, _err = run()

    assert "charge_stripe: 5 charged, 0 declined, 0 left for retry, 0 errors" in out
    assert len(fake_stripe.proxy.calls("POST", "/v1/charges")) == 5


def test_a_manual_invalid_row_is_left_alone_silently(fake_stripe, customer, user):
    StripeCharge.objects.create(user=user, amount=0, description="Bad", is_manual_charge=True)

    out, err = run()

    assert "charge_stripe: 0 charged, 0 declined, 0 left for retry, 0 errors" in out and err == ""


def test_dry_run_reports_invalid_rows_as_the_real_run_does(fake_stripe, customer, user):
    bad = invalid_rows(user)
    [good] = pending(user)

    message, out, dry_err = run_failing("--dry-run")

    assert [int(pk) for pk in re.findall(r"would charge #(\d+)", out)] == [good.pk]
    assert message == "charge_stripe --dry-run: 1 would be charged, 5 would not be sent (invalid input)"
    assert fake_stripe.proxy.calls(path_prefix="/v1/charges") == []
    _message, _out, real_err = run_failing()
    assert dry_err == real_err  # the same rows, the same reasons
    assert all(f"charge #{row.pk} " in real_err for row in bad)


def test_dry_run_says_a_user_without_a_customer_would_fail_as_the_real_run_does(
    fake_stripe, user, other_user
):
    make_customer(fake_stripe, user)
    [ok] = pending(user)
    [orphan] = pending(other_user)  # other_user has no card on file

    message, out, dry_err = run_failing("--dry-run")

    assert message == "charge_stripe --dry-run: 1 would be charged, 1 would fail"
    assert f"would charge #{ok.pk}:" in out and f"#{orphan.pk}:" not in out
    assert f"charge #{orphan.pk} " in dry_err and ": would fail: " in dry_err
    message, _out, real_err = run_failing()
    assert message == "charge_stripe: 1 charged, 0 declined, 0 left for retry, 1 errors"
    assert real_err.strip() == dry_err.strip().replace(": would fail: ", ": ")


def test_many_invalid_rows_are_counted_and_the_first_listed(fake_stripe, customer, user, monkeypatch):
    monkeypatch.setattr(charge_stripe, "INVALID_ROWS_LISTED", 2)
    invalid_rows(user)

    message, _out, err = run_failing()

    assert message.endswith(", 5 not sent (invalid input)")
    assert err.count("not sent to Stripe") == 2 and "... and 3 more rows with invalid input" in err


@pytest.mark.parametrize(
    "fields",
    [
        {"amount": 1},
        {"amount": 0},
        {"amount": -1},
        {"amount": None},
        {"amount": 99_999_999},
        {"amount": 100_000_000},
        {"amount": 100_000_000, "currency": "idr"},
        {"amount": 999_999_999_999, "currency": "idr"},
        {"amount": 1_000_000_000_000, "currency": "idr"},
        {"amount": 100, "currency": "isk"},
        {"amount": 150, "currency": "isk"},
        {"amount": 1230, "currency": "bhd"},
        {"amount": 1234, "currency": "bhd"},
        {"amount": 1, "currency": "huf"},
        {"currency": "xyz"},
        {"currency": ""},
        {"statement_descriptor": "abcd"},
        {"statement_descriptor": "abcde"},
        {"statement_descriptor": "a" * 22},
        {"statement_descriptor": "12345"},
        {"statement_descriptor": "Shop <3"},
        {"statement_descriptor": 'say "hi"'},
        {"statement_descriptor": "O'Brien Shop"},
        {"statement_descriptor": "Café Shop"},
        {"statement_descriptor": "Shop #1 & Co. (EU)"},
    ],
)
def test_the_command_and_its_dry_run_use_the_models_rules(fake_stripe, customer, user, fields):
    """One definition of "chargeable": what the model refuses is what both runs leave alone."""
    row = StripeCharge.objects.create(user=user, description="x", **{"amount": 500, **fields})
    refused = bool(row.input_errors())

    dry = StringIO()
    with pytest.raises(CommandError) if refused else nullcontext():
        call_command("charge_stripe", "--dry-run", stdout=dry, stderr=dry)
    assert (f"would charge #{row.pk}:" in dry.getvalue()) is not refused

    real = StringIO()
    with pytest.raises(CommandError) if refused else nullcontext():
        call_command("charge_stripe", stdout=real, stderr=real)
    row.refresh_from_db()
    assert row.is_charged is not refused
    assert len(fake_stripe.proxy.calls("POST", "/v1/charges")) == (0 if refused else 1)


def test_an_attempt_whose_answer_was_lost_is_resent_even_if_now_invalid(
    fake_stripe, customer, user, monkeypatch
):
    """A row sent by a version without these checks (here: a 4-character descriptor) whose answer
    was lost is re-sent as it went, with the same key, so Stripe replays the charge it made."""
    row = StripeCharge.objects.create(user=user, amount=500, description="x", statement_descriptor="ACME")
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")
    with monkeypatch.context() as older_version:
        older_version.setattr(StripeCharge, "validate_for_stripe", lambda self: None)
        with pytest.raises(CommandError):
            call_command("charge_stripe")
    row.refresh_from_db()
    assert row.outcome_unknown and row.input_errors()

    out, _err = run("--dry-run")
    assert f"would charge #{row.pk}:" in out and "re-sent as attempt 1 went" in out
    call_command("charge_stripe")

    row.refresh_from_db()
    assert row.is_charged and not row.outcome_unknown
    first, retry = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert first.idempotency_key == retry.idempotency_key == f"charge:{row.uuid}:1"
    assert retry.replayed


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
