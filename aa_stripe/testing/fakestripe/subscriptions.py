"""Subscriptions of the fake Stripe at the current API: the gaps of localstripe 1.15 the library meets.

Imported by :mod:`aa_stripe.testing.fakestripe.server` (which documents the other shims, the subscription
``discounts``, ``created`` list filter and cancel among them). Each patch says which gap it fills; what
they do follows Stripe's API reference for ``/v1/subscriptions`` at the pinned API version (the parameters
of stripe-python 16's ``SubscriptionCreateParams`` / ``SubscriptionUpdateParams``) and Stripe's
subscription guides (payment behaviours, trials, SCA), never more than the library and its tests need.

What a subscription's first invoice does, by ``payment_behavior`` (localstripe knows allow_incomplete and
error_if_incomplete only, and pays the first invoice in its own way):

* ``default_incomplete``: the invoice is finalized and ``open``, its PaymentIntent in
  ``requires_payment_method``; nothing is attempted. The subscription is ``incomplete`` until the
  PaymentIntent is confirmed with the invoice's ``confirmation_secret`` (then ``active``).
* ``allow_incomplete`` (Stripe's default): the invoice is paid at once with ``default_payment_method`` or
  the customer's default (``invoice_settings.default_payment_method``, else ``default_source``). Paid:
  ``active``. A card asking for authentication (as payment_intents.py decides: 4000002760003184 always,
  4000002500003155 unless set up for off-session use): ``incomplete``, PaymentIntent ``requires_action``.
  Declined: ``incomplete``, PaymentIntent ``requires_payment_method`` with ``last_payment_error``; HTTP 200.
* ``error_if_incomplete``: as allow_incomplete when paid; otherwise HTTP 402 and no subscription.

An incomplete subscription stays incomplete after a failed attempt or failed authentication (the
customer may try again until it expires, 23 hours later; test-only ``POST /v1/subscriptions/{id}/_expire``
expires it at once). With a trial (``trial_period_days``, ``trial_from_plan``, ``trial_end``) the first
invoice is a paid $0 invoice, the subscription ``trialing``; with ``default_incomplete``, or when the
customer has no payment method, a ``pending_setup_intent`` collects a card.

Limits: one item per subscription (localstripe's); proration and plan changes stay localstripe's. Renewals:
invoices.py's test-only ``POST /v1/subscriptions/{id}/_renew``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from dateutil.relativedelta import relativedelta
from localstripe import resources
from localstripe import server as ls_server
from localstripe.errors import UserError
from localstripe.resources import (
    Customer,
    Event,
    Invoice,
    PaymentIntent,
    PaymentMethod,
    Plan,
    SetupIntent,
    StripeObject,
    Subscription,
    SubscriptionItem,
    try_convert_to_bool,
    try_convert_to_int,
)

from aa_stripe.testing.fakestripe import intents
from aa_stripe.testing.fakestripe.catalog import Price
from aa_stripe.testing.fakestripe.intents import _refused, _send
from aa_stripe.testing.fakestripe.payment_intents import _NEXT_ACTION, _charge, _set_up_for_off_session

_BEHAVIORS = ("allow_incomplete", "default_incomplete", "error_if_incomplete")
_SAVE_DEFAULT = ("off", "on_subscription")
_MAX_TRIAL_DAYS = 730  # Stripe's limit on trial_period_days
_DAY = 86400


def _store(kind: str, id: Any) -> Any:
    return resources.store.get(f"{kind}:{id}") if isinstance(id, str) else None


def _in_trial(sub: Subscription) -> bool:
    trial_end = getattr(sub, "trial_end", None)
    return isinstance(trial_end, int) and trial_end > time.time()


# --- Events: customer.subscription.updated --------------------------------------------------------------
# localstripe sends customer.subscription.created and .deleted only. Stripe sends
# customer.subscription.updated whenever the subscription changes after it was created (status,
# default_payment_method, cancel_at_period_end, items, pending_setup_intent, metadata...), with
# data.previous_attributes holding the old values of what changed. Not for the change into `canceled`,
# which customer.subscription.deleted announces.
@contextmanager
def _announcing(sub: Subscription) -> Iterator[None]:
    before = sub._export() if sub.__dict__.get("_announced") else None
    yield
    if before is None or _store("subscription", sub.id) is not sub:
        return
    after = sub._export()
    if after.get("status") == "canceled" and before.get("status") != "canceled":
        return
    previous = {key: value for key, value in before.items() if after.get(key) != value}
    if previous:
        _send("customer.subscription.updated", sub, previous)


def _announces(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self: Subscription, *args: Any, **kwargs: Any) -> Any:
        with _announcing(self):
            return method(self, *args, **kwargs)

    return wrapper


# --- Prices as subscription items ------------------------------------------------------------------------
# localstripe's subscription items take Plans only. Stripe takes `items[][price]`, a recurring price, and
# shows each item with both `price` (the Price) and `plan` (a plan-shaped view of the same recurring
# price, same id). A _PricePlan is that view, stored as plan:<price id> so localstripe's items and
# invoices use it; it reads the price live, is left out of GET /v1/plans and sends no plan.* event (Stripe
# sends none when a subscription is made). Stripe refuses (400, param items[n][price]) an unknown price
# (resource_missing), an inactive one and a one-time one.
class _PricePlan(Plan):
    def __init__(self, price: Price) -> None:  # not Plan.__init__: no validation, no plan.created
        StripeObject.__init__(self, price.id)
        self.created = price.created
        self._price_id = price.id
        self.billing_scheme = "per_unit"
        self.tiers = None
        self.tiers_mode = None

    def _price(self) -> Price:
        return resources.store[f"price:{self._price_id}"]

    active = property(lambda self: self._price().active)
    amount = property(lambda self: self._price().unit_amount)
    currency = property(lambda self: self._price().currency)
    interval = property(lambda self: self._price().recurring["interval"])
    interval_count = property(lambda self: self._price().recurring["interval_count"])
    metadata = property(lambda self: dict(self._price().metadata or {}))
    nickname = property(lambda self: self._price().nickname)
    product = property(lambda self: self._price().product)
    trial_period_days = property(lambda self: self._price().recurring.get("trial_period_days"))
    usage_type = property(lambda self: self._price().recurring.get("usage_type", "licensed"))


def _plan_for(price: Price) -> Plan:
    return _store("plan", price.id) or _PricePlan(price)


_plan_list = Plan.__dict__["_api_list_all"].__func__


@classmethod
def _plan_list_without_prices(cls: type[Plan], url: str, **kwargs: Any) -> Any:
    listed = _plan_list(cls, url, **kwargs)
    listed._list = [obj for obj in listed._list if not isinstance(obj, _PricePlan)]
    return listed


Plan._api_list_all = _plan_list_without_prices


def _offer(item: Any, index: int) -> Price | Plan:
    """The price or plan an ``items[index]`` entry subscribes to, refused as Stripe refuses it."""
    if type(item) is not dict:
        raise _refused("Invalid object", param=f"items[{index}]")
    if item.get("price") is not None and item.get("plan") is not None:
        raise _refused("You may only specify one of these parameters: plan, price.", param=f"items[{index}]")
    if item.get("price") is None:
        plan = _store("plan", item.get("plan"))
        if plan is None:
            raise _refused(
                f"No such plan: '{item.get('plan')}'", param=f"items[{index}][plan]", code="resource_missing"
            )
        return plan
    param = f"items[{index}][price]"
    price = _store("price", item["price"])
    if price is None:
        raise _refused(f"No such price: '{item['price']}'", param=param, code="resource_missing")
    if not price.active:
        raise _refused("The price specified is inactive. This field only accepts active prices.", param=param)
    if price.type != "recurring":
        raise _refused(
            "The price specified is set to `type=one_time` but this field only accepts prices with "
            "`type=recurring`.",
            param=param,
        )
    return price


def _as_plan_items(items: list[dict[str, Any]], offers: list[Price | Plan]) -> list[dict[str, Any]]:
    """localstripe's shape: every item names a plan (a price's _PricePlan). Call once nothing can fail."""
    converted = []
    for item, offer in zip(items, offers, strict=True):
        item = {key: value for key, value in item.items() if key != "price"}
        item["plan"] = _plan_for(offer).id if isinstance(offer, Price) else offer.id
        converted.append(item)
    return converted


def _price_view(plan: Plan) -> dict[str, Any]:
    """A legacy plan as the Price Stripe shows for it on subscription items (same id)."""
    return {
        "id": plan.id,
        "object": "price",
        "active": plan.active,
        "billing_scheme": plan.billing_scheme,
        "created": plan.created,
        "currency": plan.currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": dict(plan.metadata or {}),
        "nickname": plan.nickname,
        "product": plan.product,
        "recurring": {
            "interval": plan.interval,
            "interval_count": plan.interval_count,
            "meter": None,
            "trial_period_days": plan.trial_period_days,
            "usage_type": plan.usage_type,
        },
        "tax_behavior": "unspecified",
        "tiers_mode": plan.tiers_mode,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": plan.amount if plan.billing_scheme == "per_unit" else None,
        "unit_amount_decimal": str(plan.amount) if plan.billing_scheme == "per_unit" else None,
    }


# --- Billing periods on items ----------------------------------------------------------------------------
# Since API 2025-03-31 the billing period is on each subscription item (current_period_start/_end; the
# subscription's own fields were removed, kept here as localstripe has them). localstripe computes one
# interval from the start date, ignoring interval_count and trials. Stripe: during a trial the period is
# the trial (trial_start to trial_end); otherwise interval_count intervals from the start (or the trial's
# end). Items also name their subscription and show `price` (see above).
_STEP = {
    "day": lambda n: relativedelta(days=n),
    "week": lambda n: relativedelta(weeks=n),
    "month": lambda n: relativedelta(months=n),
    "year": lambda n: relativedelta(years=n),
}


def _item_period(self: SubscriptionItem) -> dict[str, int]:
    sub = _store("subscription", self._subscription)
    if sub is None:
        start = int(time.time())
    elif getattr(sub, "trial_start", None) and isinstance(sub.trial_end, int):
        if _in_trial(sub):
            return {"start": sub.trial_start, "end": sub.trial_end}
        start = sub.trial_end
    else:
        start = sub.start_date
    count = self.plan.interval_count or 1
    # Each renewal (invoices.py's test-only POST /v1/subscriptions/{id}/_renew) moves the period one
    # interval on, counted from the anchor as Stripe does (Jan 31 + 1 month: Feb 28, + 2 months: Mar 31).
    renewals = sub.__dict__.get("_renewals", 0) if sub is not None else 0
    anchor = datetime.fromtimestamp(start, tz=UTC)
    begin = anchor + _STEP[self.plan.interval](count * renewals)
    end = anchor + _STEP[self.plan.interval](count * (renewals + 1))
    return {"start": int(begin.timestamp()), "end": int(end.timestamp())}


_item_export = SubscriptionItem._export


def _item_export_current(self: SubscriptionItem, expand: Any = None) -> dict[str, Any]:
    obj = _item_export(self, expand=expand)
    period = self._current_period()
    obj["current_period_start"], obj["current_period_end"] = period["start"], period["end"]
    obj["subscription"] = self._subscription
    obj["price"] = (
        self.plan._price()._export() if isinstance(self.plan, _PricePlan) else _price_view(self.plan)
    )
    obj.pop(
        "invoice", None
    )  # localstripe's invoices mark the items they bill; Stripe's items have no such field
    obj.setdefault("discounts", [])
    obj.setdefault("billing_thresholds", None)
    return obj


SubscriptionItem._current_period = _item_period
SubscriptionItem._export = _item_export_current


# --- Creation: parameters ----------------------------------------------------------------------------------
# localstripe refuses payment_behavior=default_incomplete, payment_settings and default_payment_method,
# ignores trial_from_plan and leaves a trial subscription `incomplete` without an invoice. Stripe checks,
# before creating anything: the items (above); default_payment_method, a payment method attached to the
# customer (400 resource_missing); one currency per customer ("You cannot combine currencies on a single
# customer", once it has subscriptions in another); trial_period_days at most 730.
def _default_payment_method(value: Any, customer: Customer) -> str | None:
    if value in (None, ""):
        return None
    param = "default_payment_method"
    legacy = isinstance(value, str) and any(source.id == value for source in customer.sources._list)
    if not legacy and _store("payment_method", value) is None:
        raise _refused(f"No such PaymentMethod: '{value}'", param=param, code="resource_missing")
    if not legacy and PaymentMethod._api_retrieve(value).customer != customer.id:
        raise _refused(
            f"The customer does not have a payment method with the ID {value}. "
            "The payment method must be attached to the customer.",
            param=param,
            code="resource_missing",
        )
    return value


def _payment_settings(value: Any) -> dict[str, Any]:
    settings = {
        "payment_method_options": None,
        "payment_method_types": None,
        "save_default_payment_method": "off",
    }
    if value in (None, ""):
        return settings
    if type(value) is not dict:
        raise _refused("Invalid object", param="payment_settings")
    for key, given in value.items():
        save = key == "save_default_payment_method" and given in _SAVE_DEFAULT
        types = key == "payment_method_types" and type(given) is list and all(type(t) is str for t in given)
        if save or types:
            settings[key] = given
        else:
            raise _refused(f"Invalid payment_settings[{key}]: {given}", param=f"payment_settings[{key}]")
    return settings


def _check_currency(customer: str, currency: str) -> None:
    # Stripe: a customer is billed in one currency while it has an active subscription (or schedule,
    # discount, quote, invoice item) in it; ended subscriptions do not hold the currency.
    held = {
        sub.currency
        for key, sub in resources.store.items()
        if key.startswith("subscription:")
        and sub.customer == customer
        and getattr(sub, "currency", None)
        and sub.status not in ("canceled", "incomplete_expired")
    }
    if held and currency not in held:
        raise _refused(
            "You cannot combine currencies on a single customer. This customer has an active subscription, "
            "subscription schedule, discount, quote, or invoice item with currency "
            f"{next(iter(held))}."
        )


def _trial_end(
    offer: Price | Plan, trial_end: Any, trial_period_days: Any, trial_from_plan: Any
) -> int | None:
    now = int(time.time())
    from_plan = try_convert_to_bool(trial_from_plan) if trial_from_plan is not None else False
    if type(from_plan) is not bool:
        raise _refused(f"Invalid boolean: {trial_from_plan}", param="trial_from_plan")
    if trial_end is not None:
        if from_plan:
            raise _refused(
                "You may only specify one of these parameters: trial_end, trial_from_plan.", param="trial_end"
            )
        if trial_end == "now":
            return None
        end = try_convert_to_int(trial_end)
        if type(end) is not int or end <= now:
            raise _refused(
                "Invalid timestamp: must be an integer Unix timestamp in the future.", param="trial_end"
            )
        return end
    if trial_period_days is not None:
        days = try_convert_to_int(trial_period_days)
        if type(days) is not int or not 0 <= days <= _MAX_TRIAL_DAYS:
            raise _refused(
                f"Invalid trial_period_days: must be an integer between 0 and {_MAX_TRIAL_DAYS}.",
                param="trial_period_days",
            )
        return now + days * _DAY if days else None
    if from_plan:
        days = (
            offer.recurring.get("trial_period_days") if isinstance(offer, Price) else offer.trial_period_days
        )
        return now + days * _DAY if days else None
    return None


_subscription_init = Subscription.__init__


def _subscription_init_current(
    self: Subscription,
    customer: Any = None,
    items: Any = None,
    payment_behavior: Any = "allow_incomplete",
    payment_settings: Any = None,
    default_payment_method: Any = None,
    trial_end: Any = None,
    trial_period_days: Any = None,
    trial_from_plan: Any = None,
    collection_method: Any = "charge_automatically",
    **kwargs: Any,
) -> None:
    if payment_behavior not in _BEHAVIORS:
        raise _refused(
            f"Invalid payment_behavior: must be one of {', '.join(_BEHAVIORS)}", param="payment_behavior"
        )
    if collection_method != "charge_automatically":
        raise _refused(
            "The fake supports collection_method=charge_automatically only.", param="collection_method"
        )
    if items is None and kwargs.get("plan") is not None:  # legacy `plan=` and `quantity=`
        items = [{"plan": kwargs.pop("plan"), "quantity": kwargs.pop("quantity", None)}]
    if type(items) is not list or not items:
        raise _refused("Missing required param: items.", param="items", code="parameter_missing")
    offers = [_offer(item, i) for i, item in enumerate(items)]
    cus = Customer._api_retrieve(customer) if isinstance(customer, str) else None
    if cus is None:
        raise _refused("Missing required param: customer.", param="customer", code="parameter_missing")
    default_pm = _default_payment_method(default_payment_method, cus)
    settings = _payment_settings(payment_settings)
    _check_currency(cus.id, offers[0].currency)
    trial = _trial_end(offers[0], trial_end, trial_period_days, trial_from_plan)
    # Read by _first_invoice, which localstripe's __init__ calls (as _create_invoice) once it is stored.
    self._behavior = payment_behavior
    self._trial_until = trial
    self.default_payment_method = default_pm
    self.payment_settings = settings
    self.pending_setup_intent = None
    self.currency = offers[0].currency
    self.collection_method = "charge_automatically"
    _subscription_init(
        self,
        customer=customer,
        items=_as_plan_items(items, offers),
        payment_behavior="error_if_incomplete"
        if payment_behavior == "error_if_incomplete"
        else "allow_incomplete",
        **kwargs,
    )
    self.trial_from_plan = bool(try_convert_to_bool(trial_from_plan))
    if self.billing_cycle_anchor is None:  # Stripe: the start, or the end of the trial
        self.billing_cycle_anchor = self.trial_end or self.start_date
    self._announced = True  # customer.subscription.created is scheduled: later changes are updates


Subscription.__init__ = _subscription_init_current


# --- Creation: the first invoice ---------------------------------------------------------------------------
# See the module docstring for what each payment_behavior does. The invoice (billing_reason
# subscription_create) gets its PaymentIntent (payment_method_types card, description "Subscription
# creation", event payment_intent.created). Events besides localstripe's invoice.created and
# customer.subscription.created: paid: charge.succeeded, payment_intent.succeeded, invoice.paid,
# invoice.payment_succeeded; authentication asked: payment_intent.requires_action,
# invoice.payment_action_required; declined: charge.failed, payment_intent.payment_failed,
# invoice.payment_failed. error_if_incomplete and no payment method: 400 (localstripe: 404, subscription
# left behind); needing authentication: 402 invoice_payment_intent_requires_action; declined: the card's
# 402; no subscription in each case.
_NO_PAYMENT_METHOD = (
    "This customer has no attached payment source or default payment method. Please consider adding a "
    "default payment method. For more information, visit "
    "https://stripe.com/docs/billing/subscriptions/payment-methods-setting#payment-method-priority."
)
_REQUIRES_ACTION = (
    "This payment requires additional user action before it can be completed successfully. Payment can "
    "be completed using the PaymentIntent associated with the invoice. For more details see: "
    "https://stripe.com/docs/billing/subscriptions/overview#requires-action"
)


@contextmanager
def _held_events() -> Iterator[list[Event]]:
    """Hold the events scheduled meanwhile; they are sent (in order) at the end."""
    scheduler = resources.schedule_webhook
    held: list[Event] = []
    resources.schedule_webhook = held.append
    try:
        yield held
    finally:
        resources.schedule_webhook = scheduler
        for event in held:
            scheduler(event)


def _forget(sub: Subscription) -> None:
    del resources.store[f"subscription:{sub.id}"]  # as localstripe's error_if_incomplete failure does


def _subscription_invoice(
    sub: Subscription, billing_reason: str, adjust: Callable[[Invoice], None] | None = None
) -> Invoice:
    """A draft invoice of the subscription's items for its current period; invoice.created shows it as
    it is once ``adjust`` has shaped it. Also used by renewals (invoices.py)."""
    with _held_events() as held:
        invoice = Invoice(
            customer=sub.customer,
            subscription=sub.id,
            items=list(sub.items._list),
            tax_percent=sub.tax_percent,
            default_tax_rates=[tr.id for tr in (sub.default_tax_rates or [])],
            date=sub.current_period_start,
        )
        invoice.billing_reason = billing_reason
        if adjust is not None:
            adjust(invoice)
        invoice._discount = _discount_amount(invoice)  # kept: a coupon deleted later changes nothing
        for event in held:  # invoice.created as it is now
            if event.type == "invoice.created" and event.data["object"]["id"] == invoice.id:
                event.data = {"object": invoice._export()}
    return invoice


def _payment_method_of(sub: Subscription) -> Any:
    """What pays the subscription's invoices: its default_payment_method, else the customer's
    invoice_settings.default_payment_method, else the customer's default source (or None)."""
    if sub.default_payment_method:
        return PaymentMethod._api_retrieve(sub.default_payment_method)
    return Customer._api_retrieve(sub.customer)._get_default_payment_method_or_source()


