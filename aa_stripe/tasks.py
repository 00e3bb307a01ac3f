"""The library's background work as Django Tasks, for hosts that run task workers.

Each task is idempotent: it claims its row through the same journal, row locks and leases as the
cron commands, so running it twice, at the same time as a cron command, or after the cron did the
work, changes nothing. Each returns a short JSON-able outcome and raises :class:`StripeTaskFailed`
when the work failed (the task backend records it; nothing is lost: the row keeps what the cron
commands need to finish it).

Enqueued by the library: :func:`parse_waiting_stripe_webhooks` (or :func:`parse_stripe_webhook` per
event, see ``STRIPE_WEBHOOK_ENQUEUE_WINDOW``) as events are stored, when
``STRIPE_WEBHOOK_DEFERRED_PARSING`` is on and ``TASKS['default']`` is a worker backend; the others by
``charge_stripe --enqueue``, ``reconcile_stripe_operations --enqueue`` and ``refresh_* --enqueue``.
You may enqueue them yourself, e.g. ``charge_stripe_charge.enqueue(charge.pk)``.

Needs Django 6 (``django.tasks``) or, on Django 5.2, ``pip install aa-stripe-graphql[tasks]``.
"""

from __future__ import annotations

import io
import time
from datetime import timedelta
from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError

from aa_stripe.exceptions import (
    AaStripeError,
    StripeInternalError,
    StripeMethodNotAllowed,
    StripeOperationInProgress,
    StripeTaskFailed,
)
from aa_stripe.task_framework import database_time, framework

_tasks = framework()
if _tasks is None:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "aa_stripe.tasks needs Django's task framework: Django 6, or on Django 5.2 the django-tasks "
        "backport (pip install 'aa-stripe-graphql[tasks]')."
    )
task = _tasks.task

#: The commands whose whole walk :func:`run_refresh_command` runs (their ``--enqueue``).
REFRESH_COMMANDS = ("refresh_customers", "refresh_coupons", "refresh_prices", "refresh_invoices")


@task()
def parse_stripe_webhook(event_id: str) -> str:
    """Parse the stored Stripe event ``event_id`` unless it is parsed already or being parsed.

    The same claim as the webhook view (the row's lock with SKIP LOCKED, marked parsed in the
    transaction that runs the handlers): a ``parse_stripe_webhooks`` worker that holds the row
    parses it, and no event is parsed twice. A worker killed mid-parse rolls its transaction back;
    ``parse_stripe_webhooks`` (cron) parses what no task finished.
    """
    from aa_stripe.models import StripeWebhook

    webhook = StripeWebhook.objects.filter(pk=event_id).first()
    if webhook is None:
        return "missing"  # pruned, or enqueued by hand for an id never stored
    if webhook.is_parsed:
        return "already parsed"
    parsed = webhook.process_unless_claimed()
    if parsed is None:
        return "parsed elsewhere"
    if not parsed:
        raise StripeTaskFailed(f"Stripe webhook {event_id} could not be parsed: {webhook.parse_error}")
    return "parsed"


#: :func:`parse_waiting_stripe_webhooks`: rows taken at a time, and how long they are its own (a
#: worker killed mid-batch holds at most this many rows, for at most this long).
DRAIN_BATCH = 20
DRAIN_LEASE = timedelta(seconds=15)
#: ... and how often it looks again while it lingers.
DRAIN_POLL_SECONDS = 0.05


@task()
def parse_waiting_stripe_webhooks(
    linger: float = 0.5, max_seconds: float = 10.0, enqueued_at: float | None = None
) -> dict[str, int]:
    """Parse every stored event waiting to be parsed, oldest first, as ``parse_stripe_webhooks``
    does (batches with leases: several of these tasks and cron workers share the backlog and parse
    each event once), until it finds none waiting ``linger`` seconds or more after ``enqueued_at``
    (the database's clock, :func:`aa_stripe.task_framework.database_time`; None: after it started).

    Enqueued on commit by the webhook view at most once per ``STRIPE_WEBHOOK_ENQUEUE_WINDOW``
    (``linger``) per process, with the time it was enqueued: its last look at the queue starts after
    every event its process stored within the window was committed, so it parses them all. One that
    starts later (queued behind others) looks once and ends. The hosts' own clocks play no part:
    the database's says when the window ends, this worker's monotonic clock how long to wait. After
    ``max_seconds`` of steady traffic it enqueues its successor and ends (engines time jobs out, and
    other tasks wait for the worker). Rows whose parse fails are recorded and left
    (``parse_stripe_webhooks --failed`` retries them); the task then raises
    :class:`StripeTaskFailed` naming them, after parsing the rest. Returns the counts.
    """
    from aa_stripe.models import StripeWebhook

    started = time.monotonic()
    deadline = started + max_seconds
    left = linger if enqueued_at is None else enqueued_at + linger - database_time()
    stop_at = started + max(0.0, left)
    parsed, failed = 0, []
    while True:
        looked = time.monotonic()  # before the claim: its snapshot is no older than this
        token, batch = StripeWebhook.claim_batch(size=DRAIN_BATCH, lease=DRAIN_LEASE)
        if not batch:
            if looked >= stop_at:
                break
            time.sleep(DRAIN_POLL_SECONDS)
            continue
        try:
            for webhook in batch:
                outcome = webhook.process_claimed(token)
                parsed += outcome is True
                if outcome is False:
                    failed.append(webhook.pk)
        finally:
            StripeWebhook.release(token)
        if time.monotonic() >= deadline:
            parse_waiting_stripe_webhooks.enqueue(
                linger=linger, max_seconds=max_seconds, enqueued_at=database_time()
            )
            break
    if failed:
        listed = ", ".join(failed[:20]) + (f" and {len(failed) - 20} more" if len(failed) > 20 else "")
        raise StripeTaskFailed(f"{parsed} Stripe webhooks parsed, {len(failed)} failed: {listed}")
    return {"parsed": parsed, "failed": 0}


