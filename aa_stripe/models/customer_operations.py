"""How the journal writes customers to Stripe: creation from a stripe.js token, and updates
(a new card, a description).

``customer.create``: the idempotency key names the token (``customer:create:<token>``), and a token
makes at most one customer: the operation is the token's, whichever row asks. Asking again with the
same token finishes that operation (a new, unsaved instance becomes the row that asked first), so a
lost answer is never a second customer. Looked up among the customers created since the first send
(list filtered by ``created``), matched on ``metadata[operation]``.

``customer.update``: one kind for every update of a customer, so that updates reach Stripe in the
order they were asked for; an update asked while an earlier one is unfinished finishes the earlier
one first. Looked up by retrieving the customer: Stripe applies ``metadata[operation]`` in the same
request as the change, so the customer carrying this operation's id has had it applied.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, router
from django.db.models import Q
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    AaStripeError,
    StripeCardError,
    StripeInternalError,
    StripeInvalidRequestError,
    StripeMethodNotAllowed,
    StripeOperationInProgress,
)
from aa_stripe.guard import library_atomic
from aa_stripe.operations import journal
from aa_stripe.operations.journal import Outcome
from aa_stripe.operations.record import StripeOperation

from .customers import StripeCustomer

logger = logging.getLogger("aa_stripe")

CREATE = "customer.create"
UPDATE = "customer.update"

#: Stripe's clock and ours differ a little: look a bit before the first send.
LOOKUP_MARGIN = timedelta(minutes=10)


def create_key(token: str) -> str:
    return f"customer:create:{token}"


def _base(key: str) -> str:
    """The key an operation was planned with (a re-send after a lookup appends ``~N``)."""
    return key.split("~", 1)[0]


def _with_key(key: str) -> Q:
    return Q(key=key) | Q(key__startswith=f"{key}~")


def _claimable() -> Q:
    return Q(state__in=[StripeOperation.PLANNED, StripeOperation.UNKNOWN]) | Q(
        state=StripeOperation.SENDING, lease_until__lt=timezone.now()
    )


def recorded_error(operation: StripeOperation) -> AaStripeError:
    """The error a refused operation ended with, as Stripe would replay it for the same key."""
    body = operation.result or {}
    error = body.get("error") or {}
    cls = StripeCardError if error.get("type") == "card_error" else StripeInvalidRequestError
    return cls(
        error.get("message") or operation.error_message or None,
        code=error.get("code"),
        decline_code=error.get("decline_code"),
        http_status=operation.http_status,
        json_body=body,
        param=error.get("param"),
    )


# --- creation -----------------------------------------------------------------------------------


def create(customer: StripeCustomer, description: str | None) -> StripeCustomer:
    """``StripeCustomer.create_at_stripe()``: plan (committed), send, record; see the module docstring."""
    if customer.is_created_at_stripe:
        raise StripeMethodNotAllowed("This customer is already created at Stripe.")
    token = (customer.stripe_js_response or {}).get("id")
    if not token:
        raise StripeMethodNotAllowed('stripe_js_response has no token "id" to create a customer from.')
    if customer.pk is not None:
        _finish_earlier_create(customer, create_key(token))
    operation, saved_here = _plan_create(customer, token, description)
    if operation is None:
        return customer  # created from this token already: the same customer again
    outcome = journal.execute(operation, target=customer)
    if outcome.succeeded:
        return customer
    if outcome.state == StripeOperation.REFUSED and saved_here:
        # A new instance was saved only to carry the operation: Stripe made nothing, so neither do
        # we (the operation keeps what Stripe answered).
        customer.delete()
    raise outcome.error or StripeInternalError()


def create_without_token(customer: StripeCustomer, description: str | None) -> StripeCustomer:
    """A customer without a card (cards come later through SetupIntents): the operation is the
    row's, so asking again for the same row finishes it instead of making a second customer."""
    if customer.is_created_at_stripe:
        raise StripeMethodNotAllowed("This customer is already created at Stripe.")
    operation, saved_here = _plan_create_without_token(customer, description)
    return _send_create(customer, operation, saved_here)