def _invoice_intent(invoice: Invoice, description: str) -> PaymentIntent:
    """The PaymentIntent paying the invoice (event payment_intent.created)."""
    pi = PaymentIntent(
        amount=invoice.total,
        currency=invoice.currency,
        customer=invoice.customer,
        payment_method_types=["card"],
        description=description,
    )
    invoice.payment_intent, pi.invoice = pi.id, invoice.id
    _send("payment_intent.created", pi)
    return pi


def _zero_trial_lines(invoice: Invoice) -> None:  # Stripe: a $0 invoice for the trial
    for line in invoice.lines._list:
        if line.type == "subscription":
            line.amount = 0
            line.description = f"Trial period for {line.plan.name}"


def _first_invoice(self: Subscription) -> None:
    type(self)._discount_new(self)  # server.py: the discounts asked for, before the invoice is made
    behavior = self._behavior
    trial = self._trial_until
    if trial is not None:
        self.trial_start, self.trial_end = int(time.time()), trial
    invoice = _subscription_invoice(
        self, "subscription_create", _zero_trial_lines if trial is not None else None
    )
    invoice._finalize()
    pm = _payment_method_of(self)
    if invoice.total <= 0:
        invoice._on_payment_success()  # invoice.paid, invoice.payment_succeeded; active or trialing
        if trial is not None and (behavior == "default_incomplete" or pm is None):
            self.pending_setup_intent = SetupIntent(customer=self.customer, usage="off_session").id
        return
    pi = _invoice_intent(invoice, "Subscription creation")
    if behavior == "default_incomplete":
        return
    if pm is None:
        if behavior == "error_if_incomplete":
            _forget(self)
            raise _refused(_NO_PAYMENT_METHOD, code="resource_missing")
        return
    pi.payment_method = pm.id
    pi._last_error, pi._authentication_failed, pi._replaced, pi.next_action = None, False, False, None
    if pm._requires_authentication() and not _set_up_for_off_session(pm):
        pi.next_action = dict(_NEXT_ACTION)
        _send("payment_intent.requires_action", pi)
        if behavior == "error_if_incomplete":
            _forget(self)
            raise UserError(
                402,
                _REQUIRES_ACTION,
                {"code": "invoice_payment_intent_requires_action", "payment_intent": pi._export()},
            )
        _send("invoice.payment_action_required", invoice)
        return
    try:
        _charge(pi, pm)  # paid: the subscription active (below); declined: raises the card's 402
    except UserError as err:
        if err.code != 402 or behavior == "error_if_incomplete":
            _forget(self)
            raise
        # allow_incomplete: HTTP 200, the subscription incomplete, its PaymentIntent awaiting another card


