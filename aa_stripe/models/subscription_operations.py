"""How the journal writes subscriptions to Stripe: create, cancel now, cancel at the period end.

Registered with :mod:`aa_stripe.operations.journal` when the models are imported, so that
``StripeSubscription.subscribe()``, ``create_at_stripe()``, ``cancel()``, ``end_subscriptions`` and
``reconcile_stripe_operations`` share one plan step and one recorder per kind:

- ``subscription_create`` (``subscriptions.create``): key ``subscription:<uuid>`` (a deliberate new
  attempt after Stripe refused one: ``subscription:<uuid>:<n>``); ``metadata`` names the row
  (``subscription_uuid``) and the operation (``operation``). Lookup: the customer's subscriptions
  with ``status=all`` (the default list hides canceled ones) created since the row, matched on
  ``metadata[operation]``.
- ``subscription_cancel`` (``subscriptions.cancel``) and ``subscription_cancel_at_period_end``
  (``subscriptions.update``): key ``subscription-cancel[-at-period-end]:<uuid>:<n>``, one ``n`` per
  deliberate request (a subscription set to end, reactivated at Stripe and set to end again must
  not be answered with the first request's stored answer). Neither request takes our metadata (a
  DELETE has no body; the update would stamp the cancel's id over the creation's). Lookup: the
  subscription itself (retrieve). Stripe keeps no key for a DELETE and answers a second one with
  404, so an unknown cancel is always looked up before it is sent again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.db import router
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    StripeInvalidInput,
    StripeInvalidRequestError,
    StripeMethodNotAllowed,
    StripeNoActiveCustomer,
    StripeOperationInProgress,
    StripePaymentMethodExpired,
)
from aa_stripe.guard import library_atomic
from aa_stripe.operations import journal
from aa_stripe.operations.journal import Outcome
from aa_stripe.operations.record import StripeOperation

from .base import lock_for_update
from .customers import StripeCustomer

if TYPE_CHECKING:
    from .coupons import StripeCoupon
    from .payment_methods import StripePaymentMethod
    from .plans import StripeSubscriptionPlan
    from .products import StripePrice
    from .subscriptions import StripeSubscription

logger = logging.getLogger("aa_stripe")

CREATE = "subscription_create"
CANCEL = "subscription_cancel"
CANCEL_AT_PERIOD_END = "subscription_cancel_at_period_end"
CANCEL_KINDS = (CANCEL, CANCEL_AT_PERIOD_END)
#: metadata keys the library sets on every subscription it creates (they win over the row's own)
OWN_METADATA = ("subscription_uuid", "operation")
#: Stripe's clock and ours differ a little: look a bit before the row was made.
LOOKUP_MARGIN = timedelta(minutes=10)
#: What a creation (and client_secret_for_owner) expands: the secrets stripe.js needs.
EXPAND = ("latest_invoice.confirmation_secret", "pending_setup_intent")
#: Statuses of subscriptions that still bill (their currency is the customer's).
ENDED = ("canceled", "incomplete_expired")


@dataclass
class Request:
    """What ``StripeSubscription.subscribe()`` was asked for."""

    plan: StripeSubscriptionPlan | None
    price: StripePrice | None
    coupon: StripeCoupon | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    customer: StripeCustomer | None = None
    payment_method: StripePaymentMethod | None = None
    trial_period_days: int | None = None


def _model() -> type[StripeSubscription]:
    from .subscriptions import StripeSubscription

    return StripeSubscription


def _operations(subscription: StripeSubscription, kind: str) -> Any:
    return StripeOperation.objects.filter(
        content_type=ContentType.objects.get_for_model(type(subscription)),
        object_id=str(subscription.pk),
        kind=kind,
    )


# --- create ---------------------------------------------------------------------------------------


def _uses_charges_api() -> bool:
    from .charges import uses_charges_api

    return uses_charges_api()


def check_offer(
    plan: StripeSubscriptionPlan | None,
    price: StripePrice | None,
    trial_period_days: int | None = None,
    coupon: StripeCoupon | None = None,
) -> None:
    """Refuse what Stripe would refuse about the price or plan, trial and coupon; sends nothing."""
    if price is not None:
        if not price.is_created_at_stripe:
            raise StripeInvalidInput(
                "The price is not created at Stripe yet.", field="price", code="not_at_stripe"
            )
        if price.is_deleted or not price.active:
            raise StripeInvalidInput(
                "The price is archived or deleted at Stripe: it cannot be subscribed to.",
                field="price",
                code="inactive",
            )
        if not price.recurring_interval:
            raise StripeInvalidInput(
                "The price is a one-time price: a subscription needs a recurring price.",
                field="price",
                code="one_time",
            )
    if plan is not None and not plan.is_created_at_stripe:
        raise StripeMethodNotAllowed("The plan is not created at Stripe yet.")
    if trial_period_days is not None and not 0 < trial_period_days <= 730:
        raise StripeInvalidInput(
            "A trial lasts 1 to 730 days (leave it out for none).",
            field="trial_period_days",
            code="trial_period_days",
        )
    if coupon is not None and coupon.is_deleted:
        raise StripeMethodNotAllowed(f"The coupon {coupon.coupon_id} is deleted.")


def customer_of_payment_method(
    user: Any, payment_method: StripePaymentMethod, customer: StripeCustomer | None
) -> StripeCustomer:
    """The customer whose saved ``payment_method`` will pay: it must be the user's (and ``customer``
    when one is given) and not expired."""
    owner = payment_method.customer
    if owner.user_id != getattr(user, "pk", user) or (customer is not None and customer.pk != owner.pk):
        raise StripeMethodNotAllowed("The payment method belongs to another customer.")
    if not (owner.is_active and owner.is_created_at_stripe):
        raise StripeMethodNotAllowed(
            "The payment method belongs to a customer that is no longer in use; save the card again."
        )
    if payment_method.is_expired:
        raise StripePaymentMethodExpired()
    return owner


def may_create_customer(user: Any, price: StripePrice | None) -> bool:
    """Whether subscribing should first make the user a Stripe customer (without a card): to a price
    on the PaymentIntents path, when the user has no active customer. (A legacy plan needs a card
    on file, as with aa-stripe: NO_ACTIVE_CUSTOMER otherwise.)"""
    if _uses_charges_api() or price is None:
        return False
    return StripeCustomer.get_latest_active_customer_for_user(user) is None


def _check_currency(subscription: StripeSubscription, customer: StripeCustomer) -> None:
    """Stripe bills a customer in one currency: refuse another than its running subscriptions'."""
    model = _model()
    running = (
        model.objects.filter(customer=customer, is_created_at_stripe=True)
        .exclude(status__in=ENDED)
        .exclude(pk=subscription.pk)
        .select_related("plan", "price")
    )
    currencies = {row.currency.lower() for row in running if row.currency}
    wanted = subscription.currency.lower()
    if currencies and wanted not in currencies:
        raise StripeInvalidInput(
            f"The customer's subscriptions are billed in {', '.join(sorted(currencies))}; "
            f"Stripe bills a customer in one currency, and this price is in {wanted}.",
            field="price",
            code="currency",
        )