def _send_create(customer: StripeCustomer, operation: StripeOperation, saved_here: bool) -> StripeCustomer:
    outcome = journal.execute(operation, target=customer)
    if outcome.succeeded:
        return customer
    if outcome.state == StripeOperation.REFUSED and saved_here:
        customer.delete()  # saved only to carry the operation, and Stripe made nothing
    raise outcome.error or StripeInternalError()


def _plan_create_without_token(
    customer: StripeCustomer, description: str | None
) -> tuple[StripeOperation, bool]:
    using = router.db_for_write(StripeCustomer, instance=customer)
    with library_atomic(using=using):
        saved_here = _save_for_plan(customer)
        unfinished = StripeOperation.unresolved_for(customer).filter(kind=CREATE).first()
        if unfinished is not None:
            return unfinished, saved_here
        params = {
            "description": description if description is not None else _default_description(customer),
            "expand": ["sources"],
        }
        operation = journal.plan(
            customer,
            kind=CREATE,
            service="customers",
            method="create",
            params=params,
            key=f"customer:create:row:{customer.pk}:{uuid.uuid4().hex}",
        )
        return operation, saved_here


def get_or_create_for_user(model: type[StripeCustomer], user: Any, description: str | None) -> StripeCustomer:
    """``StripeCustomer.get_or_create_for_user()``: decide under a lock of the user's row (two
    requests at once make one customer), then send outside any transaction."""
    user_model = model._meta.get_field("user").related_model
    user_id = getattr(user, "pk", user)
    using = router.db_for_write(model)
    with library_atomic(using=using):
        user_model._base_manager.using(using).select_for_update().filter(pk=user_id).exists()
        customer = model.get_latest_active_customer_for_user(user_id)
        if customer is not None:
            return customer
        pending = next(
            (
                row
                for row in model.objects.filter(
                    user_id=user_id, is_active=True, is_created_at_stripe=False
                ).order_by("-id")
                if StripeOperation.unresolved_for(row).filter(kind=CREATE).exists()
            ),
            None,
        )
        if pending is None:
            customer = model(user_id=user_id)
            operation, saved_here = _plan_create_without_token(customer, description)
    if pending is not None:
        # A creation left unfinished (a lost answer): finish it, never a second customer.
        return pending.create_at_stripe(description)
    return _send_create(customer, operation, saved_here)


def _finish_earlier_create(customer: StripeCustomer, key: str) -> None:
    """A row asked to be created from another token whose outcome is unknown: that one first, since
    Stripe may have made the customer from it."""
    earlier = StripeOperation.unresolved_for(customer).filter(kind=CREATE).exclude(_with_key(key)).first()
    if earlier is None:
        return
    outcome = journal.execute(earlier, target=customer)
    if outcome.state == StripeOperation.UNKNOWN:
        raise outcome.error or StripeInternalError()
    if outcome.succeeded:
        raise StripeMethodNotAllowed(
            "This customer was created at Stripe from its earlier token: add this card with add_new_source()."
        )


def _plan_create(
    customer: StripeCustomer, token: str, description: str | None
) -> tuple[StripeOperation | None, bool]:
    """The token's operation (new and committed, or the unfinished one), and whether ``customer``
    was saved by this call; (None, False) when the token's customer exists already (``customer``
    is now that row)."""
    adding = customer.pk is None
    try:
        return _plan_create_once(customer, token, description)
    except IntegrityError:
        # Another request planned the same token between our look and our insert (a double
        # submit): all of ours was rolled back; the second look finds its operation.
        if adding:
            customer.pk, customer._state.adding = None, True
        return _plan_create_once(customer, token, description)


def token_operation(key: str) -> StripeOperation | None:
    """The operation of the token whose key is ``key`` (at most one: its key is unique)."""
    return StripeOperation.objects.filter(_with_key(key), kind=CREATE).order_by("id").first()