# --- Discounts on invoices -------------------------------------------------------------------------------
# localstripe has no discounts: its invoices total the lines. Stripe takes the subscription's coupon off
# each invoice the discount covers (duration once: the first invoice, billing_reason subscription_create;
# repeating: invoices dated before the discount's end; forever: all): percent_off of the subtotal, or
# amount_off (at most the subtotal). The amount is fixed when the invoice is made (a coupon deleted later
# leaves made invoices as they are); amount_due, amount_paid and the PaymentIntent's amount follow total.
def _discount_amount(invoice: Invoice) -> int:
    sub = _store("subscription", invoice.subscription)
    discount = getattr(sub, "discount", None) if sub is not None else None
    if not discount:
        return 0
    coupon = _store("coupon", discount["source"]["coupon"])
    if coupon is None:
        return 0
    if coupon.duration == "once" and invoice.billing_reason != "subscription_create":
        return 0
    if (
        coupon.duration == "repeating"
        and discount["end"] is not None
        and (invoice.date or 0) >= discount["end"]
    ):
        return 0
    subtotal = invoice.subtotal
    if coupon.percent_off is not None:
        return round(subtotal * coupon.percent_off / 100)
    return min(coupon.amount_off or 0, subtotal)


_invoice_total = Invoice.total


def _invoice_total_discounted(self: Invoice) -> int:
    return max(0, _invoice_total.fget(self) - getattr(self, "_discount", 0))


