"""How the journal creates coupons, pushes their metadata and deletes them at Stripe.

Kinds and keys:

- ``coupon.create``, key ``coupon:create:<operation uuid>``. There is no row before Stripe has the
  coupon (its ``created`` and, when Stripe chooses it, its id come from Stripe), so the operation
  is planned without a target and the recorder makes (or finds, when a webhook mirrored it first)
  the row, then points the operation at it. A coupon with our id is looked up by retrieving it; one
  whose id Stripe chose among the coupons created since the first send, by the operation's id in
  metadata. Asking again for the same coupon while its creation is unfinished finishes that one.
- ``coupon.update`` (metadata), key ``coupon:<pk>:update:<n>``: values that are set, sent again
  under a new key when a lookup would be due.
- ``coupon.delete``, key ``coupon:<pk>:delete:<n>``. DELETE takes no metadata: the lookup retrieves
  the coupon; gone (or re-created by someone else under the same code) means deleted.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, router
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    StripeCouponAlreadyExists,
    StripeInvalidRequestError,
    StripeOperationInProgress,
)
from aa_stripe.guard import library_atomic
from aa_stripe.operations import journal
from aa_stripe.operations.journal import Outcome
from aa_stripe.operations.record import StripeOperation

from .base import lock_for_update, timestamp_to_datetime
from .catalog_operations import (
    LOOKUP_MARGIN,
    attach,
    is_ours,
    locked_copy,
    next_key,
    plan_for_row,
    request_of,
    same_request,
)
from .coupons import StripeCoupon

CREATE, UPDATE, DELETE = "coupon.create", "coupon.update", "coupon.delete"


def _using() -> str:
    return router.db_for_write(StripeCoupon)


def _not_found(outcome: Outcome) -> bool:
    error = outcome.error
    return outcome.state == StripeOperation.REFUSED and getattr(error, "kind", None) == "not_found"


# --- create -------------------------------------------------------------------------------------


def create(coupon: StripeCoupon, params: dict[str, Any]) -> None:
    """Create ``coupon`` at Stripe with ``params``; the recorder saves its row."""
    with library_atomic(using=_using()):
        operation = _unfinished_create(params)
        if operation is None:
            existing = StripeCoupon.objects.filter(coupon_id=coupon.coupon_id).exclude(pk=coupon.pk)
            if coupon.coupon_id and existing.exists():
                raise StripeCouponAlreadyExists()
            operation = StripeOperation(kind=CREATE, service="coupons", method="create")
            operation.key = f"coupon:create:{operation.uuid}"
            operation.params = journal.with_operation_id(params, operation)
            operation.save(force_insert=True)
    outcome = journal.execute(operation, target=coupon)
    if getattr(outcome.error, "code", None) == "resource_already_exists":
        raise StripeCouponAlreadyExists() from outcome.error
    journal.raise_unless_succeeded(outcome)


def _unfinished_create(params: dict[str, Any]) -> StripeOperation | None:
    """An unfinished creation of the same coupon (a retry); another one of the same code refuses."""
    for operation in StripeOperation.objects.filter(kind=CREATE, state__in=StripeOperation.UNRESOLVED):
        if same_request(operation, params):
            return operation
        if params.get("id") and request_of(operation).get("id") == params["id"]:
            raise StripeOperationInProgress(f"The coupon {params['id']} is being created at Stripe.")
    return None


def lookup_create(operation: StripeOperation) -> Outcome | None:
    coupon_id = operation.params.get("id")
    if coupon_id:
        try:
            found = stripe_api.call("coupons", "retrieve", coupon_id)
        except StripeInvalidRequestError as err:
            if err.kind == "not_found":
                return None
            raise
        # Someone else's coupon of this code: sent, Stripe refuses it as already existing.
        return Outcome(StripeOperation.SUCCEEDED, found) if is_ours(found, operation) else None
    since = (operation.first_sent_at or operation.created) - LOOKUP_MARGIN
    for found in stripe_api.iterate("coupons", {"created": {"gt": int(since.timestamp()) - 1}}):
        if is_ours(found, operation):
            return Outcome(StripeOperation.SUCCEEDED, found)
    return None


def record_create(operation: StripeOperation, outcome: Outcome, target: StripeCoupon | None) -> None:
    if not outcome.succeeded:
        journal.finish(operation, outcome)  # nothing at Stripe (or not known yet): no row
        return
    with library_atomic(using=_using()):
        if journal.finish(operation, outcome):
            attach(operation, _save_row(operation, outcome.result or {}, target))


def _save_row(operation: StripeOperation, data: dict[str, Any], target: StripeCoupon | None) -> StripeCoupon:
    """The row of Stripe's new coupon: the one a webhook or refresh_coupons made already (its
    Stripe data carries this operation's id), else ``target`` (the caller's instance), else a new
    one; ``target`` ends up as that row."""
    namesakes = StripeCoupon.objects.all_with_deleted().filter(coupon_id=data["id"])
    row = _mirrored(namesakes.select_for_update(), operation) or target or StripeCoupon()
    # Any other live row of this code names a coupon Stripe deleted before this one took the code.
    namesakes.filter(is_deleted=False).exclude(pk=row.pk).update(is_deleted=True, updated=timezone.now())
    row.update_from_stripe_data(data, commit=False)
    try:
        with library_atomic(using=_using()):
            row._save_local()
    except IntegrityError:  # a webhook of another process mirrored it meanwhile
        row = _mirrored(namesakes.select_for_update(), operation) or row
        row.update_from_stripe_data(data)
    if target is not None and target is not row:
        for field in StripeCoupon._meta.concrete_fields:
            setattr(target, field.attname, getattr(row, field.attname))
        target._state.adding, target._state.db = False, row._state.db
        target._remember_state()
    return row


def _mirrored(rows: Any, operation: StripeOperation) -> StripeCoupon | None:
    # Stripe's creation times have one-second resolution: the operation's id tells namesakes apart.
    return next((row for row in rows if is_ours(row.stripe_response or {}, operation)), None)


# --- update (metadata) --------------------------------------------------------------------------


def push_metadata(coupon: StripeCoupon) -> None:
    """Set the coupon's metadata at Stripe; a coupon Stripe no longer has is marked deleted."""
    params = {"metadata": coupon.metadata or {}}
    with library_atomic(using=_using()):
        locked_copy(coupon)
        operation = plan_for_row(
            coupon,
            kind=UPDATE,
            service="coupons",
            method="update",
            ids=(coupon.coupon_id,),
            params=params,
            key=next_key(coupon, UPDATE, f"coupon:{coupon.pk}:update"),
        )
    outcome = journal.execute(operation, target=coupon)
    if not _not_found(outcome):
        journal.raise_unless_succeeded(outcome)