def payment_behavior(subscription: StripeSubscription, customer: StripeCustomer) -> str:
    """How Stripe takes the first payment. Charges path: a failed first payment is an error, as
    aa-stripe did. PaymentIntents: charge the chosen or default payment method at once and let the
    customer authenticate when the bank asks (``allow_incomplete``), or, with nothing to charge,
    wait for stripe.js to collect a card (``default_incomplete``)."""
    if _uses_charges_api():
        return "error_if_incomplete"
    if subscription.default_payment_method or customer.default_payment_method_id:
        return "allow_incomplete"
    if subscription.price is None:
        # A legacy plan subscription needs a card on file, as aa-stripe's did: its callers were never
        # asked to collect one with stripe.js.
        raise StripeNoActiveCustomer("Add a card first: the customer has no payment method.")
    return "default_incomplete"


def create_params(subscription: StripeSubscription) -> dict[str, Any]:
    """The request that creates ``subscription``; raises what makes it impossible, sends nothing.

    Chooses the customer (``customer`` when active, else the user's latest active one) and sets it
    on the row: that choice is frozen with the request.
    """
    check_offer(subscription.plan, subscription.price)
    if subscription.coupon_id and subscription.coupon.is_deleted:
        raise StripeMethodNotAllowed(f"The coupon {subscription.coupon.coupon_id} is deleted.")
    customer = StripeCustomer.get_customer_to_charge(subscription.user_id, preferred=subscription.customer)
    subscription.customer = customer
    _check_currency(subscription, customer)
    if subscription.price is not None:
        item = {"price": subscription.price.stripe_price_id}
    else:
        item = {"plan": subscription.plan.stripe_plan_id}
    params: dict[str, Any] = {
        "customer": customer.stripe_customer_id,
        "items": [item],
        "metadata": {**(subscription.metadata or {}), "subscription_uuid": str(subscription.uuid)},
        "payment_behavior": payment_behavior(subscription, customer),
    }
    if not _uses_charges_api():
        # The method that pays the first invoice (after authentication, too) becomes the
        # subscription's default for renewals; the customer's own default stays as it is.
        params["payment_settings"] = {"save_default_payment_method": "on_subscription"}
        params["expand"] = list(EXPAND)
    if subscription.default_payment_method:
        params["default_payment_method"] = subscription.default_payment_method
    if subscription.trial_end is not None:
        params["trial_end"] = int(subscription.trial_end.timestamp())
    elif subscription.plan is not None and subscription.plan.trial_period_days:
        params["trial_from_plan"] = True  # the plan's trial, as aa-stripe's API version gave it
    if subscription.coupon_id:
        params["discounts"] = [{"coupon": subscription.coupon.coupon_id}]
    return params