Invoice.total = property(_invoice_total_discounted)


_create_invoice = Subscription._create_invoice


def _create_invoice_current(self: Subscription) -> None:
    if self.latest_invoice is None and "_behavior" in self.__dict__:
        _first_invoice(self)
    else:  # later invoices (a change of interval): localstripe's
        _create_invoice(self)


Subscription._create_invoice = _create_invoice_current


# --- Paying the first invoice later: confirm, authentication ------------------------------------------------
# Paid (the PaymentIntent confirmed with a card, or authenticated): Stripe sends invoice.paid besides
# invoice.payment_succeeded (localstripe: the latter only); the subscription becomes active (trialing
# during a trial), and with payment_settings.save_default_payment_method=on_subscription its
# default_payment_method is the payment method that paid (attached to the customer if it was not; the
# customer's own default is left alone). A failed attempt or failed authentication leaves the subscription
# incomplete (localstripe cancels it, or deletes it): Stripe keeps it until it expires after 23 hours.
_invoice_paid = Invoice._on_payment_success


def _invoice_paid_told(self: Invoice) -> None:
    _send("invoice.paid", self)
    _invoice_paid(self)


def _initial_payment_succeeded(self: Subscription, invoice: Invoice) -> None:
    self.status = "trialing" if _in_trial(self) else "active"
    settings = getattr(self, "payment_settings", None) or {}
    pi = _store("payment_intent", invoice.payment_intent)
    if (
        settings.get("save_default_payment_method") == "on_subscription"
        and pi is not None
        and pi.payment_method
    ):
        pm = PaymentMethod._api_retrieve(pi.payment_method)
        if isinstance(pm, PaymentMethod) and pm.customer is None:
            PaymentMethod._api_attach(pm.id, customer=self.customer)
        self.default_payment_method = pm.id


