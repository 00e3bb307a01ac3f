"""Run localstripe for the test suite: ``python -m aa_stripe.testing.fakestripe.server --port PORT``.

localstripe 1.15 (GPL-3.0, a test-only dependency; nothing of it is copied here, it is only
imported and patched at runtime) speaks the 2017-era Stripe API. The shims below teach it the
few current-API parameters the library sends, each with the reason it is needed. Everything
else is localstripe's own behaviour.

Differences from ``localstripe.server.start()``:

* binds 127.0.0.1 only (localstripe binds ``::``, every interface);
* keeps the store in memory only (localstripe pickles the whole store to /tmp on every write,
  which is slow, leaks state between runs and races between parallel test runs);
* prints ``READY http://127.0.0.1:PORT`` once the socket is serving (``--port 0`` picks a free
  port and the line says which), and stays quiet otherwise unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from dateutil.relativedelta import relativedelta
from localstripe import resources, webhooks
from localstripe import server as ls_server
from localstripe.errors import UserError
from localstripe.resources import (
    Charge,
    Coupon,
    Customer,
    Event,
    Plan,
    Refund,
    Subscription,
    Token,
    random_id,
    try_convert_to_int,
)


def _bad_request(message: str, **contents: Any) -> UserError:
    return UserError(400, message, dict(contents))


# --- Errors --------------------------------------------------------------------------------------
# localstripe types every error "invalid_request_error" and gives 404s no code. Stripe says
# "card_error" (+ decline_code) for 402s and "resource_missing" for unknown ids, which callers test.
_user_error_init = UserError.__init__


def _user_error_init_current(self: UserError, code: int, message: Any = None, contents: Any = None) -> None:
    _user_error_init(self, code, message, contents)
    error = self.body["error"]
    if code == 402:
        error["type"] = "card_error"
        if error.get("code") == "card_declined":
            error.setdefault("decline_code", "generic_decline")
    elif code == 404:
        error.setdefault("code", "resource_missing")


UserError.__init__ = _user_error_init_current


# --- Persistence ---------------------------------------------------------------------------------
# Store.__setitem__/__delitem__ and server.save_store_middleware all call store.dump_to_disk(), which
# pickles the entire store to /tmp/localstripe.pickle on every write. Patching the class attribute
# turns every one of those calls into a no-op; we never load from disk either, so each server
# process starts empty.
resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None


# --- Webhooks ------------------------------------------------------------------------------------
class _SnapshotDict(dict):
    """localstripe's sender iterates ``_webhooks.values()`` across ``await``s; registering a new
    endpoint meanwhile would raise "dictionary changed size during iteration" in that task."""

    def values(self) -> list:  # type: ignore[override]
        return list(super().values())


webhooks._webhooks = _SnapshotDict(webhooks._webhooks)

# Each event is delivered by a task that first sleeps about a second. Without tracking, the events
# of one test would reach the webhook endpoint registered by the next one, after the wipe.
_deliveries: set[asyncio.Future] = set()


def schedule_webhook(event: Event) -> None:
    task = asyncio.ensure_future(webhooks._send_webhook(event))
    _deliveries.add(task)
    task.add_done_callback(_deliveries.discard)


def _clear_store(self: resources.Store) -> None:  # what DELETE /_config/data calls
    for task in list(_deliveries):
        task.cancel()
    dict.clear(self)


resources.schedule_webhook = schedule_webhook  # resources.py calls it by its module-global name
resources.Store.clear = _clear_store


# --- Coupons -------------------------------------------------------------------------------------
# Current API coupons take max_redemptions, redeem_by and name, and the id is optional (Stripe
# generates one). localstripe hard-codes max_redemptions/redeem_by to None, rejects the
# parameters, and requires an id. `valid` must turn false once redeem_by has passed or the coupon
# is used up, as Stripe reports it.
_coupon_init = Coupon.__init__


def _coupon_init_current(
    self: Coupon,
    id: str | None = None,
    max_redemptions: Any = None,
    redeem_by: Any = None,
    name: Any = None,
    **kwargs: Any,
) -> None:
    max_redemptions = try_convert_to_int(max_redemptions)
    redeem_by = try_convert_to_int(redeem_by)
    if max_redemptions is not None and (type(max_redemptions) is not int or max_redemptions <= 0):
        raise _bad_request("Invalid max_redemptions", param="max_redemptions")
    if redeem_by is not None and (type(redeem_by) is not int or redeem_by <= 0):
        raise _bad_request("Invalid redeem_by", param="redeem_by")
    if name is not None and (type(name) is not str or len(name) > 40):
        raise _bad_request("Invalid name", param="name")
    _coupon_init(self, id=id or random_id(8), **kwargs)
    self.max_redemptions = max_redemptions
    self.redeem_by = redeem_by
    self.name = name
    # localstripe emits no coupon events at all; the library parses coupon.* webhooks.
    schedule_webhook(Event("coupon.created", self))


def _coupon_valid(self: Coupon) -> bool:
    if not self.__dict__.get("_valid", True):
        return False
    if self.redeem_by is not None and time.time() > self.redeem_by:
        return False
    return self.max_redemptions is None or self.times_redeemed < self.max_redemptions


def _coupon_set_valid(self: Coupon, value: Any) -> None:
    self.__dict__["_valid"] = bool(value)  # localstripe's __init__ assigns valid = True


@classmethod
def _coupon_update(cls: type[Coupon], id: str, **data: Any) -> Coupon:
    obj = super(Coupon, cls)._api_update(id, **data)
    schedule_webhook(Event("coupon.updated", obj))
    return obj


@classmethod
def _coupon_delete(cls: type[Coupon], id: str) -> Any:
    schedule_webhook(Event("coupon.deleted", cls._api_retrieve(id)))
    return super(Coupon, cls)._api_delete(id)


Coupon.__init__ = _coupon_init_current
Coupon.valid = property(_coupon_valid, _coupon_set_valid)
Coupon._api_update = _coupon_update
Coupon._api_delete = _coupon_delete


# --- Ids chosen by the caller (coupons, plans) ------------------------------------------------------
# Stripe refuses an id in use with 400 invalid_request_error, code resource_already_exists ("Coupon
# already exists."), and creates nothing. localstripe answers 409 Conflict (which clients take for
# a transient failure) and, for a plan, has already created the plan's inline product by then.
def _refuse_taken_id(object_name: str, title: str, id: Any) -> None:
    if type(id) is str and id and resources.store.get(f"{object_name}:{id}") is not None:
        raise _bad_request(f"{title} already exists.", code="resource_already_exists", param="id")


_coupon_init_any_id = Coupon.__init__
_plan_init = Plan.__init__


def _coupon_init_unique(self: Coupon, id: str | None = None, **kwargs: Any) -> None:
    _refuse_taken_id("coupon", "Coupon", id)
    _coupon_init_any_id(self, id=id, **kwargs)


def _plan_init_unique(self: Plan, id: str | None = None, **kwargs: Any) -> None:
    _refuse_taken_id("plan", "Plan", id)
    _plan_init(self, id=id, **kwargs)


Coupon.__init__ = _coupon_init_unique
Plan.__init__ = _plan_init_unique


# --- Coupon lists --------------------------------------------------------------------------------
# Stripe's GET /v1/coupons takes `created` (a timestamp, or gt/gte/lt/lte); localstripe refuses any
# filter. The library finds a coupon whose creation answer was lost among those created since.
_CREATED_TESTS = {
    "gt": lambda value, bound: value > bound,
    "gte": lambda value, bound: value >= bound,
    "lt": lambda value, bound: value < bound,
    "lte": lambda value, bound: value <= bound,
}


@classmethod
def _coupon_list_all(cls: type[Coupon], url: str, created: Any = None, **kwargs: Any) -> Any:
    bounds = created if type(created) is dict else {} if created is None else {"eq": created}
    tests = []
    for name, bound in bounds.items():
        number = try_convert_to_int(bound)
        if type(number) is not int or (name != "eq" and name not in _CREATED_TESTS):
            raise _bad_request("Invalid created filter", param=f"created[{name}]")
        tests.append((_CREATED_TESTS.get(name, lambda value, bound: value == bound), number))
    listed = super(Coupon, cls)._api_list_all(url, **kwargs)
    listed._list = [obj for obj in listed._list if all(test(obj.created, n) for test, n in tests)]
    return listed


Coupon._api_list_all = _coupon_list_all


# --- Subscriptions -------------------------------------------------------------------------------
# Current API: `discounts=[{"coupon": id}]` (the `coupon` parameter was removed in 2025). localstripe
# supports neither `discounts` nor the legacy `coupon`, and has no Discount object, so the shim
# validates the coupons up front (no subscription is created for a bad coupon), lets localstripe
# create the subscription and attaches the discounts as soon as it has its id, before its first
# invoice is made (subscriptions.py: the invoices take the coupon off as Stripe does). The discount
# carries both the current shape (`source.coupon` = id) and the legacy one (`coupon` = the coupon object).
def _coupons_for(discounts: Any, coupon: Any) -> list[Coupon]:
    if coupon is not None:  # legacy parameter, same semantics as one discount
        discounts = [*(discounts or []), {"coupon": coupon}]
    if discounts in (None, ""):
        return []
    if type(discounts) is not list:
        raise _bad_request("Invalid array", param="discounts")
    coupons = []
    for i, entry in enumerate(discounts):
        param = f"discounts[{i}][coupon]"
        if type(entry) is not dict or type(entry.get("coupon")) is not str or len(entry) != 1:
            raise _bad_request("The fake only supports discounts=[{'coupon': id}]", param=f"discounts[{i}]")
        obj = resources.store.get("coupon:" + entry["coupon"])
        if obj is None:
            raise _bad_request(f"No such coupon: '{entry['coupon']}'", code="resource_missing", param=param)
        if not obj.valid:
            raise _bad_request(f"Coupon expired: {obj.id}", code="coupon_expired", param=param)
        coupons.append(obj)
    return coupons


def _attach_discounts(sub: Subscription, coupons: list[Coupon]) -> None:
    found = []
    for coupon in coupons:
        coupon.times_redeemed += 1
        start = int(time.time())
        end = None
        if coupon.duration == "repeating":
            end = int(
                (
                    datetime.fromtimestamp(start, tz=UTC) + relativedelta(months=coupon.duration_in_months)
                ).timestamp()
            )
        found.append(
            {
                "id": "di_" + random_id(14),
                "object": "discount",
                "coupon": coupon._export(),
                "source": {"type": "coupon", "coupon": coupon.id},
                "customer": sub.customer,
                "subscription": sub.id,
                "subscription_item": None,
                "invoice": None,
                "invoice_item": None,
                "promotion_code": None,
                "checkout_session": None,
                "start": start,
                "end": end,
            }
        )
    sub.discounts = [d["id"] for d in found]
    sub.discount = found[0] if found else None


@classmethod
def _subscription_create(
    cls: type[Subscription], discounts: Any = None, coupon: Any = None, **data: Any
) -> Subscription:
    coupons = _coupons_for(discounts, coupon)
    # localstripe makes (and pays) the first invoice inside the constructor: subscriptions.py's first
    # invoice calls _discount_new on the new subscription before making it.
    cls._discount_new = staticmethod(lambda sub: _attach_discounts(sub, coupons))
    try:
        obj = super(Subscription, cls)._api_create(**data)
    finally:
        cls._discount_new = staticmethod(_no_discount)
    if coupons and obj.discount is None:
        _attach_discounts(obj, coupons)
    return obj


def _no_discount(sub: Subscription) -> None:
    return None


Subscription._discount_new = staticmethod(_no_discount)


_subscription_update = Subscription._update


def _subscription_update_current(
    self: Subscription, discounts: Any = None, coupon: Any = None, **data: Any
) -> None:
    # localstripe's _update has a closed signature: an unknown keyword is a TypeError, i.e. a 500.
    clear = discounts == "" or coupon == ""
    coupons = [] if clear else _coupons_for(discounts, coupon)
    _subscription_update(self, **data)
    if clear or coupons:
        _attach_discounts(self, coupons)


Subscription._api_create = _subscription_create
Subscription._update = _subscription_update_current


# Stripe filters the subscription list by `created` (a timestamp, or gt/gte/lt/lte): the library
# looks up a subscription whose creation answer was lost by customer, status=all and created.
# localstripe's list takes customer and status only (any other keyword: a 500).
_subscription_list = Subscription.__dict__["_api_list_all"].__func__


@classmethod
def _subscription_list_created(cls: type[Subscription], url: str, created: Any = None, **kwargs: Any) -> Any:
    bounds = created if type(created) is dict else {} if created is None else {"eq": created}
    tests = []
    for name, bound in bounds.items():
        number = try_convert_to_int(bound)
        if type(number) is not int or (name != "eq" and name not in _CREATED_TESTS):
            raise _bad_request("Invalid created filter", param=f"created[{name}]")
        tests.append((_CREATED_TESTS.get(name, lambda value, bound: value == bound), number))
    listed = _subscription_list(cls, url, **kwargs)
    listed._list = [sub for sub in listed._list if all(test(sub.created, n) for test, n in tests)]
    return listed


# Stripe answers 404 "No such subscription" to canceling a canceled subscription; localstripe
# cancels it again (200, a new ended_at and a second customer.subscription.deleted event).
_subscription_delete = Subscription.__dict__["_api_delete"].__func__


@classmethod
def _subscription_delete_once(cls: type[Subscription], id: str) -> Subscription:
    if cls._api_retrieve(id).status == "canceled":
        raise UserError(404, f"No such subscription: '{id}'", {"code": "resource_missing"})
    return _subscription_delete(cls, id)


Subscription._api_list_all = _subscription_list_created
Subscription._api_delete = _subscription_delete_once


# --- Customers -----------------------------------------------------------------------------------
# Stripe creates no customer when the card in `source` is declined; localstripe creates the customer
# first and fails attaching the card afterwards, leaving the customer behind. Check tokens up front.
# Stripe's customer.created also shows the customer as created, card included; localstripe takes the
# event's snapshot before attaching the card (default_source null), so the snapshot is retaken.
_customer_create = Customer.__dict__["_api_create"].__func__


@classmethod
def _customer_create_atomic(cls: type[Customer], source: Any = None, **data: Any) -> Customer:
    is_token = isinstance(source, str) and source.startswith("tok_")
    if is_token and Token._api_retrieve(source).card._attaching_is_declined():
        raise UserError(402, "Your card was declined.", {"code": "card_declined", "param": "source"})
    held: list[Event] = []
    resources.schedule_webhook = held.append  # hold this call's events until the customer is whole
    obj = None
    try:
        obj = _customer_create(cls, source=source, **data)
    finally:
        resources.schedule_webhook = schedule_webhook
        for event in held:
            if obj is not None and event.type == "customer.created":
                event.data = {"object": obj._export()}
            schedule_webhook(event)
    return obj


# `source=tok_...` on update replaces the default source (the library's "add a new card" path);
# localstripe only accepts `source` on create and answers 400 on update.
_customer_update = Customer.__dict__["_api_update"].__func__


@classmethod
def _customer_update_current(cls: type[Customer], id: str, source: Any = None, **data: Any) -> Customer:
    if source is not None:
        obj = cls._api_retrieve(id)
        old_default = obj.default_source
        new = cls._api_add_source(id, source)
        if old_default and old_default != new.id:
            cls._api_remove_source(id, old_default)
        obj.default_source = new.id
        if not data:
            schedule_webhook(Event("customer.updated", obj))
            return obj
    return _customer_update(cls, id, **data)


# Stripe filters the customer list by `created` (the journal finds a customer whose creation answer
# was lost among those created since); localstripe's customer list takes `email` only. As for
# charges, only `created[gt]` is implemented.
_customer_list = Customer.__dict__["_api_list_all"].__func__


@classmethod
def _customer_list_created(cls: type[Customer], url: str, created: Any = None, **data: Any) -> Any:
    li = _customer_list(cls, url, **data)
    if created is not None:
        gt = try_convert_to_int(created.get("gt")) if isinstance(created, dict) else None
        if len(created) != 1 or not isinstance(gt, int):
            raise _bad_request("The fake filters customers by created[gt] only.", param="created")
        li._list = [customer for customer in li._list if customer.created > gt]
    return li


Customer._api_create = _customer_create_atomic
Customer._api_update = _customer_update_current
Customer._api_list_all = _customer_list_created


# --- Refunds -------------------------------------------------------------------------------------
# Current API refunds take and report `reason`; localstripe rejects it.
_refund_init = Refund.__init__
_REFUND_REASONS = (None, "duplicate", "fraudulent", "requested_by_customer")


def _refund_init_current(self: Refund, reason: Any = None, **kwargs: Any) -> None:
    if reason not in _REFUND_REASONS:
        raise _bad_request("Invalid reason", param="reason")
    kwargs["amount"] = _refundable(kwargs.get("charge"), kwargs.get("amount"))
    _refund_init(self, **kwargs)
    self.reason = reason


# Stripe refunds what is left of the charge when no amount is given (localstripe: the whole amount
# again) and refuses a refund larger than what is left (localstripe refunds it anyway): 400
# invalid_request_error, code charge_already_refunded when nothing is left, else amount_too_large.
def _refundable(charge_id: Any, amount: Any) -> Any:
    if not isinstance(charge_id, str) or not charge_id.startswith("ch_"):
        return amount  # localstripe's own checks answer
    try:
        charge = Charge._api_retrieve(charge_id)
    except UserError:
        return amount
    left = charge.amount - charge.amount_refunded
    wanted = left if amount is None else try_convert_to_int(amount)
    if not isinstance(wanted, int):
        return amount  # localstripe refuses it
    if left <= 0:
        raise _bad_request(f"Charge {charge_id} has already been refunded.", code="charge_already_refunded")
    if wanted > left:
        raise _bad_request(
            f"Refund amount ({wanted}) is greater than unrefunded amount on charge ({left})",
            code="amount_too_large",
            param="amount",
        )
    return wanted


Refund.__init__ = _refund_init_current


# --- Products, prices, plans ---------------------------------------------------------------------
# Prices (which localstripe lacks), product ids and deletions, plan updates and their events: in a
# module of their own (catalog.py), one commented patch per gap; importing it applies them.
from aa_stripe.testing.fakestripe import catalog  # noqa: E402, F401

from aa_stripe.testing.fakestripe import intents  # noqa: E402, F401  # isort: skip
from aa_stripe.testing.fakestripe import payment_intents  # noqa: E402, F401  # isort: skip
from aa_stripe.testing.fakestripe import subscriptions  # noqa: E402, F401  # isort: skip
from aa_stripe.testing.fakestripe import invoices  # noqa: E402, F401  # isort: skip
from aa_stripe.testing.fakestripe import stripe_js  # noqa: E402, F401  # isort: skip


# --- Serving -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 (default) picks a free port")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    # localstripe logs webhook deliveries on aiohttp.access too.
    access_log = logging.getLogger("aiohttp.access")
    if args.verbose:
        access_log.setLevel(logging.DEBUG)
        access_log.addHandler(logging.StreamHandler())
    else:
        access_log.disabled = True

    def ready(*_args: Any, **_kwargs: Any) -> None:
        # run_app calls print() only after the site is serving, so the parent can connect now.
        sys.stdout.write(f"READY {url}\n")
        sys.stdout.flush()

    web.run_app(
        ls_server.app,
        sock=sock,
        access_log=access_log if args.verbose else None,
        print=ready,
        handle_signals=True,
    )


if __name__ == "__main__":
    main()