def client_secret_of(subscription: dict[str, Any]) -> str | None:
    """The secret stripe.js needs for a Stripe subscription (expanded as ``EXPAND``), or None."""
    if subscription.get("status") == "incomplete":
        invoice = subscription.get("latest_invoice")
        secret = (invoice.get("confirmation_secret") or {}) if isinstance(invoice, dict) else {}
        return secret.get("client_secret") or None
    setup = subscription.get("pending_setup_intent")
    if subscription.get("status") in ("trialing", "active") and isinstance(setup, dict):
        return setup.get("client_secret") or None
    return None


def _plan_new_create(subscription: StripeSubscription) -> StripeOperation:
    """Plan the creation of a row without an unfinished one (inside the caller's transaction)."""
    params = create_params(subscription)
    subscription.save()
    earlier = _operations(subscription, CREATE).count()
    key = f"subscription:{subscription.uuid}" + (f":{earlier + 1}" if earlier else "")
    return journal.plan(
        subscription,
        kind=CREATE,
        service="subscriptions",
        method="create",
        params=params,
        key=key,
        fresh_key=True,
    )


def plan_create(subscription: StripeSubscription) -> StripeOperation:
    """The operation that creates the saved row at Stripe: its unfinished one (sent again exactly as
    it went), or a new one, committed before anything is sent."""
    with library_atomic(using=router.db_for_write(type(subscription), instance=subscription)):
        if subscription.pk is None:
            subscription.save()
        lock_for_update(subscription)
        if subscription.is_created_at_stripe:
            raise StripeMethodNotAllowed("This subscription is already created at Stripe.")
        unfinished = StripeOperation.unresolved_for(subscription).filter(kind=CREATE).first()
        return unfinished or _plan_new_create(subscription)