def _initial_payment_failed(self: Subscription, invoice: Invoice) -> None:
    pass  # stays incomplete; error_if_incomplete is handled in _first_invoice


Invoice._on_payment_success = _invoice_paid_told
Subscription._on_initial_payment_success = _announces(_initial_payment_succeeded)
Subscription._on_initial_payment_failure_now = _initial_payment_failed
Subscription._on_initial_payment_failure_later = _initial_payment_failed
Subscription._on_initial_payment_voided = _announces(Subscription._on_initial_payment_voided)
Subscription._on_recurring_payment_failure = _announces(Subscription._on_recurring_payment_failure)


# --- pending_setup_intent ------------------------------------------------------------------------------
# Once the subscription's pending SetupIntent succeeds (intents.py's confirm or _authenticate), Stripe clears
# pending_setup_intent and, with save_default_payment_method=on_subscription, makes the card the
# subscription's default_payment_method (customer.subscription.updated). intents.py calls
# _setup_intent_succeeded by its module-global name, which is wrapped here.
_setup_intent_succeeded = intents._setup_intent_succeeded


def _setup_intent_succeeded_for_subscriptions(obj: SetupIntent) -> None:
    _setup_intent_succeeded(obj)
    for key, sub in list(resources.store.items()):
        if key.startswith("subscription:") and getattr(sub, "pending_setup_intent", None) == obj.id:
            with _announcing(sub):
                sub.pending_setup_intent = None
                if (sub.payment_settings or {}).get("save_default_payment_method") == "on_subscription":
                    sub.default_payment_method = obj.payment_method


