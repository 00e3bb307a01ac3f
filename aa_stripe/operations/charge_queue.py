"""The rows ``charge_stripe`` (and the ``charge_stripe_charge`` task) take, and how one is claimed."""

from __future__ import annotations

from django.db import router
from django.db.models import CharField, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone

from aa_stripe.guard import library_atomic
from aa_stripe.models import StripeCharge, StripeOperation
from aa_stripe.operations import journal


def sending_now() -> QuerySet[StripeOperation]:
    """The charge operation of the outer row that another run planned or is sending right now (its
    lease running): that run sends it. One whose run died is taken once its lease has run out."""
    now = timezone.now()
    return StripeOperation.objects.filter(
        Q(state=StripeOperation.SENDING, lease_until__gt=now)
        | Q(state=StripeOperation.PLANNED, created__gt=now - journal.lease()),
        kind="charge",
        object_id=Cast(OuterRef("pk"), CharField()),
    )


def queue() -> QuerySet[StripeCharge]:
    """The rows ``charge_stripe`` takes: not charged, not failed, not manual, not waiting for the
    customer (3-D Secure: never retried off-session) nor canceled; oldest first.

    Whether a row can be sent now is :meth:`StripeCharge.check_chargeable`'s to say (input Stripe
    would refuse, no active customer), for the real run and ``--dry-run`` alike.
    """
    return (
        StripeCharge.objects.filter(is_charged=False, charge_attempt_failed=False, is_manual_charge=False)
        .exclude(status__in=StripeCharge.NOT_TO_SEND)
        .order_by("pk")
    )


def claim_next(rows: QuerySet[StripeCharge]) -> tuple[StripeCharge, StripeOperation | Exception] | None:
    """Claim the first row of ``rows`` (a filter of :func:`queue`) and plan its charge; commit.

    The claim is a short transaction taking the row with SKIP LOCKED (a run on another host takes
    the next row instead of waiting) that commits the planned operation; rows whose charge another
    run is sending right now are not taken. Returns the row and its planned operation, to send
    with :meth:`StripeCharge.send_charge` after the commit (no transaction open during the call),
    or the row and the error that kept it from being planned; None when no row is free.
    """
    with library_atomic(using=router.db_for_write(StripeCharge)):
        charge = rows.exclude(Exists(sending_now())).select_for_update(skip_locked=True).first()
        if charge is None:
            return None
        try:
            return charge, charge.plan_charge()
        except Exception as err:  # nothing was planned, nothing sent: the caller says why
            return charge, err
