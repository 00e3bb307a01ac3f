"""How the journal creates plans at Stripe (kind ``plan.create``).

The plan's id is ours (``stripe_plan_id``, chosen before anything is sent), so the plan is looked
up by retrieving it: found with this operation's id in its metadata, it is ours. A plan made
before the journal existed (no operation id) is adopted when its amount, currency and interval are
the row's, as ``create_at_stripe()`` always did; any other plan with that id is someone else's.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import router

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    AaStripeError,
    StripeInternalError,
    StripeInvalidInput,
    StripeInvalidRequestError,
    StripeMethodNotAllowed,
)
from aa_stripe.guard import library_atomic
from aa_stripe.operations import journal
from aa_stripe.operations.journal import Outcome
from aa_stripe.operations.record import StripeOperation
from aa_stripe.validators import (
    clean_amount,
    require_valid,
    validate_statement_descriptor,
    validate_stripe_currency,
)

from .base import lock_for_update
from .catalog_operations import locked_copy, request_of
from .plans import StripeSubscriptionPlan

KIND = "plan.create"


def request_for(plan: StripeSubscriptionPlan) -> dict[str, Any]:
    """What creating ``plan`` sends (without its id); raises
    :class:`~aa_stripe.exceptions.StripeInvalidInput` for values Stripe would refuse."""
    require_valid("currency", validate_stripe_currency, plan.currency)
    amount = require_valid("amount", clean_amount, plan.amount, plan.currency, allow_zero=True)
    require_valid("statement_descriptor", validate_statement_descriptor, plan.statement_descriptor)
    product: dict[str, Any] = {"name": plan.name}
    if plan.statement_descriptor:
        product["statement_descriptor"] = plan.statement_descriptor
    params: dict[str, Any] = {
        "amount": amount,
        "currency": plan.currency,
        "interval": plan.interval,
        "interval_count": plan.interval_count,
        "product": product,
        "metadata": plan.metadata or {},
    }
    if plan.trial_period_days:
        params["trial_period_days"] = plan.trial_period_days
    return params


def create(plan: StripeSubscriptionPlan) -> dict[str, Any]:
    """Plan (the row saved with its plan id), send, record; Stripe's plan. A row whose creation is
    unfinished sends its first request again, as it was frozen."""
    if plan.is_created_at_stripe:
        raise StripeMethodNotAllowed("This plan is already created at Stripe.")
    with library_atomic(using=router.db_for_write(StripeSubscriptionPlan, instance=plan)):
        current = locked_copy(plan) if plan.pk is not None else None
        if current is not None and current.is_created_at_stripe:
            raise StripeMethodNotAllowed("This plan is already created at Stripe.")
        operation = unfinished_operation(plan) if current is not None else None
        if operation is None:
            params = request_for(plan)  # before anything is saved
            if not plan.stripe_plan_id:
                plan.stripe_plan_id = f"plan_{uuid.uuid4().hex}"  # random: cannot collide
            plan.save()
            operation = journal.plan(
                plan,
                kind=KIND,
                service="plans",
                method="create",
                params={"id": plan.stripe_plan_id, **params},
                key=_key(plan.stripe_plan_id),
                fresh_key=True,  # the count goes down when finished operations are pruned
            )
    outcome = journal.execute(operation, target=plan)
    # The recorder may have judged a refusal "id already exists" again (ours, adopted, someone
    # else's): the operation says how it ended.
    if operation.state == StripeOperation.SUCCEEDED:
        return operation.result
    if operation.state == StripeOperation.REFUSED and operation.error_code == StripeMethodNotAllowed.__name__:
        raise StripeMethodNotAllowed(operation.error_message)
    if operation.state == StripeOperation.UNKNOWN and outcome.state != StripeOperation.UNKNOWN:
        raise StripeInternalError(operation.error_message)
    return journal.raise_unless_succeeded(outcome)


def unfinished_operation(plan: StripeSubscriptionPlan) -> StripeOperation | None:
    return StripeOperation.unresolved_for(plan).filter(kind=KIND).first()


def _key(stripe_plan_id: str) -> str:
    # Counted over every row: a plan id can come back on a new row after its old row was deleted.
    prefix = f"plan:{stripe_plan_id}:"
    return f"{prefix}{StripeOperation.objects.filter(kind=KIND, key__startswith=prefix).count() + 1}"


def unfinished_like(plan: StripeSubscriptionPlan) -> StripeSubscriptionPlan | None:
    """The saved plan whose creation at Stripe is unfinished and sends what creating ``plan`` would
    (its id too, when ``plan`` has one): asking again for the same plan finishes that one."""
    try:
        wanted = request_for(plan)
    except StripeInvalidInput:
        return None
    if plan.stripe_plan_id:
        wanted["id"] = plan.stripe_plan_id
    unfinished = StripeOperation.objects.filter(
        kind=KIND,
        state__in=StripeOperation.UNRESOLVED,
        content_type=ContentType.objects.get_for_model(StripeSubscriptionPlan),
    ).order_by("id")
    for operation in unfinished:
        sent = request_of(operation)
        if not plan.stripe_plan_id:
            sent.pop("id", None)
        if sent == wanted:
            row = StripeSubscriptionPlan.objects.filter(pk=operation.object_id, is_created_at_stripe=False)
            if (found := row.first()) is not None:
                return found
    return None


def lookup(operation: StripeOperation) -> Outcome | None:
    """The plan at Stripe, retrieved by its id (ours): None when Stripe has no plan of that id."""
    plan_id = operation.params["id"]
    try:
        found = stripe_api.call("plans", "retrieve", plan_id)
    except StripeInvalidRequestError as err:
        if err.kind == "not_found":
            return None
        raise
    sent = operation.params
    legacy = "operation" not in (found.get("metadata") or {}) and (
        found.get("amount"),
        found.get("currency"),
        found.get("interval"),
    ) == (sent.get("amount"), sent.get("currency"), sent.get("interval"))
    if (found.get("metadata") or {}).get("operation") == str(operation.uuid) or legacy:
        return Outcome(StripeOperation.SUCCEEDED, found)
    error = StripeMethodNotAllowed(f"A different plan with id {plan_id!r} already exists at Stripe.")
    return Outcome(StripeOperation.REFUSED, None, error)


def record(operation: StripeOperation, outcome: Outcome, target: StripeSubscriptionPlan | None) -> None:
    if outcome.state == StripeOperation.REFUSED and getattr(outcome.error, "code", None) == (
        "resource_already_exists"
    ):
        outcome = _taken_id(operation, outcome)  # a read: before any lock
    plan = (
        target
        if target is not None
        else StripeSubscriptionPlan.objects.filter(pk=operation.object_id).first()
    )
    if plan is None:  # the row was deleted: the operation still keeps what Stripe did
        journal.finish(operation, outcome)
        return
    with library_atomic(using=router.db_for_write(StripeSubscriptionPlan, instance=plan)):
        lock_for_update(plan)
        if journal.finish(operation, outcome) and outcome.succeeded:
            _apply(plan, operation, outcome.result or {})


def _taken_id(operation: StripeOperation, refused: Outcome) -> Outcome:
    """Stripe has a plan with this id already: ours (a lost answer whose key Stripe forgot), a plan
    made before the journal, or someone else's."""
    try:
        found = lookup(operation)
    except AaStripeError as err:  # cannot tell now: unknown, looked up on the next attempt
        operation.needs_lookup = True
        return Outcome(StripeOperation.UNKNOWN, None, err)
    return found or refused


def _apply(plan: StripeSubscriptionPlan, operation: StripeOperation, stripe_plan: dict[str, Any]) -> None:
    """The row says what Stripe has: the frozen request, whatever the row was changed to since."""
    sent = request_of(operation)
    product = sent.get("product") or {}
    plan.stripe_plan_id = stripe_plan.get("id") or plan.stripe_plan_id
    plan.amount, plan.currency, plan.interval = sent["amount"], sent["currency"], sent["interval"]
    plan.interval_count = sent.get("interval_count", plan.interval_count)
    plan.trial_period_days = sent.get("trial_period_days") or 0
    plan.name = product.get("name", plan.name)
    plan.statement_descriptor = product.get("statement_descriptor", "")
    plan.metadata = sent["metadata"]
    plan.stripe_response = stripe_plan
    plan.is_created_at_stripe = True
    plan.save()


journal.register(KIND, lookup=lookup, record=record)
