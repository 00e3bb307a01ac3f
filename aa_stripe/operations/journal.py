"""Plan -> claim -> send -> record: the one way a write to Stripe happens.

Each step is its own short transaction and none is open while Stripe is called:

- **plan** (the caller, under its target's row lock): validate, write the operation with its
  frozen ``params`` and idempotency ``key``, commit. The operation's uuid goes to Stripe in
  ``metadata[operation]``, so it can be found there later.
- **claim**: one conditional UPDATE to ``sending`` with a lease; whoever loses is told the
  operation is in progress (:class:`StripeOperationInProgress`), never sends.
- **send**: the same key and the same params, every time. Before re-sending an operation whose
  key Stripe may have forgotten (24 h) or whose 5xx Stripe would replay, the outcome is looked up
  at Stripe (list filters, never the Search API): found -> recorded, never sent twice; not found
  -> sent under a new key, recorded on the operation.
- **record** (the kind's recorder): apply the outcome to the target row and the operation in one
  transaction; signals after it commits.

Leases and the 24-hour limit are measured on Django's clock (``timezone.now()``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

from django.db import router
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.conf import stripe_settings
from aa_stripe.exceptions import (
    AaStripeError,
    StripeAPIError,
    StripeCardError,
    StripeIdempotencyError,
    StripeInternalError,
    StripeInvalidRequestError,
    StripeOperationInProgress,
)
from aa_stripe.guard import library_atomic
from aa_stripe.redaction import redact_secrets, redact_text

from .record import StripeOperation

logger = logging.getLogger("aa_stripe")

# The attribute (never a column) where finish() leaves Stripe's answer unredacted for execute().
_ANSWER = "_aa_stripe_answer"

#: Stripe keeps idempotency keys at least this long; an operation first sent longer ago is looked
#: up at Stripe before it is sent again.
IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=24)


class Outcome(NamedTuple):
    """How one send (or lookup) ended: ``state`` is succeeded, refused or unknown."""

    state: str
    result: dict[str, Any] | None = None
    error: AaStripeError | None = None

    @property
    def succeeded(self) -> bool:
        return self.state == StripeOperation.SUCCEEDED


@dataclass(frozen=True)
class Kind:
    """What the journal needs to know of one kind of operation (``charge``, ``refund``, ...).

    ``lookup(op)`` finds the operation's outcome at Stripe (None: not there); ``record(op,
    outcome, target)`` applies it to the target row and finishes the operation (see
    :func:`finish`), sending its signals after commit; ``target`` is the caller's instance, or
    None (the recorder loads it).
    """

    lookup: Callable[[StripeOperation], Outcome | None]
    record: Callable[[StripeOperation, Outcome, Any], None]
    prepare: Callable[[StripeOperation], None] | None = None


KINDS: dict[str, Kind] = {}


def register(
    kind: str,
    lookup: Callable[..., Outcome | None],
    record: Callable[..., None],
    prepare: Callable[[StripeOperation], None] | None = None,
) -> None:
    """``prepare(operation)``, when given, runs after the claim and before the send (e.g. to
    complete the request of an operation migrated from an older version)."""
    KINDS[kind] = Kind(lookup=lookup, record=record, prepare=prepare)


def lease() -> timedelta:
    return timedelta(seconds=float(stripe_settings.OPERATION_LEASE))


def plan(
    target: Any,
    *,
    kind: str,
    service: str,
    method: str,
    params: dict[str, Any],
    key: str,
    ids: tuple[str, ...] = (),
    fresh_key: bool = False,
) -> StripeOperation:
    """Write a new operation for ``target`` (inside the caller's short transaction).

    ``fresh_key``: when an earlier, finished operation used ``key`` (a deliberate retry after a
    refusal, a count that went down after pruning), this one gets ``key:<its uuid>``, so Stripe
    never replays that one's answer; without it ``key`` must be new (a unique constraint)."""
    operation = StripeOperation(
        kind=kind, target=target, service=service, method=method, ids=list(ids), key=key
    )
    if fresh_key and StripeOperation.objects.filter(key=key).exists():
        operation.key = f"{key}:{operation.uuid.hex[:12]}"
    operation.params = with_operation_id(params, operation)
    operation.save(force_insert=True)
    return operation


def with_operation_id(params: dict[str, Any], operation: StripeOperation) -> dict[str, Any]:
    """``params`` with the operation's uuid in ``metadata[operation]``."""
    metadata = {**(params.get("metadata") or {}), "operation": str(operation.uuid)}
    return {**params, "metadata": metadata}


def claim(operation: StripeOperation) -> None:
    """Take the operation for sending, or raise :class:`StripeOperationInProgress`.

    One conditional UPDATE: planned and unknown operations, and those whose lease ran out (a
    killed worker), can be taken; exactly one caller wins.
    """
    now = timezone.now()
    claimable = Q(state__in=[StripeOperation.PLANNED, StripeOperation.UNKNOWN]) | Q(
        state=StripeOperation.SENDING, lease_until__lt=now
    )
    taken = (
        # attempts as read: a copy read before another worker's claim cannot take it over blindly
        StripeOperation.objects.filter(pk=operation.pk, attempts=operation.attempts)
        .filter(claimable)
        .update(
            state=StripeOperation.SENDING,
            lease_until=now + lease(),
            attempts=F("attempts") + 1,
            first_sent_at=Coalesce("first_sent_at", now),
            last_sent_at=now,
            updated=now,
        )
    )
    if not taken:
        raise StripeOperationInProgress()
    operation.state = StripeOperation.SENDING
    operation.attempts += 1
    operation.first_sent_at = operation.first_sent_at or now
    operation.last_sent_at = now


def lookup_due(operation: StripeOperation) -> bool:
    """Whether Stripe must be asked before sending: a replayed 5xx, a migrated or flagged
    operation, or a key Stripe may have forgotten."""
    if operation.needs_lookup:
        return True
    first = operation.first_sent_at
    return operation.attempts > 1 and first is not None and timezone.now() - first >= IDEMPOTENCY_KEY_LIFETIME


def send(operation: StripeOperation) -> Outcome:
    """Send the claimed operation (after a lookup when due). No transaction may be open."""
    if lookup_due(operation):
        try:
            found = KINDS[operation.kind].lookup(operation)
        except AaStripeError as err:  # Stripe cannot say now: still unknown, still to be looked up
            operation.needs_lookup = True
            logger.warning("Stripe operation %s: lookup failed: %s", operation.key, redact_text(err.message))
            return Outcome(StripeOperation.UNKNOWN, getattr(err, "json_body", None), err)
        if found is not None:
            return found
        _renew_key(operation)
    try:
        result = stripe_api.call(
            operation.service,
            operation.method,
            *operation.ids,
            params=operation.params,
            idempotency_key=operation.key,
        )
    except (StripeCardError, StripeInvalidRequestError) as err:
        return Outcome(StripeOperation.REFUSED, err.json_body, err)
    except StripeIdempotencyError as err:
        # Our key was used with other parameters: a bug in us. Never re-send under a new key; the
        # operation waits for a lookup (reconcile_stripe_operations) and a person.
        logger.error(
            "Stripe operation %s: idempotency error, left unresolved: %s",
            operation.key,
            redact_text(err.message),
        )
        operation.needs_lookup = True
        return Outcome(StripeOperation.UNKNOWN, err.json_body, err)
    except StripeInternalError as err:
        # Stripe replays a stored 5xx for the same key: only a lookup can tell what happened.
        operation.needs_lookup = bool(err.http_status and err.http_status >= 500)
        logger.warning("Stripe operation %s: outcome unknown: %s", operation.key, redact_text(err.message))
        return Outcome(StripeOperation.UNKNOWN, err.json_body, err)
    except StripeAPIError as err:  # e.g. a bad API key: nothing was done; the same request may go later
        return Outcome(StripeOperation.UNKNOWN, err.json_body, err)
    return Outcome(StripeOperation.SUCCEEDED, result)


def _renew_key(operation: StripeOperation) -> None:
    """Not found at Stripe: send afresh under a new key (the old one may replay a 5xx, or be gone).

    Only while this worker still holds the claim, which is extended: a lookup that outlived the
    lease must not race another worker's lookup and send under a second key."""
    base = operation.key.split("~", 1)[0]
    key = f"{base}~{operation.attempts}"
    now = timezone.now()
    renewed = StripeOperation.objects.filter(
        pk=operation.pk, state=StripeOperation.SENDING, attempts=operation.attempts
    ).update(key=key, needs_lookup=False, lease_until=now + lease(), updated=now)
    if not renewed:
        raise StripeOperationInProgress()
    operation.key, operation.needs_lookup = key, False


def finish(operation: StripeOperation, outcome: Outcome) -> bool:
    """Record ``outcome`` on the operation (inside the recorder's transaction, under the target's
    lock); False when another worker took the operation over meanwhile (it records instead).

    ``result`` (Stripe's answer or error body) and ``error_message`` are stored with their client
    secrets redacted (:mod:`aa_stripe.redaction`), and so is ``operation.result``;
    ``outcome.result`` is left as Stripe sent it, for the caller to hand to the owner at request
    time."""
    now = timezone.now()
    result = outcome.result or {}
    error = outcome.error
    fields: dict[str, Any] = {
        "state": outcome.state,
        "lease_until": None,
        "result": redact_secrets(result),
        "needs_lookup": operation.needs_lookup and outcome.state == StripeOperation.UNKNOWN,
        "stripe_id": (result.get("id") or "") if outcome.succeeded else _failed_object_id(result),
        "error_code": _error_code(error),
        "error_message": redact_text(error.message if error else "")[:10000],
        "http_status": getattr(error, "http_status", None),
        "resolved_at": now if outcome.state != StripeOperation.UNKNOWN else None,
        "updated": now,
    }
    mine = StripeOperation.objects.filter(
        pk=operation.pk, state=StripeOperation.SENDING, attempts=operation.attempts
    ).update(**fields)
    for name, value in fields.items():
        setattr(operation, name, value)
    setattr(operation, _ANSWER, result)  # in memory only: execute() hands it to its caller
    return bool(mine)


def _error_code(error: AaStripeError | None) -> str:
    if error is None:
        return ""
    return str(getattr(error, "decline_code", None) or getattr(error, "code", None) or type(error).__name__)


def _failed_object_id(body: dict[str, Any]) -> str:
    """The id of what Stripe made while refusing (a declined charge), if any."""
    error = body.get("error") or {}
    return str(error.get("charge") or "")


def execute(operation: StripeOperation, target: Any = None) -> Outcome:
    """Claim, send and record ``operation``; the outcome (its kind's recorder has applied it)."""
    kind = KINDS[operation.kind]
    setattr(operation, _ANSWER, None)  # an earlier execute()'s answer is not this one's
    claim(operation)
    try:
        if kind.prepare is not None:
            kind.prepare(operation)
        outcome = send(operation)
        kind.record(operation, outcome, target)
    except BaseException:
        # Sending or recording failed (the database, a bug, a refused write): free the claim at
        # once, so the next call re-sends the same request (Stripe replays its answer if it acted)
        # instead of waiting for the lease to end.
        _release(operation)
        raise
    if operation.state != outcome.state and operation.state != StripeOperation.SENDING:
        # The recorder judged again (e.g. a refusal that a lookup showed was ours): its word counts.
        # Its answer as Stripe sent it (operation.result has the client secrets redacted).
        answer = getattr(operation, _ANSWER, None) or operation.result
        return Outcome(operation.state, answer or outcome.result, outcome.error)
    return outcome


def _release(operation: StripeOperation) -> None:
    with contextlib.suppress(Exception):  # a broken transaction: the lease frees it later
        StripeOperation.objects.filter(
            pk=operation.pk, state=StripeOperation.SENDING, attempts=operation.attempts
        ).update(state=StripeOperation.UNKNOWN, lease_until=None, updated=timezone.now())


def reconcile(operation: StripeOperation) -> Outcome:
    """Finish an operation left unknown, planned, or with an expired lease (a killed worker)."""
    operation.refresh_from_db()  # listed a while ago: its attempts and key may have moved on
    return execute(operation)


def perform(
    target: Any,
    *,
    kind: str,
    service: str,
    method: str,
    params: dict[str, Any],
    key: str,
    ids: tuple[str, ...] = (),
) -> Outcome:
    """Plan (committed at once), claim, send and record one write for ``target``.

    For writes whose plan needs no lock of the target (an update of an object's metadata, a
    cancel): an unfinished operation of the same ``kind`` for the target is finished instead of
    planning a second one, and a different request while one is unfinished is refused with
    :class:`StripeOperationInProgress`.
    """
    using = router.db_for_write(type(target), instance=target)
    with library_atomic(using=using):
        unfinished = StripeOperation.unresolved_for(target).filter(kind=kind).first()
        if unfinished is None:
            operation = plan(
                target, kind=kind, service=service, method=method, params=params, key=key, ids=ids
            )
        elif unfinished.key.split("~", 1)[0] == key:
            operation = unfinished  # the same write again: finish it, with its frozen request
        else:
            raise StripeOperationInProgress()
    return execute(operation, target=target)


def raise_unless_succeeded(outcome: Outcome) -> dict[str, Any]:
    """Stripe's answer of a succeeded operation; else the error it ended with."""
    if outcome.succeeded and outcome.result is not None:
        return outcome.result
    raise outcome.error or StripeInternalError()


def register_simple(
    kind: str,
    model: type,
    apply: Callable[[Any, dict[str, Any]], None],
    lookup: Callable[[StripeOperation], Outcome | None] | None = None,
) -> None:
    """Register a kind whose success is applied to its row with ``apply(row, stripe_object)``.

    The recorder locks the row, finishes the operation and applies a success in one transaction.
    Without ``lookup`` the operation cannot be found at Stripe: after a 5xx or Stripe's key
    lifetime it is sent again under a new key (right for writes that set values, such as an update
    of metadata or a cancel; a create must give a lookup).
    """

    def record(operation: StripeOperation, outcome: Outcome, target: Any) -> None:
        row = target if target is not None else model._default_manager.filter(pk=operation.object_id).first()
        using = router.db_for_write(model, instance=row) if row is not None else router.db_for_write(model)
        with library_atomic(using=using):
            if row is not None and row.pk is not None:
                row.refresh_from_db(from_queryset=model._base_manager.select_for_update())
            if finish(operation, outcome) and outcome.succeeded and row is not None:
                apply(row, outcome.result or {})

    register(kind, lookup=lookup or (lambda operation: None), record=record)