def plan_subscribe(user: Any, request: Request) -> tuple[StripeOperation | None, StripeSubscription, bool]:
    """``(operation, row, made_now)`` for a request to subscribe: the same request not finished yet
    is reused (its row, its frozen request: whatever payment method or trial this one names), a
    subscription of the user to the same offer that waits for its first payment is returned with no
    operation (the customer pays that one), else a new row is planned, committed."""
    model = _model()
    with library_atomic(using=router.db_for_write(model)):
        # Requests for one offer are serialised on its row lock: a second one waits for the first's
        # plan to commit, and finds it.
        lock_for_update(request.price if request.price is not None else request.plan)
        waiting = _waiting_row(model, user, request)
        if waiting is not None:
            return None, waiting, False
        pending = _pending_row(model, user, request)
        if pending is not None:
            lock_for_update(pending)  # create_at_stripe() of the same row plans under this lock
        if pending is not None and not pending.is_created_at_stripe:
            if not _same_card(pending, request):
                raise StripeOperationInProgress(
                    "An earlier request to subscribe to this, with another card, is not finished yet "
                    "(its answer was lost); try again in a minute."
                )
            unfinished = StripeOperation.unresolved_for(pending).filter(kind=CREATE).first()
            return unfinished or _plan_new_create(pending), pending, False
        row = model(
            user=user,
            plan=request.plan,
            price=request.price,
            coupon=request.coupon,
            metadata=request.metadata,
            customer=request.customer,
            default_payment_method=(
                request.payment_method.stripe_payment_method_id if request.payment_method is not None else ""
            ),
        )
        if request.trial_period_days:
            row.trial_end = timezone.now() + timedelta(days=request.trial_period_days)
        return _plan_new_create(row), row, True


def _pending_row(model: type[StripeSubscription], user: Any, request: Request) -> StripeSubscription | None:
    """The newest row of the same request whose creation is unfinished; rows without any create
    operation count too (an older version's row whose outcome was unknown, or one never sent)."""
    candidates = model.objects.filter(
        user_id=getattr(user, "pk", user),
        plan=request.plan,
        price=request.price,
        coupon=request.coupon,
        is_created_at_stripe=False,
    ).order_by("-pk")
    if request.customer is not None:
        candidates = candidates.filter(customer=request.customer)
    # Not the payment method nor the trial: a retry naming the card the first attempt charged by
    # default must finish that attempt, not subscribe a second time.
    rows = [row for row in candidates if row.metadata == request.metadata]
    if not rows:
        return None
    states: dict[str, set[str]] = {}
    for object_id, state in StripeOperation.objects.filter(
        content_type=ContentType.objects.get_for_model(model),
        object_id__in=[str(row.pk) for row in rows],
        kind=CREATE,
    ).values_list("object_id", "state"):
        states.setdefault(object_id, set()).add(state)
    for row in rows:
        found = states.get(str(row.pk))
        if found is None or found & set(StripeOperation.UNRESOLVED):
            return row
    return None


def _same_card(pending: StripeSubscription, request: Request) -> bool:
    """Whether finishing ``pending``'s frozen request charges the card this request names (any
    card, when it names none): a retry with another card must not charge the first one."""
    if request.payment_method is None:
        return True
    named = request.payment_method.stripe_payment_method_id
    if pending.default_payment_method:
        return pending.default_payment_method == named
    customer = pending.customer or request.payment_method.customer
    return customer.default_payment_method_id == named


def _waiting_row(model: type[StripeSubscription], user: Any, request: Request) -> StripeSubscription | None:
    """The user's subscription of the same request (offer, coupon, metadata, customer) made at
    Stripe whose first payment waits for the customer (``incomplete``): asking again must not make a
    second one to pay. A card this request names pays it through its client secret (stripe.js)."""
    candidates = model.objects.filter(
        user_id=getattr(user, "pk", user),
        plan=request.plan,
        price=request.price,
        coupon=request.coupon,
        is_created_at_stripe=True,
        status=model.STATUS_INCOMPLETE,
    ).order_by("-pk")
    if request.customer is not None:
        candidates = candidates.filter(customer=request.customer)
    return next((row for row in candidates if row.metadata == request.metadata), None)


