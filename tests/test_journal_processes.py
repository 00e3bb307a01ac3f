"""The operations journal against killed OS processes and held Stripe requests, on PostgreSQL.

* a ``charge_stripe`` process is SIGKILLed while the fault proxy holds its charge request, before
  Stripe acted (``hold_before``) or after (``hold``: the answer never reaches it); once its lease
  ran out, ``reconcile_stripe_operations`` finishes the charge: one charge at Stripe, the row
  charged once, ``stripe_charge_succeeded`` sent once;
* the same for a refund (a ``python -m django shell`` process calling ``refund(300)``);
* while Stripe is called (``charge()`` held by the proxy in a thread), neither the row nor its
  operation is locked and no backend of the test database sits idle in a transaction.

The processes run ``python -m django ... --settings=tests.subprocess_settings`` against this
test's database (committed rows: ``transactional_db``) with a short ``STRIPE_OPERATION_LEASE``
(``AA_STRIPE_TEST_OPERATION_LEASE``); the test process uses the same lease. Everything after the
kill runs in this process, so the signals it sends are counted here. PostgreSQL only: SQLite's
in-memory test database cannot be shared with other processes, and it has no row locks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.utils import timezone

from aa_stripe.exceptions import StripeInternalError, StripeMethodNotAllowed, StripeOperationInProgress
from aa_stripe.models import StripeCharge, StripeOperation, StripeRefund
from aa_stripe.signals import stripe_charge_refunded, stripe_charge_succeeded
from tests.processes import shared_database_url

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="processes and row locks need PostgreSQL"),
]

ROOT = Path(__file__).resolve().parent.parent
WORKER_APP = "aa_stripe_journal_worker"
#: seconds; the worker's and this process's STRIPE_OPERATION_LEASE. Long enough to check that a
#: live lease is respected before it runs out (the worker is killed well under a second after it
#: claimed), short enough to keep each test at a few seconds.
LEASE = 3
WAIT = 20.0  # deadline of every wait for a process, a held request or a condition
FAULTS = [
    pytest.param("hold_before", id="killed-before-stripe-acted"),
    pytest.param("hold", id="killed-after-stripe-acted"),
]


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def signals() -> Iterator[dict[str, list]]:
    """Every ``stripe_charge_succeeded`` (pk) and ``stripe_charge_refunded`` (pk, amount refunded)
    sent in this process, from any thread."""
    received: dict[str, list] = {"succeeded": [], "refunded": []}

    def on_success(sender: Any, instance: StripeCharge, **kwargs: Any) -> None:
        received["succeeded"].append(instance.pk)

    def on_refund(sender: Any, instance: StripeCharge, **kwargs: Any) -> None:
        received["refunded"].append((instance.pk, instance.amount_refunded))

    stripe_charge_succeeded.connect(on_success, sender=StripeCharge)
    stripe_charge_refunded.connect(on_refund, sender=StripeCharge)
    yield received
    stripe_charge_succeeded.disconnect(on_success, sender=StripeCharge)
    stripe_charge_refunded.disconnect(on_refund, sender=StripeCharge)


def start_django(*args: str, api_base: str) -> subprocess.Popen:
    """``python -m django <args>`` on this test's database, the fake Stripe and a short lease."""
    env = {
        **os.environ,
        "AA_STRIPE_TEST_DATABASE_URL": shared_database_url(WORKER_APP),
        "AA_STRIPE_TEST_API_BASE": api_base,
        "AA_STRIPE_TEST_OPERATION_LEASE": str(LEASE),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "django", *args, "--settings=tests.subprocess_settings"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,  # a few KB at most: nothing fills the pipe before communicate()
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_held(proxy: Any, worker: subprocess.Popen) -> Any:
    """The one request the proxy holds for ``worker``; the worker's output if it never comes."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            [held] = proxy.wait_held(timeout=0.2)
        except TimeoutError:
            if worker.poll() is not None:
                break
            continue
        return held
    worker.kill()
    out, err = worker.communicate()
    raise AssertionError(f"no request held (exit {worker.returncode}):\n{out}\n{err}")


@contextmanager
def killed_on_the_way_out(worker: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Yields ``worker``; kills it if a failed assertion leaves it running (held at the proxy)."""
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=WAIT)


