"""How the journal creates products and prices at Stripe (kinds ``product.create``, ``price.create``).

- A product's id is ours (chosen before anything is sent), so it is looked up by retrieving it:
  found with this operation's id in its metadata, it is ours; any other product of that id is
  someone else's. Key ``product:create:<random>``.
- A price's id is Stripe's: it is looked up among its product's prices created since the first
  send, by the operation's id in metadata. Key ``price:create:<random>``.

A random key names this one request: a retry finishes the operation with its frozen key, and a
new request after a refusal gets a key of its own (a local primary key, or a count of operations
that pruning lowers, could name an earlier request, or another environment's sharing the account).

Both save the row before the request is planned (``creation_unfinished`` until the outcome is
known) and record a success on it; a row a webhook filled first (``last_event_at`` set) keeps
what that newer event said.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import router

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    AaStripeError,
    StripeInvalidInput,
    StripeInvalidRequestError,
    StripeLookupKeyInUse,
    StripeMethodNotAllowed,
    StripeProductNotSellable,
)
from aa_stripe.guard import library_atomic
from aa_stripe.operations import journal
from aa_stripe.operations.journal import Outcome
from aa_stripe.operations.record import StripeOperation
from aa_stripe.validators import clean_amount, require_valid, validate_recurring, validate_stripe_currency

from .catalog_operations import LOOKUP_MARGIN, is_ours, locked_copy, request_of
from .products import StripeCatalogModel, StripePrice, StripeProduct

PRODUCT, PRICE = "product.create", "price.create"
KINDS = {StripeProduct: PRODUCT, StripePrice: PRICE}


# --- what is sent -------------------------------------------------------------------------------


def product_request(product: StripeProduct) -> dict[str, Any]:
    """What creating ``product`` sends; :class:`StripeInvalidInput` when it has no name."""
    if not (product.name or "").strip():
        raise StripeInvalidInput("A product needs a name.", field="name", code="required")
    params: dict[str, Any] = {
        "id": product.stripe_product_id,
        "name": product.name,
        "metadata": product.metadata or {},
    }
    if product.description:
        params["description"] = product.description
    if not product.active:
        params["active"] = False
    return params


def price_request(price: StripePrice) -> dict[str, Any]:
    """What creating ``price`` sends; raises for what Stripe (or the catalog) would refuse."""
    if not price.product_id:
        raise StripeInvalidInput("A price needs a product.", field="product", code="required")
    product = StripeProduct.objects.filter(stripe_product_id=price.product_id).first()
    if product is None or not product.is_sellable:
        state = (
            "not created at Stripe"
            if product is None or not product.is_created_at_stripe
            else "deleted at Stripe"
            if product.is_deleted
            else "archived (inactive) at Stripe"
        )
        raise StripeProductNotSellable(f"The product {price.product_id} is {state}: it takes no new price.")
    require_valid("currency", validate_stripe_currency, price.currency)
    if price.unit_amount is None:
        raise StripeInvalidInput("A price needs a unit amount.", field="unit_amount", code="required")
    amount = require_valid("unit_amount", clean_amount, price.unit_amount, price.currency, allow_zero=True)
    interval, count = price.recurring_interval, price.recurring_interval_count
    require_valid("recurring_interval_count", validate_recurring, interval, count)
    if price.lookup_key:
        taken = StripePrice.objects.filter(
            lookup_key=price.lookup_key, is_created_at_stripe=True, is_deleted=False
        ).exclude(pk=price.pk)
        if (holder := taken.first()) is not None:
            raise StripeLookupKeyInUse(f"The price {holder.stripe_price_id} has this lookup key already.")
    params: dict[str, Any] = {
        "product": product.stripe_product_id,
        "currency": price.currency,
        "unit_amount": amount,
        "metadata": price.metadata or {},
    }
    if interval:
        params["recurring"] = {"interval": interval, "interval_count": count or 1}
    if price.nickname:
        params["nickname"] = price.nickname
    if price.lookup_key:
        params["lookup_key"] = price.lookup_key
    if not price.active:
        params["active"] = False
    return params


# --- create -------------------------------------------------------------------------------------


def create_product(product: StripeProduct) -> dict[str, Any]:
    outcome = _create(product, request=product_request, service="products")
    return journal.raise_unless_succeeded(outcome)


def create_price(price: StripePrice) -> dict[str, Any]:
    outcome = _create(price, request=price_request, service="prices")
    error = outcome.error
    if outcome.state == StripeOperation.REFUSED and getattr(error, "param", None) == "lookup_key":
        raise StripeLookupKeyInUse(getattr(error, "message", None)) from error
    return journal.raise_unless_succeeded(outcome)


def _create(
    row: StripeCatalogModel,
    *,
    request: Callable[[Any], dict[str, Any]],
    service: str,
) -> Outcome:
    """Plan (the row saved, the request frozen), send, record. A row whose creation is unfinished
    sends its first request again, as it was frozen."""
    model = type(row)
    already = StripeMethodNotAllowed(f"This {model._meta.verbose_name} is already created at Stripe.")
    if row.is_created_at_stripe:
        raise already
    with library_atomic(using=router.db_for_write(model, instance=row)):
        current = locked_copy(row) if row.pk is not None else None
        if current is not None and current.is_created_at_stripe:
            raise already
        operation = unfinished(row) if current is not None else None
        if operation is None:
            params = request(row)  # before anything is saved
            row.save()
            kind = KINDS[model]
            key = f"{kind.split('.')[0]}:create:{uuid.uuid4()}"
            operation = journal.plan(row, kind=kind, service=service, method="create", params=params, key=key)
    return journal.execute(operation, target=row)


def unfinished(row: StripeCatalogModel) -> StripeOperation | None:
    return StripeOperation.unresolved_for(row).filter(kind=KINDS[type(row)]).first()


def unfinished_product_like(product: StripeProduct) -> StripeProduct | None:
    """Asking again for the same product (a retry after an unknown outcome) finishes that row."""
    try:
        wanted = product_request(product)
    except AaStripeError:
        return None
    return _unfinished_like(StripeProduct, wanted, ignore=("id",))


def unfinished_price_like(price: StripePrice) -> StripePrice | None:
    """Asking again for the same price (a retry after an unknown outcome) finishes that row."""
    try:
        wanted = price_request(price)
    except AaStripeError:
        return None
    return _unfinished_like(StripePrice, wanted)


def _unfinished_like(model: type[Any], wanted: dict[str, Any], ignore: tuple[str, ...] = ()) -> Any:
    for name in ignore:
        wanted.pop(name, None)
    operations = StripeOperation.objects.filter(
        kind=KINDS[model],
        state__in=StripeOperation.UNRESOLVED,
        content_type=ContentType.objects.get_for_model(model),
    ).order_by("id")
    for operation in operations:
        sent = request_of(operation)
        for name in ignore:
            sent.pop(name, None)
        if sent == wanted:
            row = model.objects.filter(pk=operation.object_id, is_created_at_stripe=False).first()
            if row is not None:
                return row
    return None


# --- lookups and recording ----------------------------------------------------------------------


def lookup_product(operation: StripeOperation) -> Outcome | None:
    """The product of our id at Stripe: None when there is none; someone else's is a refusal."""
    product_id = operation.params["id"]
    try:
        found = stripe_api.call("products", "retrieve", product_id)
    except StripeInvalidRequestError as err:
        if err.kind == "not_found":
            return None
        raise
    if is_ours(found, operation):
        return Outcome(StripeOperation.SUCCEEDED, found)
    error = StripeMethodNotAllowed(f"A different product with id {product_id!r} already exists at Stripe.")
    return Outcome(StripeOperation.REFUSED, None, error)


def lookup_price(operation: StripeOperation) -> Outcome | None:
    """Our price among its product's prices created since the first send (list filters)."""
    since = (operation.first_sent_at or operation.created) - LOOKUP_MARGIN
    params = {"product": operation.params["product"], "created": {"gte": int(since.timestamp())}}
    for found in stripe_api.iterate("prices", params):
        if is_ours(found, operation):
            return Outcome(StripeOperation.SUCCEEDED, found)
    return None


def _apply(row: StripeCatalogModel, stripe_object: dict[str, Any]) -> None:
    """Stripe made it: the row says what Stripe answered, unless a webhook already applied a newer
    state (events of the new object can arrive before its creation's answer is recorded)."""
    if row.last_event_at is None:
        row.update_from_stripe_data(stripe_object, commit=False)
    if isinstance(row, StripePrice) and not row.stripe_price_id:
        row.stripe_price_id = stripe_object.get("id") or ""
    row.is_created_at_stripe = True
    row.save()


journal.register_simple(PRODUCT, StripeProduct, _apply, lookup=lookup_product)
journal.register_simple(PRICE, StripePrice, _apply, lookup=lookup_price)