def _plan_create_once(
    customer: StripeCustomer, token: str, description: str | None
) -> tuple[StripeOperation | None, bool]:
    key = create_key(token)
    adding = customer.pk is None
    using = router.db_for_write(StripeCustomer, instance=customer)
    with library_atomic(using=using):
        existing = token_operation(key)
        if existing is None:
            saved_here = _save_for_plan(customer)
            params = {
                "source": token,
                "description": description if description is not None else _default_description(customer),
                "expand": ["sources"],
            }
            operation = journal.plan(
                customer, kind=CREATE, service="customers", method="create", params=params, key=key
            )
            return operation, saved_here
        owner = _owner(existing)
        if owner is not None and owner.user_id != customer.user_id:
            raise StripeMethodNotAllowed("This token was used for another user's customer.")
        if adding and owner is not None:
            _become(customer, owner)
        if owner is not None and owner.pk == customer.pk:
            if existing.state in StripeOperation.UNRESOLVED:
                return existing, False
            if existing.state != StripeOperation.SUCCEEDED:
                raise recorded_error(existing)
            if adding:
                return None, False
            customer.refresh_from_db()  # a stale instance of a row created meanwhile
            raise StripeMethodNotAllowed("This customer is already created at Stripe.")
        return _take_over(existing, owner, customer)


def _take_over(
    existing: StripeOperation, owner: StripeCustomer | None, customer: StripeCustomer
) -> tuple[StripeOperation, bool]:
    """The token's operation belongs to another row (saved again by a host retrying) or to a row
    deleted since: an unfinished one moves to ``customer``, which asks now."""
    if existing.state == StripeOperation.REFUSED:
        raise recorded_error(existing)
    if existing.state == StripeOperation.SUCCEEDED or (owner is not None and owner.is_created_at_stripe):
        raise StripeMethodNotAllowed("A customer was created at Stripe from this token already.")
    if not StripeOperation.objects.select_for_update().filter(_claimable(), pk=existing.pk).exists():
        raise StripeOperationInProgress()
    saved_here = _save_for_plan(customer)
    content_type = ContentType.objects.get_for_model(StripeCustomer)
    moved = {"content_type": content_type, "object_id": str(customer.pk)}
    StripeOperation.objects.filter(pk=existing.pk).update(**moved)
    existing.content_type, existing.object_id = content_type, str(customer.pk)
    return existing, saved_here


def _save_for_plan(customer: StripeCustomer) -> bool:
    """Save a new instance (the operation needs its row); lock a saved one and check it is still to
    be created. True when it was saved here."""
    if customer.pk is None:
        customer.save()
        return True
    current = (
        StripeCustomer._base_manager.select_for_update()
        .filter(pk=customer.pk)
        .values("is_created_at_stripe", "stripe_js_response")
        .first()
    )
    if current is None:
        raise StripeMethodNotAllowed("This customer was deleted.")
    if current["is_created_at_stripe"]:
        customer.refresh_from_db()
        raise StripeMethodNotAllowed("This customer is already created at Stripe.")
    if current["stripe_js_response"] != customer.stripe_js_response:  # set on the instance, not saved
        customer.save(update_fields=["stripe_js_response", "updated"])
    return False


def _owner(operation: StripeOperation) -> StripeCustomer | None:
    """The row the operation is for, locked; None when it was deleted."""
    return StripeCustomer._base_manager.select_for_update().filter(pk=operation.object_id).first()


def _become(customer: StripeCustomer, row: StripeCustomer) -> None:
    """Turn the unsaved ``customer`` into ``row`` (the caller keeps using its instance)."""
    for field in StripeCustomer._meta.concrete_fields:
        setattr(customer, field.attname, getattr(row, field.attname))
    customer._state.adding = False
    customer._state.db = row._state.db


def _default_description(customer: StripeCustomer) -> str:
    return f"{customer.user} id: {customer.user.pk}"


def lookup_create(operation: StripeOperation) -> Outcome | None:
    """The customer at Stripe: among those created since the first send, the one carrying the
    operation's id."""
    since = (operation.first_sent_at or operation.created) - LOOKUP_MARGIN
    query = {"created": {"gt": int(since.timestamp()) - 1}, "expand": ["data.sources"]}  # i.e. gte
    for found in stripe_api.iterate("customers", query):
        if (found.get("metadata") or {}).get("operation") == str(operation.uuid):
            return Outcome(StripeOperation.SUCCEEDED, found)
    return None