def kill(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=WAIT)
    assert worker.returncode == -signal.SIGKILL


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still false after {timeout}s")
        time.sleep(0.05)


def operation_of(charge: StripeCharge, kind: str) -> StripeOperation:
    [operation] = StripeOperation.objects.filter(kind=kind, object_id=str(charge.pk))
    return operation


def assert_claimed_by_worker(operation: StripeOperation, key: str) -> None:
    """Sent once, leased for the worker's LEASE (read from AA_STRIPE_TEST_OPERATION_LEASE)."""
    assert (operation.state, operation.attempts, operation.key) == (StripeOperation.SENDING, 1, key)
    assert operation.lease_until - operation.last_sent_at == timedelta(seconds=LEASE)
    # The checks before the lease runs out need it to be well ahead (the claim was just now).
    assert timezone.now() < operation.lease_until - timedelta(seconds=1), "too slow for LEASE"


def wait_lease_out(operation: StripeOperation) -> None:
    """Poll on Django's clock (the one leases are measured on) until the lease has run out."""
    lease_until = operation.lease_until
    assert lease_until is not None
    wait_until(lambda: timezone.now() > lease_until, "the lease runs out", timeout=LEASE + WAIT)


def run(command: str, **options: Any) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(command, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def reconciled(succeeded: int) -> str:
    return (
        f"reconcile_stripe_operations: {succeeded} succeeded, 0 refused, 0 still unresolved, "
        "0 in progress elsewhere"
    )


def assert_nothing_held_during_the_call(charge: StripeCharge, operation: StripeOperation) -> None:
    """While Stripe is being called: another connection locks the charge and its operation at once
    (NOWAIT), and no backend of this test database is idle in a transaction or holds a lock."""
    with transaction.atomic():
        assert StripeCharge.objects.select_for_update(nowait=True).get(pk=charge.pk)
        assert StripeOperation.objects.select_for_update(nowait=True).get(pk=operation.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, application_name, state, query FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
            " AND state IN ('idle in transaction', 'idle in transaction (aborted)', 'active')"
        )
        assert cursor.fetchall() == []
        cursor.execute(
            "SELECT l.pid, l.locktype, l.relation::regclass::text, l.mode FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE a.datname = current_database() AND l.pid <> pg_backend_pid()"
            " AND a.backend_type = 'client backend'"
        )
        assert cursor.fetchall() == []


def backends(application_name: str) -> list[tuple[int, str]]:
    """(pid, state) of this database's backends with ``application_name``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            [application_name],
        )
        return cursor.fetchall()


def charges_at_fake(fake_stripe: Any) -> list[dict[str, Any]]:
    return fake_stripe.get("/v1/charges", limit=100)["data"]


def refunds_at_fake(fake_stripe: Any, charge: StripeCharge) -> list[dict[str, Any]]:
    return fake_stripe.get("/v1/refunds", charge=charge.stripe_charge_id, limit=100)["data"]


# --- 1. charge_stripe killed while its charge is held ----------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
def test_charge_stripe_process_killed_while_its_charge_is_held__reconcile_charges_once_one_signal(
    fake_stripe, customer, user, settings, signals, fault
):
    """A ``charge_stripe`` process is SIGKILLed while the proxy holds its POST /v1/charges
    (``hold_before``: Stripe never saw it; ``hold``: Stripe charged, the answer never arrived).
    While its lease lasts, nobody else sends the charge; once it ran out,
    ``reconcile_stripe_operations`` re-sends it under the same key and records it, and
    ``charge_stripe`` finds nothing left: one charge at Stripe, the row charged with it, the
    operation succeeded after 2 attempts, ``stripe_charge_succeeded`` sent once."""
    settings.STRIPE_OPERATION_LEASE = LEASE
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Order #1")
    key = f"charge:{charge.uuid}:1"
    proxy = fake_stripe.proxy
    proxy.inject(fault, method="POST", path_prefix="/v1/charges")
    command = ["charge_stripe", "--verbosity", "2"]

    with killed_on_the_way_out(start_django(*command, api_base=fake_stripe.url)) as worker:
        held = wait_held(proxy, worker)

        assert held.idempotency_key == key and held.params["amount"] == "1000"
        operation = operation_of(charge, "charge")
        assert held.params["metadata[operation]"] == str(operation.uuid)
        assert_claimed_by_worker(operation, key)
        assert_nothing_held_during_the_call(charge, operation)
        assert [state for _pid, state in backends(WORKER_APP)] == ["idle"]  # connected, no transaction

        kill(worker)
    proxy.wait_released()

    assert len(charges_at_fake(fake_stripe)) == (1 if fault == "hold" else 0)
    charge.refresh_from_db()
    assert not charge.is_charged and not charge.charge_attempt_failed and charge.stripe_charge_id == ""
    assert charge.outcome_unknown
    # The lease still runs: the worker may be alive as far as anyone can tell; nobody sends.
    early_reconcile, (out, err) = run("reconcile_stripe_operations"), run("charge_stripe")
    assert timezone.now() < operation.lease_until, "too slow: the lease ran out during the checks"
    assert early_reconcile == (reconciled(0) + "\n", "")
    # Left to the worker (skipped or not taken at all): nothing charged, nothing failed.
    assert out.startswith("charge_stripe: 0 charged, 0 declined, 0 left for retry, 0 errors") and err == ""
    operation.refresh_from_db()
    assert (operation.state, operation.attempts) == (StripeOperation.SENDING, 1)
    assert len(proxy.calls("POST", "/v1/charges")) == 1
    assert signals["succeeded"] == []

    wait_lease_out(operation)
    assert run("reconcile_stripe_operations") == (reconciled(1) + "\n", "")
    out, err = run("charge_stripe")

    assert out == "charge_stripe: 0 charged, 0 declined, 0 left for retry, 0 errors\n" and err == ""
    [at_fake] = charges_at_fake(fake_stripe)
    assert at_fake["amount"] == 1000 and at_fake["customer"] == customer.stripe_customer_id
    assert at_fake["metadata"]["operation"] == str(operation.uuid)
    charge.refresh_from_db()
    assert charge.is_charged and not charge.charge_attempt_failed and charge.attempt == 1
    assert charge.stripe_charge_id == at_fake["id"]
    assert signals["succeeded"] == [charge.pk]  # the killed worker never got to send it
    operation.refresh_from_db()
    assert (operation.state, operation.attempts, operation.key) == (StripeOperation.SUCCEEDED, 2, key)
    assert operation.stripe_id == at_fake["id"] and operation.lease_until is None
    assert operation.resolved_at is not None and not operation.needs_lookup
    sent, again = proxy.calls("POST", "/v1/charges")
    assert sent.idempotency_key == again.idempotency_key == key
    assert (sent.fault, sent.status) == (fault, 200 if fault == "hold" else None)
    assert (again.fault, again.status, again.replayed) == (None, 200, fault == "hold")


# --- 2. a refund killed while held ----------------------------------------------------------------

REFUND_300 = "from aa_stripe.models import StripeCharge; StripeCharge.objects.get(pk={pk}).refund(300)"


@pytest.mark.parametrize("fault", FAULTS)
def test_refund_process_killed_while_its_refund_is_held__reconcile_refunds_300_once_rest_refundable(
    fake_stripe, charged, settings, signals, fault
):
    """A process calling ``refund(300)`` on a charge of 1000 is SIGKILLed while the proxy holds
    its POST /v1/refunds (before or after Stripe refunded). While its lease lasts the refund is
    in progress (another amount is refused, the same one is not sent twice); once it ran out,
    ``reconcile_stripe_operations`` finishes it: one refund of 300 at Stripe, one StripeRefund row
    with its id, ``stripe_charge_refunded`` sent once, the pending amount cleared; refunding the
    remaining 700 then works."""
    settings.STRIPE_OPERATION_LEASE = LEASE
    key = f"refund:{charged.uuid}:0:300"
    proxy = fake_stripe.proxy
    proxy.inject(fault, method="POST", path_prefix="/v1/refunds")
    command = ["shell", "-c", REFUND_300.format(pk=charged.pk)]

    with killed_on_the_way_out(start_django(*command, api_base=fake_stripe.url)) as worker:
        held = wait_held(proxy, worker)

        assert held.idempotency_key == key and held.params["amount"] == "300"
        assert held.params["charge"] == charged.stripe_charge_id
        operation = operation_of(charged, "refund")
        assert held.params["metadata[operation]"] == str(operation.uuid)
        assert_claimed_by_worker(operation, key)
        assert_nothing_held_during_the_call(charged, operation)

        kill(worker)
    proxy.wait_released()

    assert len(refunds_at_fake(fake_stripe, charged)) == (1 if fault == "hold" else 0)
    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.is_refunded, charged.pending_refund_amount) == (0, False, 300)
    assert not StripeRefund.objects.exists()
    with pytest.raises(StripeMethodNotAllowed, match="not confirmed"):
        charged.refund(500)
    with pytest.raises(StripeOperationInProgress):
        charged.refund(300)  # the lease still runs: not sent again
    early_reconcile = run("reconcile_stripe_operations")
    assert timezone.now() < operation.lease_until, "too slow: the lease ran out during the checks"
    assert early_reconcile == (reconciled(0) + "\n", "")
    assert len(proxy.calls("POST", "/v1/refunds")) == 1
    assert signals["refunded"] == []

    wait_lease_out(operation)
    assert run("reconcile_stripe_operations") == (reconciled(1) + "\n", "")

    [at_fake] = refunds_at_fake(fake_stripe, charged)
    assert at_fake["amount"] == 300 and at_fake["metadata"]["operation"] == str(operation.uuid)
    assert fake_stripe.get(f"/v1/charges/{charged.stripe_charge_id}")["amount_refunded"] == 300
    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.is_refunded, charged.pending_refund_amount) == (300, False, None)
    assert charged.stripe_refund_id == at_fake["id"]
    [row] = StripeRefund.objects.all()
    assert (row.charge_id, row.amount, row.stripe_refund_id, row.failure_code) == (
        charged.pk,
        300,
        at_fake["id"],
        "",
    )
    assert signals["refunded"] == [(charged.pk, 300)]
    operation.refresh_from_db()
    assert (operation.state, operation.attempts, operation.key) == (StripeOperation.SUCCEEDED, 2, key)
    assert operation.stripe_id == at_fake["id"] and operation.lease_until is None
    sent, again = proxy.calls("POST", "/v1/refunds")
    assert sent.idempotency_key == again.idempotency_key == key
    assert (sent.fault, sent.status) == (fault, 200 if fault == "hold" else None)
    assert (again.fault, again.status, again.replayed) == (None, 200, fault == "hold")

    rest = charged.refund()

    assert rest["amount"] == 700
    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.is_refunded, charged.pending_refund_amount) == (1000, True, None)
    assert sorted(r["amount"] for r in refunds_at_fake(fake_stripe, charged)) == [300, 700]
    assert list(charged.refunds.values_list("amount", flat=True)) == [300, 700]
    assert fake_stripe.get(f"/v1/charges/{charged.stripe_charge_id}")["amount_refunded"] == 1000
    assert signals["refunded"] == [(charged.pk, 300), (charged.pk, 1000)]
    assert [p.idempotency_key for p in proxy.calls("POST", "/v1/refunds")] == [
        key,
        key,
        f"refund:{charged.uuid}:300:700",
    ]
    assert not StripeOperation.objects.filter(state__in=StripeOperation.UNRESOLVED).exists()


# --- 3. no transaction and no row lock while Stripe is called ---------------------------------------


class Charger(threading.Thread):
    """Calls ``charge()`` on a connection of its own; remembers that connection's backend pid.

    A context manager: started on entry; on the way out, a request a failed assertion left held is
    released (``proxy.reset()``) and the thread joined, so it cannot race the database flush."""

    def __init__(self, pk: int, proxy: Any) -> None:
        super().__init__(daemon=True)
        self.pk, self.proxy = pk, proxy
        self.backend_pid: int | None = None
        self.error: BaseException | None = None
        self.result: dict[str, Any] | None = None

    def run(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.backend_pid = cursor.fetchone()[0]
            self.result = StripeCharge.objects.get(pk=self.pk).charge()
        except BaseException as err:
            self.error = err
        finally:
            connections.close_all()

    def __enter__(self) -> Charger:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.is_alive():
            self.proxy.reset()
            self.join(WAIT)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param("hold_before", id="released-by-proxy-reset"),
        pytest.param("hold", id="released-by-client-timeout"),
    ],
)
def test_no_transaction_or_row_lock_is_held_while_stripe_is_called(
    fake_stripe, customer, user, settings, signals, fault
):
    """While ``charge()`` (in a thread) waits for Stripe, held by the proxy: another connection
    locks the charge row and its operation with FOR UPDATE NOWAIT, the caller's backend is
    connected and idle (no transaction, no lock), no backend of the test database is idle in a
    transaction. Released (``hold_before``: the proxy resets, Stripe never acted; ``hold``: Stripe
    charged, the client times out), ``charge()`` raises StripeInternalError and leaves the row
    retryable and the operation unknown; calling it again charges once, with the same key."""
    settings.STRIPE_HTTP_TIMEOUT = 3 if fault == "hold" else WAIT
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Order #1")
    key = f"charge:{charge.uuid}:1"
    proxy = fake_stripe.proxy
    proxy.inject(fault, method="POST", path_prefix="/v1/charges")

    with Charger(charge.pk, proxy) as caller:
        [held] = proxy.wait_held(timeout=WAIT)

        assert held.idempotency_key == key
        operation = operation_of(charge, "charge")
        assert (operation.state, operation.attempts) == (StripeOperation.SENDING, 1)
        assert_nothing_held_during_the_call(charge, operation)
        with connection.cursor() as cursor:
            cursor.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [caller.backend_pid])
            assert cursor.fetchall() == [("idle",)]
        assert caller.is_alive()  # still waiting for Stripe all along

        if fault == "hold_before":
            proxy.reset()  # the held connection is closed: Stripe never saw the request
        caller.join(WAIT)
    proxy.wait_released()

    assert not caller.is_alive()
    assert isinstance(caller.error, StripeInternalError), caller.error
    assert len(charges_at_fake(fake_stripe)) == (1 if fault == "hold" else 0)
    charge.refresh_from_db()
    assert not charge.is_charged and not charge.charge_attempt_failed and charge.outcome_unknown
    operation.refresh_from_db()
    assert (operation.state, operation.attempts) == (StripeOperation.UNKNOWN, 1)
    assert operation.lease_until is None and not operation.needs_lookup
    assert signals["succeeded"] == []

    result = charge.charge()

    [at_fake] = charges_at_fake(fake_stripe)
    charge.refresh_from_db()
    assert charge.is_charged and charge.stripe_charge_id == result["id"] == at_fake["id"]
    assert signals["succeeded"] == [charge.pk]
    operation.refresh_from_db()
    assert (operation.state, operation.attempts, operation.key) == (StripeOperation.SUCCEEDED, 2, key)
    assert operation.stripe_id == at_fake["id"]
    posts = [(p.idempotency_key, p.fault, p.status, p.replayed) for p in proxy.calls("POST", "/v1/charges")]
    if fault == "hold":  # Stripe charged, the client timed out; the same key replays that charge
        assert posts == [(key, "hold", 200, False), (key, None, 200, True)]
    else:  # proxy.reset() also forgot the held request; the same key is sent, Stripe charges now
        assert posts == [(key, None, 200, False)]


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