def lookup_create(operation: StripeOperation) -> Outcome | None:
    """The subscription at Stripe: the customer's, of any status, made since the row was."""
    model = _model()
    params = operation.params
    row = model.objects.filter(pk=operation.object_id).first()
    since = min(row.created, operation.created) if row is not None else operation.created
    query = {
        "customer": params.get("customer"),
        "status": "all",
        "created": {"gt": int((since - LOOKUP_MARGIN).timestamp()) - 1},  # i.e. gte
    }
    sent = params.get("metadata") or {}

    def legacy(found: dict[str, Any]) -> bool:
        # Made by an older version (no operation id, no uuid in metadata) under this key: the
        # same plan and metadata, and no row of ours holds it.
        own = {key: value for key, value in sent.items() if key not in OWN_METADATA}
        plans = [(item.get("plan") or {}).get("id") for item in (found.get("items") or {}).get("data", [])]
        asked = [item.get("plan") or item.get("price") for item in params.get("items", [])]
        made = found.get("created") or 0
        return (
            # before this operation was planned (so not its own), after the row was made
            (row is None or made >= int(row.created.timestamp()) - 1)
            and made <= int(operation.created.timestamp())
            and found.get("metadata") == {key: _as_sent(value) for key, value in own.items()}
            and plans == asked
            and not model.objects.filter(stripe_subscription_id=found.get("id")).exists()
        )

    for found in stripe_api.iterate("subscriptions", query):
        metadata = found.get("metadata") or {}
        ours = metadata.get("operation") == str(operation.uuid) if "operation" in metadata else legacy(found)
        if ours:
            return Outcome(StripeOperation.SUCCEEDED, found)
    return None


