"""Saving cards with SetupIntents and managing PaymentMethods: the gaps of localstripe 1.15 the library meets.

Imported by :mod:`aa_stripe.testing.fakestripe.server` (which documents the other shims). Each patch says
which gap it fills; what they do follows Stripe's API reference for ``/v1/setup_intents``,
``/v1/payment_methods`` and ``/v1/customers`` at the pinned API version (the parameters of stripe-python
16's ``SetupIntentCreateParams``, ``SetupIntentCancelParams``, ``PaymentMethodListParams``,
``CustomerListPaymentMethodsParams``), never more than the library and its tests need.

Test cards (localstripe takes raw card numbers in ``POST /v1/payment_methods``, which Stripe only allows
with raw-card-data access): 4242424242424242 sets up and pays; 4000002500003155 asks for authentication
when set up (``requires_action``); 4000000000000002 is declined when attached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localstripe import resources
from localstripe import server as ls_server
from localstripe.errors import UserError
from localstripe.resources import (
    Customer,
    List,
    PaymentMethod,
    SetupIntent,
    fingerprint,
    try_convert_to_bool,
    try_convert_to_int,
)

from aa_stripe.testing.fakestripe.catalog import _created_tests, _refused, _send, _unknown_parameter


def _reroute(method: str, path: str, func: Callable[..., Any]) -> None:
    """Serve localstripe's own ``method path`` with ``func``.

    resources.py lists its extra endpoints (confirm, cancel, attach, detach...) with the classmethods
    bound when the module was imported, so replacing the class attribute alone does not reach the
    route; the route's handler is pointed at the patched method instead (the same ``api_extra`` wrapper
    localstripe builds). Code that calls the classmethod by name gets the patched one as well."""
    for route in ls_server.app.router.routes():
        if route.method == method and route.resource is not None and route.resource.canonical == path:
            route._handler = ls_server.api_extra(func, path)
            return
    raise LookupError(f"localstripe serves no {method} {path}")


def _add_route(method: str, path: str, func: Callable[..., Any]) -> None:
    """Serve ``method path``, which localstripe does not know, with ``func`` (as ``api_extra`` does)."""
    ls_server.app.router.add_route(method, path, ls_server.api_extra(func, path))


# --- Card brands ---------------------------------------------------------------------------------
# localstripe reports every card payment method as a French visa credit card and accepts 16-digit
# numbers only. Stripe derives the brand from the number (its test cards include 15-digit amex and
# 14-digit diners numbers). The number is handed to localstripe padded to 16 digits, then put back;
# country, funding and the rest stay localstripe's.
def _card_brand(number: str) -> str:
    two, three, four = int(number[:2]), int(number[:3]), int(number[:4])
    if number.startswith("4"):
        return "visa"
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if two in (34, 37):
        return "amex"
    if number.startswith("6011") or two == 65 or 644 <= three <= 649:
        return "discover"
    if 3528 <= four <= 3589:
        return "jcb"
    if two in (36, 38, 39) or 300 <= three <= 305:
        return "diners"
    if two == 62:
        return "unionpay"
    return "unknown"


_payment_method_init = PaymentMethod.__init__


def _payment_method_init_branded(
    self: PaymentMethod, type: Any = None, card: Any = None, **kwargs: Any
) -> None:
    number = card.get("number") if isinstance(card, dict) else None
    digits = number if isinstance(number, str) and number.isdigit() and 13 <= len(number) <= 19 else None
    if digits is not None and len(digits) != 16:
        card = {**card, "number": digits.ljust(16, "0")[:16]}
    _payment_method_init(self, type=type, card=card, **kwargs)
    if self.type == "card" and digits is not None:
        self._card_number = digits
        self.card["last4"] = digits[-4:]
        self.card["fingerprint"] = fingerprint(digits)
        self.card["brand"] = _card_brand(digits)


PaymentMethod.__init__ = _payment_method_init_branded


# --- Attaching and detaching payment methods -----------------------------------------------------
# Stripe sends payment_method.attached and payment_method.detached (the detached object shows
# `customer` null; data.previous_attributes.customer names the customer it left); localstripe sends
# neither. Stripe refuses to detach a payment method attached to no customer (localstripe answers
# 200), and detaching the customer's invoice_settings.default_payment_method clears that default,
# which Stripe reports with customer.updated (localstripe keeps it as the default, and charges the
# customer with it).
_payment_method_attach = PaymentMethod.__dict__["_api_attach"].__func__
_payment_method_detach = PaymentMethod.__dict__["_api_detach"].__func__


@classmethod
def _payment_method_attach_told(
    cls: type[PaymentMethod], id: str, customer: Any = None, **data: Any
) -> PaymentMethod:
    known = resources.store.get(f"payment_method:{id}") if isinstance(id, str) else None
    if known is not None and getattr(known, "_detached", False):
        # Stripe: a detached payment method can never be attached again (localstripe re-attaches).
        raise _refused(
            "This PaymentMethod was previously used without being attached to a Customer or was detached "
            "from a Customer, and may not be used again."
        )
    previous = known.customer if known is not None else None
    obj = _payment_method_attach(cls, id, customer=customer, **data)
    if obj.customer != previous:
        _send("payment_method.attached", obj)
    return obj


@classmethod
def _payment_method_detach_told(cls: type[PaymentMethod], id: str, **data: Any) -> PaymentMethod:
    obj = resources.store.get(f"payment_method:{id}") if isinstance(id, str) else None
    if obj is not None and obj.customer is None:
        raise _refused(
            "The payment method you provided is not attached to a customer so detachment is impossible."
        )
    customer_id = obj.customer if obj is not None else None
    obj = _payment_method_detach(cls, id, **data)
    obj._detached = True
    _send("payment_method.detached", obj, {"customer": customer_id})
    customer = resources.store.get(f"customer:{customer_id}")
    if customer is not None and customer.invoice_settings.get("default_payment_method") == obj.id:
        customer.invoice_settings["default_payment_method"] = None
        _send("customer.updated", customer, {"invoice_settings": {"default_payment_method": obj.id}})
    return obj


PaymentMethod._api_attach = _payment_method_attach_told
PaymentMethod._api_detach = _payment_method_detach_told
_reroute("POST", "/v1/payment_methods/{id}/attach", PaymentMethod._api_attach)
_reroute("POST", "/v1/payment_methods/{id}/detach", PaymentMethod._api_detach)


# --- Listing a customer's payment methods ----------------------------------------------------------
# Stripe lists a customer's payment methods at GET /v1/customers/{id}/payment_methods (which
# localstripe lacks) and at GET /v1/payment_methods?customer=..., `type` optional in both, newest
# first. localstripe's list requires type=card, answers a 500 to any other parameter, and lists
# oldest first. Listing without `customer` (Stripe: payment methods attached to no customer, for
# Treasury) stays refused.
def _customer_payment_methods(url: str, customer: str, kind: Any, limit: Any, starting_after: Any) -> List:
    Customer._api_retrieve(customer)  # 404 resource_missing for an unknown customer
    if kind is not None and (not isinstance(kind, str) or not kind):
        raise _refused(f"Invalid type: {kind}", param="type")
    limit = try_convert_to_int(limit)
    if limit is not None and (type(limit) is not int or not 1 <= limit <= 100):
        raise _refused("Invalid limit: must be between 1 and 100", param="limit")
    listed = List(url, limit=limit, starting_after=starting_after)
    listed._list = [
        obj  # the store keeps creation order: reversed, newest first
        for key, obj in reversed(resources.store.items())
        if key.startswith("payment_method:") and obj.customer == customer and kind in (None, obj.type)
    ]
    return listed


@classmethod
def _customer_list_payment_methods(
    cls: type[Customer],
    id: str,
    type: Any = None,
    limit: Any = None,
    starting_after: Any = None,
    **unknown: Any,
) -> List:
    if unknown:
        raise _unknown_parameter(unknown)
    return _customer_payment_methods(f"/v1/customers/{id}/payment_methods", id, type, limit, starting_after)


@classmethod
def _payment_method_list_all(
    cls: type[PaymentMethod],
    url: str,
    customer: Any = None,
    type: Any = None,
    limit: Any = None,
    starting_after: Any = None,
    **unknown: Any,
) -> List:
    if unknown:
        raise _unknown_parameter(unknown)
    if not isinstance(customer, str) or not customer:
        raise _refused("The fake lists the payment methods of a customer only.", param="customer")
    return _customer_payment_methods(url, customer, type, limit, starting_after)


Customer._api_list_payment_methods = _customer_list_payment_methods
PaymentMethod._api_list_all = _payment_method_list_all
_add_route("GET", "/v1/customers/{id}/payment_methods", Customer._api_list_payment_methods)


# --- A customer's default payment method -----------------------------------------------------------
# Stripe refuses invoice_settings[default_payment_method] naming a payment method not attached to
# that customer: 400 resource_missing on that param, "No such PaymentMethod: 'pm_x'" for an unknown id,
# "The customer does not have a payment method with the ID pm_x..." for another customer's or nobody's.
# localstripe stores any id and then fails every export of the customer looking it up (a 404 for the
# update, and for every later retrieve or list of customers). On create, Stripe accepts the payment
# method given in `payment_method` (which it attaches) and no other.
def _default_refused(value: Any) -> UserError:
    param = "invoice_settings[default_payment_method]"
    if not isinstance(value, str):
        return _refused(f"Invalid string: {value}", param=param)
    if resources.store.get(f"payment_method:{value}") is None:
        return _refused(f"No such PaymentMethod: '{value}'", param=param, code="resource_missing")
    return _refused(
        f"The customer does not have a payment method with the ID {value}. "
        "The payment method must be attached to the customer.",
        param=param,
        code="resource_missing",
    )


_customer_init = Customer.__init__


def _customer_init_checked(
    self: Customer, invoice_settings: Any = None, payment_method: Any = None, **kwargs: Any
) -> None:
    default = invoice_settings.get("default_payment_method") if isinstance(invoice_settings, dict) else None
    if isinstance(default, str) and default.startswith("pm_") and default != payment_method:
        raise _default_refused(default)
    _customer_init(self, invoice_settings=invoice_settings, payment_method=payment_method, **kwargs)


_customer_update = Customer.__dict__["_api_update"].__func__  # server.py's, which takes `source`


@classmethod
def _customer_update_checked(cls: type[Customer], id: str, **data: Any) -> Customer:
    obj = cls._api_retrieve(id)
    settings = data.get("invoice_settings")
    if settings is not None and not isinstance(settings, dict):
        raise _refused("Invalid object", param="invoice_settings")
    value = settings.get("default_payment_method") if settings else None
    if value not in (None, ""):
        legacy = any(source.id == value for source in obj.sources._list)  # a card in `sources`
        pm = resources.store.get(f"payment_method:{value}") if isinstance(value, str) else None
        if not legacy and (pm is None or pm.customer != obj.id):
            raise _default_refused(value)
    return _customer_update(cls, id, **data)


Customer.__init__ = _customer_init_checked
Customer._api_update = _customer_update_checked


# --- SetupIntents: creation ------------------------------------------------------------------------
# Stripe refuses a SetupIntent for an unknown customer (400 resource_missing, param customer; localstripe
# creates it) and always reports last_setup_error and cancellation_reason (null until set), which
# localstripe lacks. customer, usage, metadata and client_secret are localstripe's already; without
# payment_method_types it offers card, where Stripe would use automatic payment methods.
_setup_intent_init = SetupIntent.__init__


def _setup_intent_init_current(self: SetupIntent, customer: Any = None, **kwargs: Any) -> None:
    known = not isinstance(customer, str) or resources.store.get(f"customer:{customer}") is not None
    if not known and customer.startswith("cus_"):  # another prefix: localstripe's own 400
        raise _refused(f"No such customer: '{customer}'", param="customer", code="resource_missing")
    _setup_intent_init(self, customer=customer, **kwargs)
    self.last_setup_error = None
    self.cancellation_reason = None


SetupIntent.__init__ = _setup_intent_init_current


# --- SetupIntents: success, authentication, events -----------------------------------------------
# A SetupIntent that succeeds attaches its payment method to its customer, and Stripe sends
# payment_method.attached and setup_intent.succeeded; one that asks for authentication sends
# setup_intent.requires_action. localstripe attaches nothing and sends no event. It succeeds on a
# confirm with a card that needs no authentication, or on a second confirm after requires_action (how
# its stand-in stripe.js "passes" 3-D Secure). Stripe refuses to confirm a SetupIntent that succeeded
# or was canceled (400 setup_intent_unexpected_state); localstripe succeeds it again. A new attempt
# clears the previous attempt's last_setup_error, as localstripe does for PaymentIntents.
_UNEXPECTED = "setup_intent_unexpected_state"


def _unexpected_state(obj: SetupIntent, action: str) -> UserError:
    return _refused(
        f"You cannot {action} this SetupIntent because it has a status of {obj.status}.",
        code=_UNEXPECTED,
        setup_intent=obj._export(),
    )


def _setup_intent_succeeded(obj: SetupIntent) -> None:
    pm = resources.store.get(f"payment_method:{obj.payment_method}")
    if obj.customer and pm is not None and pm.customer != obj.customer:
        PaymentMethod._api_attach(pm.id, customer=obj.customer)  # sends payment_method.attached
    _send("setup_intent.succeeded", obj)


_setup_intent_confirm = SetupIntent.__dict__["_api_confirm"].__func__


@classmethod
def _setup_intent_confirm_told(cls: type[SetupIntent], id: str, **data: Any) -> SetupIntent:
    obj = cls._api_retrieve(id)
    if obj.status in ("succeeded", "canceled"):
        raise _unexpected_state(obj, "confirm")
    try:
        obj = _setup_intent_confirm(cls, id, **data)
    except UserError as err:
        if err.code != 402:
            raise
        raise _setup_declined(obj, err) from None
    obj.last_setup_error = None
    if obj.status == "succeeded":
        _setup_intent_succeeded(obj)
    elif obj.status == "requires_action":
        _send("setup_intent.requires_action", obj)
    return obj


# A card declined while setting up: localstripe cancels the SetupIntent and answers a bare 402. Stripe
# keeps it usable for another card: status requires_payment_method, payment_method null,
# last_setup_error (card_error, card_declined, its decline_code, the payment method), the 402's body
# names the SetupIntent, and it sends setup_intent.setup_failed.
def _setup_declined(obj: SetupIntent, err: UserError) -> UserError:
    pm = resources.store.get(f"payment_method:{obj.payment_method}")
    error = dict(err.body["error"])
    obj.status, obj.next_action, obj.payment_method = "requires_payment_method", None, None
    obj.last_setup_error = {
        "type": "card_error",
        "code": error.get("code") or "card_declined",
        "decline_code": error.get("decline_code") or "generic_decline",
        "message": error.get("message"),
        "payment_method": pm._export() if pm is not None else None,
    }
    _send("setup_intent.setup_failed", obj)
    return UserError(
        402,
        error.get("message"),
        {
            "code": obj.last_setup_error["code"],
            "decline_code": obj.last_setup_error["decline_code"],
            "setup_intent": obj._export(),
        },
    )


SetupIntent._api_confirm = _setup_intent_confirm_told
_reroute("POST", "/v1/setup_intents/{id}/confirm", SetupIntent._api_confirm)


# Test-only POST /v1/setup_intents/{id}/_authenticate?success=true|false, the SetupIntent twin of
# localstripe's /v1/payment_intents/{id}/_authenticate: the customer passes or fails 3-D Secure.
# Success is the success above. Failure is Stripe's: status back to requires_payment_method,
# payment_method null, last_setup_error (card_error, setup_intent_authentication_failure, the payment
# method), event setup_intent.setup_failed, nothing attached. Only while requires_action (else 400).
# Authenticated with the secret key (localstripe's auth lets publishable keys through on its own paths
# only); client_secret, when given, must match.
_AUTHENTICATION_FAILED = (
    "The latest attempt to set up the payment method has failed because authentication failed."
)


@classmethod
def _setup_intent_authenticate(
    cls: type[SetupIntent], id: str, success: Any = None, client_secret: Any = None, **unknown: Any
) -> SetupIntent:
    if unknown:
        raise _unknown_parameter(unknown)
    success = try_convert_to_bool(success)
    if type(success) is not bool:
        raise _refused("Invalid boolean: success must be true or false", param="success")
    obj = cls._api_retrieve(id)
    if client_secret is not None and client_secret != obj.client_secret:
        raise UserError(401, "Unauthorized")
    if obj.status != "requires_action":
        raise _unexpected_state(obj, "authenticate")
    obj.next_action = None
    if success:
        obj.status = "succeeded"
        _setup_intent_succeeded(obj)
        return obj
    pm = PaymentMethod._api_retrieve(obj.payment_method)
    obj.status = "requires_payment_method"
    obj.payment_method = None
    obj.last_setup_error = {
        "type": "card_error",
        "code": "setup_intent_authentication_failure",
        "doc_url": "https://docs.stripe.com/error-codes/setup-intent-authentication-failure",
        "message": _AUTHENTICATION_FAILED,
        "payment_method": pm._export(),
        "payment_method_type": pm.type,
    }
    _send("setup_intent.setup_failed", obj)
    return obj


SetupIntent._api_authenticate = _setup_intent_authenticate
_add_route("POST", "/v1/setup_intents/{id}/_authenticate", SetupIntent._api_authenticate)


# --- SetupIntents: cancel --------------------------------------------------------------------------
# Stripe sends setup_intent.canceled, takes `cancellation_reason` (abandoned, duplicate,
# requested_by_customer) and refuses to cancel a SetupIntent that succeeded or was canceled (400
# setup_intent_unexpected_state). localstripe cancels anything, rejects cancellation_reason and sends
# no event. Its stand-in stripe.js cancels the SetupIntent when 3-D Secure is failed; that still works.
_CANCELLATION_REASONS = (None, "abandoned", "duplicate", "requested_by_customer")
_setup_intent_cancel = SetupIntent.__dict__["_api_cancel"].__func__


@classmethod
def _setup_intent_cancel_told(
    cls: type[SetupIntent], id: str, cancellation_reason: Any = None, **data: Any
) -> SetupIntent:
    if cancellation_reason not in _CANCELLATION_REASONS:
        raise _refused(f"Invalid cancellation_reason: {cancellation_reason}", param="cancellation_reason")
    obj = cls._api_retrieve(id)
    if obj.status in ("succeeded", "canceled"):
        raise _unexpected_state(obj, "cancel")
    obj = _setup_intent_cancel(cls, id, **data)
    obj.cancellation_reason = cancellation_reason
    _send("setup_intent.canceled", obj)
    return obj


SetupIntent._api_cancel = _setup_intent_cancel_told
_reroute("POST", "/v1/setup_intents/{id}/cancel", SetupIntent._api_cancel)


# --- SetupIntents: listing ---------------------------------------------------------------------------
# Stripe's GET /v1/setup_intents filters by `customer`, `payment_method` and `created` (a timestamp, or
# gt/gte/lt/lte; SetupIntentListParams), newest first; localstripe takes no filter at all (400). The
# library looks up a SetupIntent whose creation answer was lost among the customer's created since.
@classmethod
def _setup_intent_list_filtered(
    cls: type[SetupIntent],
    url: str,
    customer: Any = None,
    payment_method: Any = None,
    created: Any = None,
    limit: Any = None,
    starting_after: Any = None,
    **unknown: Any,
) -> List:
    if unknown:
        raise _unknown_parameter(unknown)
    tests = _created_tests(created)
    listed = List(url, limit=limit, starting_after=starting_after)
    listed._list = sorted(
        (
            obj
            for key, obj in resources.store.items()
            if key.startswith("setup_intent:")
            and (customer is None or obj.customer == customer)
            and (payment_method is None or obj.payment_method == payment_method)
            and all(test(obj.created) for test in tests)
        ),
        key=lambda obj: obj.created,
        reverse=True,
    )
    return listed


SetupIntent._api_list_all = _setup_intent_list_filtered