def record_update(operation: StripeOperation, outcome: Outcome, target: StripeCoupon | None) -> None:
    coupon = _target(operation, target)
    if coupon is None:
        journal.finish(operation, outcome)
        return
    with library_atomic(using=_using()):
        lock_for_update(coupon)
        if not journal.finish(operation, outcome):
            return
        if outcome.succeeded:
            coupon.update_from_stripe_data(outcome.result or {})
        elif _not_found(outcome):  # deleted at Stripe meanwhile: the row says so
            coupon.is_deleted = True
            coupon._save_local()


def _target(operation: StripeOperation, target: StripeCoupon | None) -> StripeCoupon | None:
    if target is not None:
        return target
    return StripeCoupon.objects.all_with_deleted().filter(pk=operation.object_id).first()


# --- delete -------------------------------------------------------------------------------------


def delete(coupon: StripeCoupon) -> None:
    """Delete the coupon at Stripe and mark its row deleted (the row is kept)."""
    at_stripe = _retrieve(coupon.coupon_id) if coupon.is_created_at_stripe and coupon.coupon_id else None
    if at_stripe is None or timestamp_to_datetime(at_stripe.get("created")) != coupon.created:
        # Gone at Stripe, never there, or another coupon made under the same code: not ours to delete.
        coupon.is_deleted = True
        coupon._save_local()
        return
    with library_atomic(using=_using()):
        locked_copy(coupon)
        operation = plan_for_row(
            coupon,
            kind=DELETE,
            service="coupons",
            method="delete",
            ids=(coupon.coupon_id,),
            params={},
            key=next_key(coupon, DELETE, f"coupon:{coupon.pk}:delete"),
            operation_id=False,  # DELETE takes no metadata
        )
    outcome = journal.execute(operation, target=coupon)
    if not _not_found(outcome):
        journal.raise_unless_succeeded(outcome)


def _retrieve(coupon_id: str) -> dict[str, Any] | None:
    try:
        return stripe_api.call("coupons", "retrieve", coupon_id)
    except StripeInvalidRequestError as err:
        if err.kind != "not_found":
            raise
        return None


def lookup_delete(operation: StripeOperation) -> Outcome | None:
    """Deleted when Stripe no longer has the coupon, or has another one of the same code."""
    coupon_id = operation.ids[0]
    found = _retrieve(coupon_id)
    row = StripeCoupon.objects.all_with_deleted().filter(pk=operation.object_id).first()
    if found is not None and (row is None or timestamp_to_datetime(found.get("created")) == row.created):
        return None
    return Outcome(StripeOperation.SUCCEEDED, {"id": coupon_id, "object": "coupon", "deleted": True})


def record_delete(operation: StripeOperation, outcome: Outcome, target: StripeCoupon | None) -> None:
    coupon = _target(operation, target)
    if coupon is None:
        journal.finish(operation, outcome)
        return
    with library_atomic(using=_using()):
        lock_for_update(coupon)
        # Refused as not found: gone already (our lost answer, or someone else): deleted all the same.
        if journal.finish(operation, outcome) and (outcome.succeeded or _not_found(outcome)):
            stub = {"id": coupon.coupon_id, "object": "coupon", "deleted": True}
            coupon.update_from_stripe_data(
                (outcome.result if outcome.succeeded else None) or stub, deleted=True
            )


journal.register(CREATE, lookup=lookup_create, record=record_create)
journal.register(UPDATE, lookup=lambda operation: None, record=record_update)
journal.register(DELETE, lookup=lookup_delete, record=record_delete)