def _as_sent(value: Any) -> str:
    """A metadata value as Stripe stores it (stripe-python encodes booleans in lower case)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _locked_row(operation: StripeOperation, target: StripeSubscription | None) -> StripeSubscription | None:
    """The operation's row, locked (inside the recorder's transaction), the caller's instance when
    it gave one; None when the row was deleted: the operation still keeps what Stripe did."""
    model = _model()
    if target is None:
        return model._base_manager.select_for_update().filter(pk=operation.object_id).first()
    try:
        lock_for_update(target)
    except model.DoesNotExist:
        return None
    return target


def record_create(operation: StripeOperation, outcome: Outcome, target: StripeSubscription | None) -> None:
    with library_atomic(using=router.db_for_write(_model())):
        row = _locked_row(operation, target)
        if not journal.finish(operation, outcome) or row is None:
            if row is None and outcome.succeeded:
                logger.error(
                    "Stripe subscription %s was created for a deleted row (operation %s)",
                    operation.stripe_id,
                    operation.key,
                )
            return
        if outcome.succeeded and not row.is_created_at_stripe:
            row.set_stripe_data(outcome.result or {})
        elif outcome.succeeded and row.stripe_subscription_id != operation.stripe_id:
            logger.error(
                "Subscription #%s: Stripe made %s, the row holds %s (operation %s)",
                row.pk,
                operation.stripe_id,
                row.stripe_subscription_id,
                operation.key,
            )
        elif outcome.state == StripeOperation.REFUSED:
            row.stripe_response = getattr(outcome.error, "json_body", None) or {}
            row.save(update_fields=["stripe_response", "updated"])


# --- cancel ---------------------------------------------------------------------------------------


def plan_cancel(subscription: StripeSubscription, at_period_end: bool) -> StripeOperation:
    """The operation that cancels ``subscription``: the unfinished one of the same request, or a
    new one, committed before anything is sent. Another cancel unfinished: in progress."""
    kind = CANCEL_AT_PERIOD_END if at_period_end else CANCEL
    with library_atomic(using=router.db_for_write(type(subscription), instance=subscription)):
        lock_for_update(subscription)
        unfinished = StripeOperation.unresolved_for(subscription).filter(kind__in=CANCEL_KINDS).first()
        if unfinished is not None and unfinished.kind == kind:
            return unfinished  # the same request again: finish it as it went
        subscription._refuse_if_canceled(at_period_end)
        if unfinished is not None:
            raise StripeOperationInProgress(
                "Another cancellation of this subscription is not finished yet; try again later."
            )
        done = _operations(subscription, kind).exclude(state__in=StripeOperation.UNRESOLVED).count()
        prefix = "subscription-cancel-at-period-end" if at_period_end else "subscription-cancel"
        operation = journal.plan(
            subscription,
            kind=kind,
            service="subscriptions",
            method="update" if at_period_end else "cancel",
            params={"cancel_at_period_end": True} if at_period_end else {},
            key=f"{prefix}:{subscription.uuid}:{done + 1}",
            fresh_key=True,  # the count goes down when finished operations are pruned
            ids=(subscription.stripe_subscription_id,),
        )
        operation.params = {name: value for name, value in operation.params.items() if name != "metadata"}
        operation.save(update_fields=["params"])
        return operation


def lookup_cancel(operation: StripeOperation) -> Outcome | None:
    """The subscription as Stripe has it: done when canceled (or set to end, for that kind)."""
    try:
        found = stripe_api.call("subscriptions", "retrieve", *operation.ids)
    except StripeInvalidRequestError as err:
        if err.kind != "not_found":
            raise
        return Outcome(StripeOperation.REFUSED, err.json_body, err)  # gone at Stripe: canceled
    canceled = found.get("status") == "canceled"
    if canceled or (operation.kind == CANCEL_AT_PERIOD_END and found.get("cancel_at_period_end")):
        return Outcome(StripeOperation.SUCCEEDED, found)
    return None


def is_gone(outcome: Outcome) -> bool:
    """Stripe refused because the subscription no longer exists there, i.e. it is canceled."""
    error = outcome.error
    return outcome.state == StripeOperation.REFUSED and getattr(error, "kind", None) == "not_found"


def record_cancel(operation: StripeOperation, outcome: Outcome, target: StripeSubscription | None) -> None:
    model = _model()
    if outcome.state == StripeOperation.UNKNOWN:
        operation.needs_lookup = True  # a DELETE has no idempotency key: never sent blind twice
    with library_atomic(using=router.db_for_write(model)):
        row = _locked_row(operation, target)
        if not journal.finish(operation, outcome) or row is None:
            return
        if outcome.succeeded:
            row.canceled_at = row.canceled_at or timezone.now()
            row.set_stripe_data(outcome.result or {})
        elif is_gone(outcome):
            row.canceled_at = row.canceled_at or timezone.now()
            known = (
                row.stripe_response if row.stripe_response.get("id") else {"id": row.stripe_subscription_id}
            )
            row.set_stripe_data({**known, "status": model.STATUS_CANCELED})


journal.register(CREATE, lookup=lookup_create, record=record_create)
journal.register(CANCEL, lookup=lookup_cancel, record=record_cancel)
journal.register(CANCEL_AT_PERIOD_END, lookup=lookup_cancel, record=record_cancel)


def first_payment_attempted(subscription: StripeSubscription) -> bool:
    """Whether Stripe was asked to charge at creation (``allow_incomplete`` or the legacy
    ``error_if_incomplete``): an ``incomplete`` row then means the bank wants the customer (or
    declined), not merely that no card was given yet."""
    operation = _operations(subscription, CREATE).order_by("-created").first()
    return operation is not None and operation.params.get("payment_behavior") != "default_incomplete"
