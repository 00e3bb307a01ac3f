"""What the journal's plan and coupon kinds share: planning under the row's lock, telling the same
request from another, and keys that name the write.

Each write is planned in a short transaction of the library (the row locked, the operation
committed), sent with no transaction open (:func:`aa_stripe.operations.journal.execute`), and
recorded by its kind's recorder (:mod:`.plan_operations`, :mod:`.coupon_operations`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import Model

from aa_stripe.exceptions import StripeOperationInProgress
from aa_stripe.operations import journal
from aa_stripe.operations.record import StripeOperation

#: Stripe's clock and ours differ a little: look a bit before the first send.
LOOKUP_MARGIN = timedelta(minutes=10)


def request_of(operation: StripeOperation) -> dict[str, Any]:
    """The operation's frozen parameters without the journal's ``metadata[operation]``."""
    return without_operation_id(operation.params)


def without_operation_id(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with ``metadata`` as the caller gave it (``{}`` when none)."""
    metadata = {k: v for k, v in (params.get("metadata") or {}).items() if k != "operation"}
    return {**params, "metadata": metadata}


def same_request(operation: StripeOperation, params: dict[str, Any]) -> bool:
    """Whether ``params`` asks for what ``operation`` sends (JSON equality: what Stripe compares)."""
    return request_of(operation) == without_operation_id(params)


def is_ours(found: dict[str, Any], operation: StripeOperation) -> bool:
    """Whether Stripe's object carries ``operation``'s id in its metadata."""
    return (found.get("metadata") or {}).get("operation") == str(operation.uuid)


def next_key(target: Model, kind: str, name: str) -> str:
    """``<name>:<n>``, n counting the operations of ``kind`` for ``target`` (under its lock): a
    key names one write, and a later write of the same kind (after a refusal, an undeletion) gets
    its own."""
    return f"{name}:{operations_of(target, kind).count() + 1}"


def operations_of(target: Model, kind: str) -> Any:
    return StripeOperation.objects.filter(
        content_type=ContentType.objects.get_for_model(type(target)), object_id=str(target.pk), kind=kind
    )


def locked_copy(target: Model) -> Any:
    """The row of ``target`` as the database holds it, locked (inside a transaction), or None;
    ``target`` itself, and what its caller changed on it, is left as it is."""
    manager: Any = type(target)._base_manager
    return manager.select_for_update().filter(pk=target.pk).first()


def plan_for_row(
    target: Model,
    *,
    kind: str,
    service: str,
    method: str,
    params: dict[str, Any],
    key: str,
    ids: tuple[str, ...] = (),
    operation_id: bool = True,
) -> StripeOperation:
    """The operation for this write of ``target`` (inside the caller's ``library_atomic``).

    The caller holds the row's lock (:func:`locked_copy`). An unfinished operation of the same
    ``kind`` that sends the same request is returned to be finished (its frozen request, its key);
    a different one refuses with :class:`StripeOperationInProgress`. ``operation_id=False`` sends
    ``params`` as they are, for a request that takes no metadata (a delete): such a write is found
    by its effect instead.
    """
    for unfinished in StripeOperation.unresolved_for(target).filter(kind=kind):
        if same_request(unfinished, params):
            return unfinished
        raise StripeOperationInProgress()
    if operation_id:
        return journal.plan(
            target, kind=kind, service=service, method=method, params=params, key=key, ids=ids, fresh_key=True
        )
    operation = StripeOperation(
        kind=kind, target=target, service=service, method=method, ids=list(ids), key=key, params=params
    )
    if StripeOperation.objects.filter(key=key).exists():  # the count went down after pruning
        operation.key = f"{key}:{operation.uuid.hex[:12]}"
    operation.save(force_insert=True)
    return operation


def attach(operation: StripeOperation, target: Model) -> None:
    """Point ``operation`` at the row its success made (a coupon's row exists only once Stripe
    has the coupon)."""
    content_type = ContentType.objects.get_for_model(type(target))
    StripeOperation.objects.filter(pk=operation.pk).update(
        content_type=content_type, object_id=str(target.pk)
    )
    operation.content_type, operation.object_id = content_type, str(target.pk)
