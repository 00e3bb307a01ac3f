"""Paying with PaymentIntents, their charges and refunds: the gaps of localstripe 1.15 the library meets.

Imported by :mod:`aa_stripe.testing.fakestripe.server` (which documents the other shims). Each patch says
which gap it fills; what they do follows Stripe's API reference for ``/v1/payment_intents``,
``/v1/charges`` and ``/v1/refunds`` at the pinned API version (the parameters of stripe-python 16's
``PaymentIntentCreateParams``, ``PaymentIntentConfirmParams``, ``PaymentIntentListParams``,
``RefundCreateParams``) and Stripe's test cards, never more than the library and its tests need.

Test cards (https://docs.stripe.com/testing): 4242424242424242 pays; 4000002500003155 asks for
authentication unless it was set up for off-session use (a succeeded SetupIntent), then pays off-session
without asking; 4000002760003184 asks every time, off-session included; 4000008260003178 asks unless set
up, then is declined (insufficient_funds) whether authenticated or set up; 4000008400001629 asks, then is
declined (generic_decline); 4000000000000341 attaches and is declined when charged; 4000000000000002 is
declined (attaching, and charging it unattached).

Invoice payments (localstripe's subscriptions) create and confirm PaymentIntents internally; those keep
localstripe's own confirmation and events, except where a patch below says otherwise (authentication,
cancel, the exported shape).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from aiohttp import web
from localstripe import resources
from localstripe import server as ls_server
from localstripe.errors import UserError
from localstripe.resources import (
    Charge,
    Customer,
    Invoice,
    List,
    PaymentIntent,
    PaymentMethod,
    Refund,
    StripeObject,
    try_convert_to_bool,
)

from aa_stripe.testing.fakestripe.catalog import (
    _created_tests,
    _refuse_invalid_id,
    _refused,
    _send,
    _unknown_parameter,
)
from aa_stripe.testing.fakestripe.intents import _reroute

_DOCS = "https://docs.stripe.com/error-codes/"


class _Decline(NamedTuple):
    code: str  # the error's code and the charge's failure_code
    decline_code: str  # the error's decline_code and the charge's outcome.reason
    message: str


_GENERIC = _Decline("card_declined", "generic_decline", "Your card was declined.")
_INSUFFICIENT_FUNDS = _Decline("card_declined", "insufficient_funds", "Your card has insufficient funds.")
_AUTHENTICATION_REQUIRED = _Decline(
    "authentication_required",
    "authentication_required",
    "Your card was declined. This transaction requires authentication.",
)
# How Stripe's test cards fail when charged (https://docs.stripe.com/testing#declined-payments). localstripe
# declines 0341, 3178 and 1629 only, all as a bare card_declined, and charges the others.
_DECLINES = {
    "4000000000000002": _GENERIC,
    "4000000000000341": _GENERIC,
    "4000008400001629": _GENERIC,
    "4000008260003178": _INSUFFICIENT_FUNDS,
    "4000000000009995": _INSUFFICIENT_FUNDS,
    "4000000000009987": _Decline("card_declined", "lost_card", "Your card was declined."),
    "4000000000009979": _Decline("card_declined", "stolen_card", "Your card was declined."),
    "4000000000000069": _Decline("expired_card", "expired_card", "Your card has expired."),
    "4000000000000127": _Decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    "4000000000000119": _Decline(
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}
# Of the cards localstripe asks authentication for, those a succeeded off-session SetupIntent exempts from
# it off-session ("authenticate unless set up", "insufficient funds"); the others ask every time.
_EXEMPT_ONCE_SET_UP = frozenset({"4000002500003155", "4000008260003178"})
_NEXT_ACTION = {  # localstripe's, which its stand-in stripe.js understands
    "type": "use_stripe_sdk",
    "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": ""},
}


def _card_number(pm: Any) -> str | None:
    return getattr(pm, "_card_number", None) if getattr(pm, "type", None) == "card" else None


def _decline_for(pm: Any) -> _Decline | None:
    number = _card_number(pm)
    if number in _DECLINES:
        return _DECLINES[number]
    return _GENERIC if pm._charging_is_declined() else None  # localstripe's (a SEPA IBAN)


def _set_up_for_off_session(pm: Any) -> bool:
    return _card_number(pm) in _EXEMPT_ONCE_SET_UP and any(
        key.startswith("setup_intent:")
        and obj.status == "succeeded"
        and obj.payment_method == pm.id
        and obj.usage == "off_session"
        for key, obj in resources.store.items()
    )


# --- Statuses a PaymentIntent must have for an action --------------------------------------------------
# localstripe answers 400 "Bad request" for all of them; Stripe says which statuses are allowed, with code
# payment_intent_unexpected_state and the intent in the error.
_ALLOWED = {
    "confirm": ("confirmed", ("requires_payment_method", "requires_confirmation", "requires_action")),
    "update": ("updated", ("requires_payment_method", "requires_confirmation", "requires_action")),
    "cancel": (
        "canceled",
        ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action"),
    ),
    "authenticate": ("authenticated", ("requires_action",)),
}


def _unexpected_state(obj: PaymentIntent, action: str) -> UserError:
    done, allowed = _ALLOWED[action]
    if action == "confirm" and obj.status == "succeeded":
        message = (
            "You cannot confirm this PaymentIntent because it has already succeeded after being previously "
            "confirmed."
        )
    else:
        message = (
            f"You cannot {action} this PaymentIntent because it has a status of {obj.status}. Only a "
            f"PaymentIntent with one of the following statuses may be {done}: {', '.join(allowed)}."
        )
    return _refused(message, code="payment_intent_unexpected_state", payment_intent=obj._export())


# --- Creation: description, statement descriptors, off_session ---------------------------------------
# localstripe refuses description, statement_descriptor and statement_descriptor_suffix ("Unexpected").
# Stripe keeps description and the suffix (at most 22 characters, none of < > \ ' " *) on the intent and
# its charges, and since 2024 refuses statement_descriptor when card is among the payment method types
# (https://support.stripe.com/questions/use-of-the-statement-descriptor-parameter-on-paymentintents-for-card-charges).
# The intent also reports payment_method_types (card unless given), cancellation_reason, canceled_at and
# amount_received, which localstripe lacks.
_STATEMENT_DESCRIPTOR_REFUSED = (
    "The statement_descriptor parameter is not supported for the payment_method_type `card`. To continue "
    "supporting payment_method_type `card`, please pass in `statement_descriptor_suffix` or remove the "
    "`statement_descriptor` parameter altogether. Please see https://support.stripe.com/questions/"
    "use-of-the-statement-descriptor-parameter-on-paymentintents-for-card-charges for additional details."
)
_DESCRIPTOR_FORBIDDEN = frozenset("<>\\'\"*")


def _check_descriptors(descriptor: Any, suffix: Any, types: list[str]) -> None:
    if descriptor not in (None, ""):
        if "card" in types:
            raise _refused(_STATEMENT_DESCRIPTOR_REFUSED, param="statement_descriptor")
        _check_descriptor(descriptor, "statement_descriptor")
    if suffix not in (None, ""):
        _check_descriptor(suffix, "statement_descriptor_suffix")


def _check_descriptor(value: Any, param: str) -> None:
    if type(value) is not str:
        raise _refused(f"Invalid string: {value}", param=param)
    if len(value) > 22:
        raise _refused(f"Invalid string: {value}; must be at most 22 characters", param=param)
    if _DESCRIPTOR_FORBIDDEN & set(value):
        raise _refused(
            f"The {param} contains invalid characters: < > \\ ' \" * are not allowed.", param=param
        )


_payment_intent_init = PaymentIntent.__init__


def _payment_intent_init_current(
    self: PaymentIntent,
    description: Any = None,
    statement_descriptor: Any = None,
    statement_descriptor_suffix: Any = None,
    payment_method_types: Any = None,
    automatic_payment_methods: Any = None,
    **kwargs: Any,
) -> None:
    types = payment_method_types if isinstance(payment_method_types, list) else ["card"]
    automatic = _automatic_payment_methods(automatic_payment_methods, payment_method_types)
    if description is not None and type(description) is not str:
        raise _refused(f"Invalid string: {description}", param="description")
    _check_descriptors(statement_descriptor, statement_descriptor_suffix, types)
    _payment_intent_init(self, payment_method_types=payment_method_types, **kwargs)
    self.automatic_payment_methods = automatic
    self.description = description or None
    self.statement_descriptor = statement_descriptor or None
    self.statement_descriptor_suffix = statement_descriptor_suffix or None
    self.payment_method_types = types
    self.cancellation_reason = None
    self.canceled_at = None


def _automatic_payment_methods(value: Any, types: Any) -> dict[str, Any] | None:
    if value is None:  # the default since 2023-08-16, unless payment_method_types are given
        return None if types is not None else {"allow_redirects": "always", "enabled": True}
    if types is not None:
        raise _refused(
            "You may only specify one of these parameters: automatic_payment_methods, payment_method_types.",
            param="automatic_payment_methods",
        )
    enabled = try_convert_to_bool(value.get("enabled")) if type(value) is dict else None
    redirects = value.get("allow_redirects", "always") if type(value) is dict else None
    if type(enabled) is not bool or redirects not in ("always", "never") or len(value) > 2:
        raise _refused(f"Invalid automatic_payment_methods: {value}", param="automatic_payment_methods")
    return {"allow_redirects": redirects, "enabled": True} if enabled else None


def _amount_received(self: PaymentIntent) -> int:
    return self.amount if self.status == "succeeded" else 0


PaymentIntent.__init__ = _payment_intent_init_current
PaymentIntent.amount_received = property(_amount_received)


def _off_session(value: Any) -> bool:
    # Stripe: a boolean, or "one_off" / "recurring" (both off-session).
    if value in ("one_off", "recurring"):
        return True
    flag = try_convert_to_bool(value)
    if type(flag) is not bool:
        raise _refused(f"Invalid off_session: {value}", param="off_session")
    return flag


# Stripe sends payment_intent.created (localstripe: no event), and with confirm=true confirms as
# POST /v1/payment_intents/{id}/confirm does (below); confirm=true without a payment method takes the
# customer's default source ("to improve migration for users of the Charges API"), else is refused before
# anything is created (localstripe answers a 500). automatic_payment_methods (localstripe: refused) is on
# by default since 2023-08-16 unless payment_method_types are given, and then allows redirects unless
# allow_redirects=never: such an intent confirmed on creation needs a return_url (400 otherwise, nothing
# created), which off-session charges of saved cards avoid with allow_redirects=never.
_RETURN_URL_NEEDED = (
    "A `return_url` must be specified because this Payment Intent is configured to automatically accept "
    "the payment methods enabled in the Dashboard, some of which may require a full page redirect to "
    "succeed. If you do not want to accept redirect-based payment methods, set "
    "`automatic_payment_methods[enabled]` to `true` and `automatic_payment_methods[allow_redirects]` to "
    "`never` when creating Setup Intents and Payment Intents."
)


@classmethod
def _payment_intent_create(
    cls: type[PaymentIntent],
    confirm: Any = None,
    off_session: Any = None,
    return_url: Any = None,
    **data: Any,
) -> PaymentIntent:
    confirm = try_convert_to_bool(confirm)
    if confirm is not None and type(confirm) is not bool:
        raise _refused(f"Invalid boolean: {confirm}", param="confirm")
    off = False
    if off_session is not None:
        if confirm is not True:
            raise _refused("off_session can only be used with confirm=true.", param="off_session")
        off = _off_session(off_session)
    if return_url is not None and confirm is not True:
        raise _refused("return_url can only be used with confirm=true.", param="return_url")
    automatic = _automatic_payment_methods(
        data.get("automatic_payment_methods"), data.get("payment_method_types")
    )
    if confirm and automatic and automatic["allow_redirects"] != "never" and not return_url:
        raise _refused(_RETURN_URL_NEEDED)
    if confirm and data.get("payment_method") is None:
        customer = data.get("customer")
        default = Customer._api_retrieve(customer).default_source if isinstance(customer, str) else None
        if default is None:
            raise _refused(
                "You cannot confirm this PaymentIntent because it's missing a payment method. Update the "
                "PaymentIntent with a payment method and then confirm it again.",
                code="payment_intent_unexpected_state",
            )
        data["payment_method"] = default
    obj = cls(**data)
    _send("payment_intent.created", obj)
    if confirm:
        _attempt(obj, off)
    return obj


PaymentIntent._api_create = _payment_intent_create


# --- The intent as exported: latest_charge an id ----------------------------------------------------------
# Since 2022-11-15 a PaymentIntent names its latest charge by id (the object only when expanded with
# expand[]=latest_charge, nested paths such as latest_charge.balance_transaction included) and has no
# `charges` list. localstripe exports the whole charge and the legacy list; internally it keeps the object.
def _payment_intent_export(self: PaymentIntent, expand: Any = None) -> dict[str, Any]:
    paths = expand if type(expand) is list else []
    mine = [p for p in paths if type(p) is str and (p == "latest_charge" or p.startswith("latest_charge."))]
    rest = [p for p in paths if p not in mine] if type(expand) is list else expand
    obj = StripeObject._export(self, expand=rest)
    obj.pop("charges", None)
    charge = self.latest_charge
    if charge is None:
        obj["latest_charge"] = None
    elif mine:
        obj["latest_charge"] = charge._export(expand=[p.split(".", 1)[1] for p in mine if "." in p])
    else:
        obj["latest_charge"] = charge.id
    return obj


PaymentIntent._export = _payment_intent_export


# --- Status and last_payment_error -------------------------------------------------------------------
# localstripe derives the status from the latest charge: after a failed attempt an intent given a new
# payment method (POST /v1/payment_intents/{id}) still says requires_payment_method, where Stripe says
# requires_confirmation. last_payment_error is Stripe's error object (type, code, decline_code, doc_url,
# message, charge, payment_method...) once an attempt went through the patches below; localstripe's
# (code and message only) stays for invoice payments it confirmed itself.
_status = PaymentIntent.status.fget
_last_payment_error = PaymentIntent.last_payment_error.fget


def _status_current(self: PaymentIntent) -> str:
    status = _status(self)
    if status == "requires_payment_method" and self.payment_method and self.__dict__.get("_replaced"):
        return "requires_confirmation"
    return status


def _last_payment_error_current(self: PaymentIntent) -> dict[str, Any] | None:
    if "_last_error" in self.__dict__:
        return self._last_error
    return _last_payment_error(self)


PaymentIntent.status = property(_status_current)
PaymentIntent.last_payment_error = property(_last_payment_error_current)


# --- Confirming: authentication, off-session, declines -------------------------------------------------
# localstripe asks authentication (requires_action, HTTP 200) of 3-D Secure cards even off-session, and
# declines with a bare 402 card_declined (no decline_code, no intent), leaving the intent's payment method.
# Stripe, confirming:
# * on-session, a card asking authentication: requires_action with next_action, event
#   payment_intent.requires_action;
# * off-session, a card asking authentication (not exempted by a succeeded off-session SetupIntent, see
#   _EXEMPT_ONCE_SET_UP): a failed charge (failure_code authentication_required) and HTTP 402 card_error
#   code and decline_code authentication_required;
# * a declined card: a failed charge and HTTP 402 card_error with the card's code and decline_code.
# A failed attempt leaves the intent (still retrievable) in requires_payment_method, payment_method null,
# last_payment_error the error (with the payment method object), latest_charge the failed charge; the 402
# body carries the error plus `charge`, `payment_intent` (the intent as it now is) and `payment_method`.
# Events: charge.failed and payment_intent.payment_failed. A charge that succeeds: charge.succeeded, then
# localstripe's payment_intent.succeeded. Charges take the intent's description, metadata (copied, as
# Stripe does), statement descriptor (suffix) and an `outcome` (type authorized / issuer_declined,
# reason = the decline code), and name the intent in `payment_intent`.
def _attempt(obj: PaymentIntent, off_session: bool) -> None:
    obj._last_error = None
    obj._authentication_failed = False
    obj._replaced = False
    obj.next_action = None
    pm = PaymentMethod._api_retrieve(obj.payment_method)
    if pm._requires_authentication() and not (off_session and _set_up_for_off_session(pm)):
        if off_session:
            _charge(obj, pm, _AUTHENTICATION_REQUIRED)  # raises
        obj.next_action = dict(_NEXT_ACTION)
        _send("payment_intent.requires_action", obj)
        return
    _charge(obj, pm)


def _outcome(decline: _Decline | None) -> dict[str, Any]:
    if decline is None:
        return {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "seller_message": "Payment complete.",
            "type": "authorized",
        }
    return {
        "network_status": "declined_by_network",
        "reason": decline.decline_code,
        "risk_level": "normal",
        "seller_message": "The bank did not return any further details with this decline."
        if decline.decline_code == "generic_decline"
        else f"The bank returned the decline code `{decline.decline_code}`.",
        "type": "issuer_declined",
    }


def _charge(obj: PaymentIntent, pm: Any, decline: _Decline | None = None) -> None:
    decline = decline or _decline_for(pm)
    charge = Charge(
        amount=obj.amount,
        currency=obj.currency,
        customer=obj.customer,
        source=pm.id,
        capture=obj.capture_method != "manual",
        description=obj.description,
        metadata=dict(obj.metadata or {}),
        statement_descriptor=obj.statement_descriptor,
    )
    charge.payment_intent = obj.id
    charge.statement_descriptor_suffix = obj.statement_descriptor_suffix
    charge.outcome = _outcome(decline)
    charge._authorized = decline is None
    obj.latest_charge = charge

    def succeeded() -> None:
        _send("charge.succeeded", charge)
        obj._on_success()  # localstripe's: payment_intent.succeeded, the invoice paid

    def failed_later() -> None:  # asynchronous methods (SEPA debits)
        _send("charge.failed", charge)
        obj._report_async_failure()

    charge._initialize_charge(succeeded, lambda: None, failed_later)
    if charge.status == "failed":
        raise _failed(obj, pm, charge, decline or _GENERIC)
    if charge.status == "succeeded" and not charge.captured:  # capture_method=manual: authorized
        _send("charge.succeeded", charge)


def _failed(obj: PaymentIntent, pm: Any, charge: Charge, decline: _Decline) -> UserError:
    charge.failure_code = decline.code
    charge.failure_message = decline.message
    error = {
        "type": "card_error",
        "code": decline.code,
        "decline_code": decline.decline_code,
        "doc_url": _DOCS + decline.code.replace("_", "-"),
        "message": decline.message,
        "charge": charge.id,
        "payment_method": pm._export(),
        "payment_method_type": getattr(pm, "type", "card"),
    }
    obj._last_error = error
    obj.payment_method = None
    _send("charge.failed", charge)
    _send("payment_intent.payment_failed", obj)
    if obj.invoice:
        Invoice._api_retrieve(obj.invoice)._on_payment_failure_now()
    return UserError(402, decline.message, {**error, "payment_intent": obj._export()})


def _use_payment_method(obj: PaymentIntent, value: Any) -> None:
    if type(value) is not str or not value.startswith(("pm_", "card_", "src_")):
        raise _refused(f"Invalid payment_method: {value}", param="payment_method")
    try:
        pm = PaymentMethod._api_retrieve(value)
    except UserError:
        raise _refused(
            f"No such PaymentMethod: '{value}'", param="payment_method", code="resource_missing"
        ) from None
    obj.payment_method = pm.id
    obj.next_action = None
    obj._replaced = True


# POST /v1/payment_intents/{id}/confirm: localstripe answers a 500 ("Not implemented") to payment_method,
# refuses off_session, client_secret and use_stripe_sdk, and confirms only from requires_confirmation.
# Stripe confirms from requires_payment_method (with a payment method: a retry after a failed attempt),
# requires_confirmation and requires_action, taking payment_method (the new one replaces the old),
# off_session, return_url and use_stripe_sdk; stripe.js also sends client_secret (which must match: 400)
# and expected_payment_method_type. Not the intent's status: 400 payment_intent_unexpected_state.
_CLIENT_SECRET_MISMATCH = (
    "The client_secret provided does not match the client_secret associated with the PaymentIntent."
)


@classmethod
def _payment_intent_confirm(
    cls: type[PaymentIntent],
    id: str,
    payment_method: Any = None,
    off_session: Any = None,
    client_secret: Any = None,
    return_url: Any = None,
    use_stripe_sdk: Any = None,
    expected_payment_method_type: Any = None,
    **unknown: Any,
) -> PaymentIntent:
    if unknown:
        raise _unknown_parameter(unknown)
    obj = cls._api_retrieve(id)
    if client_secret is not None and client_secret != obj.client_secret:
        raise _refused(_CLIENT_SECRET_MISMATCH, param="client_secret")
    off = False if off_session is None else _off_session(off_session)
    if obj.status not in _ALLOWED["confirm"][1]:
        raise _unexpected_state(obj, "confirm")
    if payment_method is not None:
        _use_payment_method(obj, payment_method)
    elif obj.payment_method is None:
        raise _refused(
            "You cannot confirm this PaymentIntent because it's missing a payment method. Update the "
            "PaymentIntent with a payment method and then confirm it again.",
            code="payment_intent_unexpected_state",
            payment_intent=obj._export(),
        )
    _attempt(obj, off)
    return obj


PaymentIntent._api_confirm = _payment_intent_confirm
_reroute("POST", "/v1/payment_intents/{id}/confirm", PaymentIntent._api_confirm)


# stripe.js confirms with the publishable key (as `key` in the body, or a Bearer pk_ header) and the
# client_secret; localstripe's authentication takes a publishable key on _authenticate and SetupIntent
# paths only (401 here). A confirm carrying a pk_ key and a client_secret is let through; the client_secret
# is then checked against the intent's (above). stripe.js also retrieves an intent with the publishable
# key: GET /v1/payment_intents/{id}?client_secret=... answers the intent when the secret is its own (else
# 400, as Stripe answers), and only then.
_CONFIRM_PATH = re.compile(r"^/v1/payment_intents/\w+/confirm$")
_RETRIEVE_PATH = re.compile(r"^/v1/payment_intents/(\w+)$")
_auth_middleware = ls_server.auth_middleware


def _retrieved_with_client_secret(request: web.Request) -> web.Response | None:
    match = _RETRIEVE_PATH.match(request.path)
    header = request.headers.get("Authorization", "")
    key = request.query.get("key") or header.removeprefix("Bearer ")
    if match is None or not key.startswith("pk_"):
        return None
    obj = resources.store.get(f"payment_intent:{match[1]}")
    secret = request.query.get("client_secret")
    if obj is None or not secret or secret != obj.client_secret:
        error = {"type": "invalid_request_error", "param": "client_secret"}
        return web.json_response({"error": {**error, "message": _CLIENT_SECRET_MISMATCH}}, status=400)
    return web.json_response(obj._export())


@web.middleware
async def _auth_with_client_secret(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    if request.method == "GET":
        answer = _retrieved_with_client_secret(request)
        if answer is not None:
            return answer
    if request.method == "POST" and _CONFIRM_PATH.match(request.path):
        header = request.headers.get("Authorization", "")
        data = await ls_server.get_post_data(request, remove_auth=False) or {}
        key = data.get("key") if "key" in data else header.removeprefix("Bearer ")
        if (
            isinstance(key, str)
            and key.startswith("pk_")
            and isinstance(data.get("client_secret"), str)
            and data["client_secret"]
        ):
            return await handler(request)
    return await _auth_middleware(request, handler)


ls_server.app._middlewares[list(ls_server.app.middlewares).index(_auth_middleware)] = _auth_with_client_secret


# --- Updating the payment method ---------------------------------------------------------------------------
# POST /v1/payment_intents/{id} with payment_method: allowed while the intent awaits a payment method,
# confirmation or action (else 400 payment_intent_unexpected_state; localstripe changes a succeeded
# intent's method), checked as in confirm; the intent then requires confirmation. The statement descriptors
# are checked as on creation.
_stripe_object_update = StripeObject.__dict__["_api_update"].__func__


@classmethod
def _payment_intent_update(cls: type[PaymentIntent], id: str, **data: Any) -> PaymentIntent:
    obj = cls._api_retrieve(id)
    _check_descriptors(
        data.get("statement_descriptor"), data.get("statement_descriptor_suffix"), obj.payment_method_types
    )
    if "payment_method" in data:
        if obj.status not in _ALLOWED["update"][1]:
            raise _unexpected_state(obj, "update")
        _use_payment_method(obj, data.pop("payment_method"))
    return _stripe_object_update(cls, id, **data) if data else obj


PaymentIntent._api_update = _payment_intent_update


# --- Authentication (localstripe's test endpoint) --------------------------------------------------------
# POST /v1/payment_intents/{id}/_authenticate?client_secret=...&success=true|false: the customer passes or
# fails 3-D Secure (what localstripe's stand-in stripe.js confirmCardPayment calls). Passed: the charge is
# made as in confirming (charge.succeeded, payment_intent.succeeded; or a decline: 402 as above, e.g.
# insufficient_funds for 4000008260003178). Failed: localstripe leaves last_payment_error without type or
# payment method and sends no event; Stripe's intent is back in requires_payment_method, payment_method
# null, last_payment_error code payment_intent_authentication_failure, event payment_intent.payment_failed.
# The client_secret must match (localstripe's 401); another status than requires_action: 400
# payment_intent_unexpected_state.
_AUTHENTICATION_FAILED = (
    "The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new "
    "PaymentMethod to attempt to fulfill this PaymentIntent again."
)


@classmethod
def _payment_intent_authenticate(
    cls: type[PaymentIntent], id: str, client_secret: Any = None, success: Any = False, **unknown: Any
) -> PaymentIntent:
    if unknown:
        raise _unknown_parameter(unknown)
    success = try_convert_to_bool(success)
    if type(success) is not bool:
        raise _refused("Invalid boolean: success must be true or false", param="success")
    obj = cls._api_retrieve(id)
    if type(client_secret) is not str or client_secret != obj.client_secret:
        raise UserError(401, "Unauthorized")
    if obj.status != "requires_action":
        raise _unexpected_state(obj, "authenticate")
    obj.next_action = None
    pm = PaymentMethod._api_retrieve(obj.payment_method)
    if success:
        _charge(obj, pm)
        return obj
    obj._last_error = {
        "type": "invalid_request_error",
        "code": "payment_intent_authentication_failure",
        "doc_url": _DOCS + "payment-intent-authentication-failure",
        "message": _AUTHENTICATION_FAILED,
        "payment_method": pm._export(),
        "payment_method_type": getattr(pm, "type", "card"),
    }
    obj.payment_method = None
    _send("payment_intent.payment_failed", obj)
    if obj.invoice:
        Invoice._api_retrieve(obj.invoice)._on_payment_failure_later()  # as localstripe does
    return obj


PaymentIntent._api_authenticate = _payment_intent_authenticate
_reroute("POST", "/v1/payment_intents/{id}/_authenticate", PaymentIntent._api_authenticate)


# --- Cancel ---------------------------------------------------------------------------------------------
# Stripe sends payment_intent.canceled, takes and reports cancellation_reason (abandoned, duplicate,
# fraudulent, requested_by_customer) and canceled_at; localstripe sends nothing and rejects the reason.
_CANCELLATION_REASONS = (None, "abandoned", "duplicate", "fraudulent", "requested_by_customer")
_payment_intent_cancel = PaymentIntent.__dict__["_api_cancel"].__func__


@classmethod
def _payment_intent_cancel_told(
    cls: type[PaymentIntent], id: str, cancellation_reason: Any = None, **data: Any
) -> PaymentIntent:
    if cancellation_reason not in _CANCELLATION_REASONS:
        raise _refused(f"Invalid cancellation_reason: {cancellation_reason}", param="cancellation_reason")
    known = resources.store.get(f"payment_intent:{id}") if isinstance(id, str) else None
    if known is not None and known.status not in _ALLOWED["cancel"][1]:
        raise _unexpected_state(known, "cancel")
    obj = _payment_intent_cancel(cls, id, **data)
    obj.cancellation_reason = cancellation_reason
    obj.canceled_at = int(time.time())
    _send("payment_intent.canceled", obj)
    return obj


PaymentIntent._api_cancel = _payment_intent_cancel_told
_reroute("POST", "/v1/payment_intents/{id}/cancel", PaymentIntent._api_cancel)


# --- Lists ------------------------------------------------------------------------------------------------
# GET /v1/payment_intents filters by customer and created (a timestamp, or gt/gte/lt/lte), newest first;
# localstripe refuses any filter and lists oldest first. GET /v1/charges?payment_intent=pi_...: localstripe's
# charge list answers a 500 to the parameter (its order, oldest first, is left alone).
@classmethod
def _payment_intent_list(
    cls: type[PaymentIntent],
    url: str,
    customer: Any = None,
    created: Any = None,
    limit: Any = None,
    starting_after: Any = None,
    **unknown: Any,
) -> List:
    if unknown:
        raise _unknown_parameter(unknown)
    _refuse_invalid_id("customer", customer)
    tests = _created_tests(created)
    listed = List(url, limit=limit, starting_after=starting_after)
    newest_first = [  # the store keeps creation order: reversed, then sorted stably by `created`
        obj
        for key, obj in reversed(resources.store.items())
        if key.startswith("payment_intent:")
        and customer in (None, obj.customer)
        and all(test(obj.created) for test in tests)
    ]
    listed._list = sorted(newest_first, key=lambda obj: obj.created, reverse=True)
    return listed


_charge_list = Charge.__dict__["_api_list_all"].__func__


@classmethod
def _charge_list_by_intent(cls: type[Charge], url: str, payment_intent: Any = None, **kwargs: Any) -> List:
    _refuse_invalid_id("payment_intent", payment_intent)
    listed = _charge_list(cls, url, **kwargs)
    if payment_intent is not None:
        listed._list = [charge for charge in listed._list if charge.payment_intent == payment_intent]
    return listed


PaymentIntent._api_list_all = _payment_intent_list
Charge._api_list_all = _charge_list_by_intent


# --- Refunds --------------------------------------------------------------------------------------------
# A refund by `payment_intent` refunds its latest charge; localstripe's answers a 500 for an intent without
# a charge, and skips server.py's checks (what is left to refund, the default amount), which only see
# `charge`. It is made here as a refund of that charge. Every refund (by charge too) names the intent in
# `payment_intent`. Stripe sends refund.created and charge.refunded (the charge with its new
# amount_refunded / refunded; previous_attributes the old amount_refunded); localstripe sends neither.
# refunds.list(payment_intent=...) of an intent without a charge: an empty list (localstripe: a 500).
_refund_init = Refund.__init__  # server.py's


def _refund_init_for_intents(
    self: Refund, charge: Any = None, payment_intent: Any = None, **kwargs: Any
) -> None:
    if charge is None and isinstance(payment_intent, str) and payment_intent.startswith("pi_"):
        intent = PaymentIntent._api_retrieve(payment_intent)
        paid = intent.latest_charge
        if paid is None or paid.status != "succeeded":
            raise _refused(
                f"This PaymentIntent ({payment_intent}) does not have a successful charge to refund.",
                param="payment_intent",
            )
        _refund_init(self, charge=paid.id, **kwargs)
    else:
        _refund_init(self, charge=charge, payment_intent=payment_intent, **kwargs)
    refunded = resources.store.get(f"charge:{self.charge}")
    self.payment_intent = refunded.payment_intent if refunded is not None else self.payment_intent


@classmethod
def _refund_create(cls: type[Refund], **data: Any) -> Refund:
    obj = cls(**data)
    charge = Charge._api_retrieve(obj.charge)
    _send("refund.created", obj)
    _send("charge.refunded", charge, {"amount_refunded": charge.amount_refunded - obj.amount})
    return obj


_refund_list = Refund.__dict__["_api_list_all"].__func__


@classmethod
def _refund_list_for_intents(cls: type[Refund], url: str, payment_intent: Any = None, **kwargs: Any) -> List:
    if (
        kwargs.get("charge") is None
        and isinstance(payment_intent, str)
        and payment_intent.startswith("pi_")
        and PaymentIntent._api_retrieve(payment_intent).latest_charge is None
    ):
        return List(url, limit=kwargs.get("limit"), starting_after=kwargs.get("starting_after"))
    return _refund_list(cls, url, payment_intent=payment_intent, **kwargs)


Refund.__init__ = _refund_init_for_intents
Refund._api_create = _refund_create
Refund._api_list_all = _refund_list_for_intents