@task()
def charge_stripe_charge(charge_id: int) -> str:
    """Charge the ``StripeCharge`` ``charge_id`` as ``charge_stripe`` would, if it is still to charge.

    Claimed like ``charge_stripe`` claims its rows (row lock with SKIP LOCKED, the charge planned in
    the journal and committed before Stripe is called, skipped while another run sends it): a row
    charged, declined, waiting for its customer, manual, or being charged elsewhere is left alone.
    Returns ``charged``, ``declined``, ``waiting`` (the customer must confirm it) or ``skipped``;
    raises :class:`StripeTaskFailed` when Stripe did not answer (the journal keeps the operation,
    with its idempotency key, for ``reconcile_stripe_operations`` and the next run) or refused.
    """
    from aa_stripe.operations.charge_queue import claim_next, queue

    claimed = claim_next(queue().filter(pk=charge_id))
    if claimed is None:
        return "skipped"
    charge, planned = claimed
    try:
        if isinstance(planned, Exception):
            raise planned
        result = charge.send_charge(planned)
    except (StripeOperationInProgress, StripeMethodNotAllowed) as err:
        if isinstance(err, StripeOperationInProgress) or charge.is_charged:
            return "skipped"
        raise StripeTaskFailed(f"charge #{charge_id}: {err.message}") from err
    except StripeInternalError as err:
        raise StripeTaskFailed(f"charge #{charge_id}: left for retry: {err.message}") from err
    except AaStripeError as err:
        raise StripeTaskFailed(f"charge #{charge_id}: {err.message}") from err
    if result is not None:
        return "charged"
    if not charge.charge_attempt_failed and charge.status != charge.PENDING:
        return "waiting"
    return "declined"


@task()
def reconcile_stripe_operation(operation_id: int) -> str:
    """Finish the journal's operation ``operation_id`` if it is still unfinished, as
    ``reconcile_stripe_operations`` does (claimed first: a run elsewhere that holds it finishes it).

    Returns its state (``succeeded``, ``refused``), ``finished`` when there was nothing left to do, or
    ``in progress elsewhere``; raises :class:`StripeTaskFailed` when it stays unknown.
    """
    from aa_stripe.management.commands.reconcile_stripe_operations import unfinished
    from aa_stripe.models import StripeOperation
    from aa_stripe.operations import journal

    operation = unfinished().filter(pk=operation_id).first()
    if operation is None:
        return "finished"
    try:
        outcome = journal.reconcile(operation)
    except StripeOperationInProgress:
        return "in progress elsewhere"
    except AaStripeError as err:
        raise StripeTaskFailed(f"operation #{operation_id}: {err.message}") from err
    if outcome.state == StripeOperation.UNKNOWN:
        raise StripeTaskFailed(f"operation #{operation_id}: still unknown: {outcome.error}")
    return str(outcome.state)


@task()
def run_refresh_command(command: str, options: dict[str, Any] | None = None) -> str:
    """Run one refresh command's whole walk (Stripe's lists are cursor-paged, and marking what was
    not seen needs the whole walk); returns what it printed. Raises :class:`StripeTaskFailed` with
    its error when it exits non-zero. ``command`` is one of :data:`REFRESH_COMMANDS`."""
    if command not in REFRESH_COMMANDS:
        raise StripeTaskFailed(f"{command!r} is not one of {', '.join(REFRESH_COMMANDS)}")
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(command, **(options or {}), stdout=out, stderr=err)
    except CommandError as error:
        raise StripeTaskFailed(f"{command}: {error}\n{err.getvalue()}".rstrip()) from error
    return (out.getvalue() + err.getvalue()).strip()