intents._setup_intent_succeeded = _setup_intent_succeeded_for_subscriptions


# --- confirmation_secret and expansion --------------------------------------------------------------------
# Since API 2025-03-31 an invoice has no payment_intent field for clients; `confirmation_secret`
# ({client_secret, type: payment_intent}, null without a PaymentIntent) is what the front end confirms.
# Stripe returns it only when expanded: expand[]=confirmation_secret on the invoice,
# expand[]=latest_invoice.confirmation_secret on the subscription. localstripe's generic expansion
# expands an id into the object's plain export only, so the subscription expands latest_invoice itself.
# (localstripe's internal invoice.payment_intent link stays, and is still exported.)
_invoice_export = Invoice._export


def _invoice_export_current(self: Invoice, expand: Any = None) -> dict[str, Any]:
    paths = expand if type(expand) is list else []
    rest = [path for path in paths if path != "confirmation_secret"] if type(expand) is list else expand
    obj = _invoice_export(self, expand=rest)
    if "confirmation_secret" in paths:
        pi = _store("payment_intent", self.payment_intent)
        obj["confirmation_secret"] = (
            {"client_secret": pi.client_secret, "type": "payment_intent"} if pi is not None else None
        )
    return obj


_subscription_export = Subscription._export


def _subscription_export_current(self: Subscription, expand: Any = None) -> dict[str, Any]:
    paths = expand if type(expand) is list else []
    mine = [p for p in paths if type(p) is str and (p == "latest_invoice" or p.startswith("latest_invoice."))]
    rest = [p for p in paths if p not in mine] if type(expand) is list else expand
    obj = _subscription_export(self, expand=rest)
    invoice = _store("invoice", self.latest_invoice)
    if mine and invoice is not None:
        obj["latest_invoice"] = invoice._export(expand=[p.split(".", 1)[1] for p in mine if "." in p])
    return obj