def _recorded_row(operation: StripeOperation, target: StripeCustomer | None) -> StripeCustomer | None:
    # Read again: another caller asking with the same token may have moved the operation to its row.
    object_id = StripeOperation.objects.filter(pk=operation.pk).values_list("object_id", flat=True).first()
    if target is not None and str(target.pk) == object_id:
        return target
    return StripeCustomer._base_manager.filter(pk=object_id).first() if object_id else None


def record_create(operation: StripeOperation, outcome: Outcome, target: StripeCustomer | None) -> None:
    row = _recorded_row(operation, target)
    using = router.db_for_write(StripeCustomer, instance=row)
    with library_atomic(using=using):
        if row is not None:
            try:
                row.refresh_from_db(from_queryset=StripeCustomer._base_manager.select_for_update())
            except StripeCustomer.DoesNotExist:
                row = None  # deleted meanwhile: the operation still keeps what Stripe did
        if not journal.finish(operation, outcome) or row is None or not outcome.succeeded:
            return
        made = outcome.result or {}
        if StripeCustomer._base_manager.filter(stripe_customer_id=made["id"]).exclude(pk=row.pk).exists():
            # Only for a token used before the journal existed: Stripe replayed another row's customer.
            logger.error("Stripe customer %s is on another row already; not on #%s", made["id"], row.pk)
            return
        row.stripe_customer_id = made["id"]
        row.is_created_at_stripe = True
        row.update_from_stripe_data(made)


# --- updates ------------------------------------------------------------------------------------


def update(customer: StripeCustomer, params: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    """Send one update of the customer through the journal; Stripe's customer.

    ``key`` names the request when it has a natural identity (a card token); else the update is a
    request of its own, unless an unfinished earlier one asked exactly the same.
    """
    customer._require_stripe_id()
    if key is not None:
        done = StripeOperation.objects.filter(_with_key(key), kind=UPDATE).first()
        if done is not None and done.is_resolved:  # asked (and answered) before: Stripe would replay it
            if done.state == StripeOperation.SUCCEEDED:
                return done.result
            raise recorded_error(done)
    earlier = StripeOperation.unresolved_for(customer).filter(kind=UPDATE).first()
    if earlier is not None and _base(earlier.key) != key:
        if _request(earlier.params) == params:
            key = _base(earlier.key)  # the same request again: finish it
        else:
            outcome = journal.execute(earlier, target=customer)
            if outcome.state == StripeOperation.UNKNOWN:
                raise outcome.error or StripeInternalError()
    outcome = journal.perform(
        customer,
        kind=UPDATE,
        service="customers",
        method="update",
        params=params,
        key=key or f"customer:update:{customer.stripe_customer_id}:{uuid.uuid4().hex}",
        ids=(customer.stripe_customer_id,),
    )
    return journal.raise_unless_succeeded(outcome)


def _request(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without the operation's own id."""
    request = {k: v for k, v in params.items() if k != "metadata"}
    metadata = {k: v for k, v in (params.get("metadata") or {}).items() if k != "operation"}
    return {**request, "metadata": metadata} if metadata else request


def lookup_update(operation: StripeOperation) -> Outcome | None:
    try:
        found = stripe_api.call("customers", "retrieve", *operation.ids, params={"expand": ["sources"]})
    except StripeInvalidRequestError as err:
        if err.kind != "not_found":
            raise
        return Outcome(StripeOperation.REFUSED, err.json_body, err)  # deleted: nothing to update
    if (found.get("metadata") or {}).get("operation") == str(operation.uuid):
        return Outcome(StripeOperation.SUCCEEDED, found)
    return None


def apply_update(row: StripeCustomer, found: dict[str, Any]) -> None:
    row.update_from_stripe_data(found)


journal.register(CREATE, lookup=lookup_create, record=record_create)
journal.register_simple(UPDATE, StripeCustomer, apply_update, lookup=lookup_update)