Invoice._export = _invoice_export_current
Subscription._export = _subscription_export_current


# --- Updates -----------------------------------------------------------------------------------------------
# localstripe's update refuses default_payment_method, payment_settings and items[][price] (a 500: its
# _update has a closed signature) and sends no customer.subscription.updated (see _announcing).
_subscription_update = Subscription._update  # server.py's, which takes discounts


def _subscription_update_current(
    self: Subscription,
    default_payment_method: Any = None,
    payment_settings: Any = None,
    items: Any = None,
    **data: Any,
) -> None:
    cus = Customer._api_retrieve(self.customer)
    default_pm = _default_payment_method(default_payment_method, cus)
    settings = _payment_settings(payment_settings) if payment_settings is not None else None
    if items is not None:
        if type(items) is not list:
            raise _refused("Invalid array", param="items")
        # Only the items naming a price are converted; localstripe checks the others (an item without
        # plan stays on the current one).
        offers = [
            _offer(item, i) if type(item) is not dict or "price" in item else None
            for i, item in enumerate(items)
        ]
        items = [
            item if offer is None else _as_plan_items([item], [offer])[0]
            for item, offer in zip(items, offers, strict=True)
        ]
    with _announcing(self):
        _subscription_update(self, items=items, **data)
        if default_payment_method is not None:
            self.default_payment_method = default_pm
        if settings is not None:
            self.payment_settings = settings


Subscription._update = _subscription_update_current


# --- Expiry (test-only) ------------------------------------------------------------------------------------
# Stripe expires an incomplete subscription 23 hours after creation: status incomplete_expired, the first
# invoice voided (invoice.voided), customer.subscription.updated. POST /v1/subscriptions/{id}/_expire does
# it now (400 for a subscription that is not incomplete).
@classmethod
def _subscription_expire(cls: type[Subscription], id: str, **unknown: Any) -> Subscription:
    if unknown:
        raise intents._unknown_parameter(unknown)
    obj = cls._api_retrieve(id)
    invoice = _store("invoice", obj.latest_invoice)
    if obj.status != "incomplete" or invoice is None or invoice.status != "open":
        raise _refused(f"Only an incomplete subscription can expire; this one is {obj.status}.")
    Invoice._api_void_invoice(invoice.id)  # the PaymentIntent canceled, the subscription incomplete_expired
    _send("invoice.voided", invoice)
    return obj


Subscription._api_expire = _subscription_expire
ls_server.app.router.add_route(
    "POST",
    "/v1/subscriptions/{id}/_expire",
    ls_server.api_extra(Subscription._api_expire, "/v1/subscriptions/{id}/_expire"),
)
