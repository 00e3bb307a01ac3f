"""Invoices and renewals of the fake Stripe (current API): the gaps of localstripe 1.15 the library meets.

Imported by :mod:`aa_stripe.testing.fakestripe.server` (after subscriptions.py, whose invoices these are).
Each patch says which gap it fills; what they do follows Stripe's API reference for ``/v1/invoices`` at the
pinned API version (the parameters of stripe-python 16's ``InvoiceListParams`` / ``InvoiceRetrieveParams``)
and Stripe's subscription guides (renewals, failed and authentication-asking renewal payments), never more
than the library and its tests need.

An invoice as exported: ``id``, ``customer``, ``status`` (draft, open, paid, void), ``billing_reason``
(subscription_create, subscription_cycle), ``amount_due``, ``amount_paid``, ``currency``, ``created``,
``period_start`` / ``period_end``, ``lines``, the subscription at ``parent.subscription_details.subscription``
(and, legacy, ``subscription``), ``status_transitions``; once finalized ``number``, ``hosted_invoice_url``
and ``invoice_pdf`` (null on drafts); ``confirmation_secret`` when expanded (subscriptions.py).

Limits: ``POST /v1/invoices`` (drafts made by hand), ``/finalize``, ``/pay`` and ``/void`` stay localstripe's;
no automatic retries (Smart Retries), dunning or ``uncollectible``; renewals happen only when a test asks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from localstripe import resources
from localstripe.errors import UserError
from localstripe.resources import Invoice, List, Subscription, random_id, try_convert_to_int

from aa_stripe.testing.fakestripe.catalog import (
    _created_tests,
    _refuse_invalid_id,
    _refused,
    _send,
    _unknown_parameter,
)
from aa_stripe.testing.fakestripe.intents import _add_route
from aa_stripe.testing.fakestripe.payment_intents import _NEXT_ACTION, _charge, _set_up_for_off_session
from aa_stripe.testing.fakestripe.subscriptions import (
    _announcing,
    _invoice_intent,
    _payment_method_of,
    _subscription_invoice,
)

_ACCOUNT = "acct_1FakeStripeAccount"  # the account the hosted pages name; any fixed id
_STATUSES = ("draft", "open", "paid", "uncollectible", "void")


# --- number, hosted_invoice_url, invoice_pdf ----------------------------------------------------------------
# localstripe's invoices have none of them. Stripe gives an invoice them when it is finalized (drafts: null):
# `number` is the customer's invoice prefix and the customer's next sequence number ("A1B2C3D4-0001", then
# -0002...; Stripe's default customer-level numbering), `hosted_invoice_url` the invoice's page and
# `invoice_pdf` its PDF. The prefix, which Stripe picks at random per customer, is derived from the customer
# id here, so it is stable. localstripe leaves draft in three places (_finalize, pay, void), all by setting
# `_draft`: that attribute becomes a property whose setter numbers the invoice once.
def _prefix(customer: str) -> str:
    return hashlib.sha256(customer.encode()).hexdigest()[:8].upper()


def _get_draft(self: Invoice) -> bool:
    return self.__dict__.get("_is_draft", True)


def _set_draft(self: Invoice, value: bool) -> None:
    self.__dict__["_is_draft"] = value
    if value or "_number" in self.__dict__:
        return
    numbered = sum(
        1
        for key, obj in resources.store.items()
        if key.startswith("invoice:") and obj.customer == self.customer and "_number" in obj.__dict__
    )
    self.__dict__["_number"] = f"{_prefix(self.customer)}-{numbered + 1:04d}"
    self.__dict__["_page"] = f"{_ACCOUNT}/test_{random_id(24)}"


def _page(self: Invoice, url: str) -> str | None:
    page = self.__dict__.get("_page")
    return url.format(page) if page else None


Invoice._draft = property(_get_draft, _set_draft)
Invoice.number = property(lambda self: self.__dict__.get("_number"))
Invoice.hosted_invoice_url = property(lambda self: _page(self, "https://invoice.stripe.com/i/{}"))
Invoice.invoice_pdf = property(lambda self: _page(self, "https://pay.stripe.com/invoice/{}/pdf"))


# --- invoice.finalized -----------------------------------------------------------------------------------
# Stripe sends invoice.finalized when an invoice is finalized (the invoice open, or paid at once when
# nothing is due); localstripe sends none.
_finalize = Invoice._finalize


def _finalize_told(self: Invoice) -> None:
    _finalize(self)
    _send("invoice.finalized", self)


Invoice._finalize = _finalize_told


# --- The invoice list ----------------------------------------------------------------------------------
# GET /v1/invoices filters by customer, subscription, status and created (a timestamp, or gt/gte/lt/lte),
# pages with limit (1 to 100) and starting_after, newest first. localstripe takes customer and subscription
# only (404 for an unknown one, where Stripe lists nothing), sorts by the legacy `date`, and answers a 500 to
# any other keyword (here: 400, as Stripe answers an unknown parameter).
@classmethod
def _invoice_list(
    cls: type[Invoice],
    url: str,
    customer: Any = None,
    subscription: Any = None,
    status: Any = None,
    created: Any = None,
    limit: Any = None,
    starting_after: Any = None,
    **unknown: Any,
) -> List:
    if unknown:
        raise _unknown_parameter(unknown)
    _refuse_invalid_id("customer", customer)
    _refuse_invalid_id("subscription", subscription)
    if status is not None and status not in _STATUSES:
        raise _refused(f"Invalid status: must be one of {', '.join(_STATUSES)}", param="status")
    number = try_convert_to_int(limit) if limit is not None else 10
    if type(number) is not int or not 1 <= number <= 100:
        raise _refused("Invalid limit: must be an integer between 1 and 100", param="limit")
    tests = _created_tests(created)
    listed = List(url, limit=number, starting_after=starting_after)
    newest_first = [  # the store keeps creation order: reversed, then sorted stably by `created`
        obj
        for key, obj in reversed(resources.store.items())
        if key.startswith("invoice:")
        and customer in (None, obj.customer)
        and subscription in (None, obj.subscription)
        and status in (None, obj.status)
        and all(test(obj.created) for test in tests)
    ]
    listed._list = sorted(newest_first, key=lambda obj: obj.created, reverse=True)
    return listed


Invoice._api_list_all = _invoice_list


# --- Renewals (test-only) ------------------------------------------------------------------------------
# POST /v1/subscriptions/{id}/_renew: what Stripe does when an active (or past_due) subscription's period
# ends (real Stripe by its clock, or a test clock; there is no such endpoint). The period (items'
# current_period_start/_end) moves one interval on and the next invoice is made: billing_reason
# subscription_cycle, its line the price for the new period, while the invoice's own period_start/_end
# "look back one period" (Stripe's API reference): the period that just ended. Events: invoice.created (a
# draft), customer.subscription.updated (the period, latest_invoice), invoice.finalized,
# payment_intent.created. The invoice is then paid off-session with the subscription's
# default_payment_method, else the customer's invoice_settings.default_payment_method, else its default
# source:
# * paid: charge.succeeded, payment_intent.succeeded, invoice.paid, invoice.payment_succeeded; the
#   subscription stays active (a past_due one becomes active again);
# * the bank asks for authentication (a card that asks every time, or one not set up for off-session use;
#   see payment_intents.py): as for Stripe's invoices, the PaymentIntent waits in requires_action (no
#   charge), the invoice stays open; payment_intent.requires_action, invoice.payment_action_required,
#   invoice.payment_failed;
# * declined, or no payment method: the invoice stays open, its PaymentIntent in requires_payment_method
#   with last_payment_error; charge.failed, payment_intent.payment_failed (not without a payment method),
#   invoice.payment_failed.
# The last two make the subscription past_due (customer.subscription.updated). The customer then pays the
# invoice on-session: its confirmation_secret (expand[]=confirmation_secret) confirms the PaymentIntent with
# a card, or authenticates it (_authenticate); paid, the subscription is active again (invoice.paid,
# customer.subscription.updated). Any other status (incomplete, trialing, canceled...): 400.
_RENEWABLE = ("active", "past_due")


def _look_back(period: dict[str, int]) -> Callable[[Invoice], None]:
    def adjust(invoice: Invoice) -> None:
        invoice.period_start, invoice.period_end = period["start"], period["end"]

    return adjust


@classmethod
def _subscription_renew(cls: type[Subscription], id: str, **unknown: Any) -> Subscription:
    if unknown:
        raise _unknown_parameter(unknown)
    sub = cls._api_retrieve(id)
    if sub.status not in _RENEWABLE:
        raise _refused(f"Only an active or past_due subscription renews; this one is {sub.status}.")
    ended = sub.items._list[0]._current_period()
    with _announcing(sub):
        sub._renewals = sub.__dict__.get("_renewals", 0) + 1
        invoice = _subscription_invoice(sub, "subscription_cycle", _look_back(ended))
    invoice._finalize()
    if invoice.total <= 0:
        invoice._on_payment_success()
        return sub
    pi = _invoice_intent(invoice, "Subscription update")
    pm = _payment_method_of(sub)
    if pm is None:
        invoice._on_payment_failure_now()  # invoice.payment_failed; past_due
        return sub
    pi.payment_method = pm.id
    pi._last_error, pi._authentication_failed, pi._replaced, pi.next_action = None, False, False, None
    if pm._requires_authentication() and not _set_up_for_off_session(pm):
        pi.next_action = dict(_NEXT_ACTION)
        _send("payment_intent.requires_action", pi)
        _send("invoice.payment_action_required", invoice)
        # Stripe's invoice.payment_failed: "A payment for an invoice failed. The PaymentIntent status
        # changes to requires_action." It is sent for an authentication-needing renewal too.
        _send("invoice.payment_failed", invoice)
        with _announcing(sub):
            sub.status = "past_due"
        return sub
    try:
        _charge(pi, pm)  # paid: the invoice paid; declined: invoice.payment_failed, past_due, then raises
    except UserError as err:
        if err.code != 402:
            raise
    return sub


Subscription._api_renew = _subscription_renew
_add_route("POST", "/v1/subscriptions/{id}/_renew", Subscription._api_renew)


# --- Invoice payments ----------------------------------------------------------------------------------
# localstripe has no InvoicePayment (/v1/invoice_payments, the way API 2025-03-31 links an invoice to its
# PaymentIntents since invoice.payment_intent was removed). The library lists an invoice's payments (with
# data.payment.payment_intent expanded) to tell a renewal waiting for authentication from a declined one.
# One payment per invoice (localstripe's invoices have one PaymentIntent); filter: invoice (required here).
class _InvoicePayments:
    def __init__(self, invoice: Invoice) -> None:
        self.invoice = invoice

    def _export(self, expand: Any = None) -> dict[str, Any]:
        wanted = expand if isinstance(expand, list) else [expand] if expand else []
        data = []
        intent_id = getattr(self.invoice, "payment_intent", None)
        if intent_id:
            intent = resources.PaymentIntent._api_retrieve(intent_id)
            expanded = "data.payment.payment_intent" in wanted
            data.append(
                {
                    "id": "inpay_" + hashlib.sha256(intent_id.encode()).hexdigest()[:24],
                    "object": "invoice_payment",
                    "invoice": self.invoice.id,
                    "is_default": True,
                    "amount_requested": self.invoice.amount_due,
                    "amount_paid": self.invoice.amount_paid,
                    "currency": self.invoice.currency,
                    "status": "paid" if self.invoice.status == "paid" else "open",
                    "payment": {
                        "type": "payment_intent",
                        "payment_intent": intent._export() if expanded else intent_id,
                    },
                }
            )
        return {"object": "list", "url": "/v1/invoice_payments", "has_more": False, "data": data}


def _invoice_payments_list(invoice: Any = None, limit: Any = None, **unknown: Any) -> _InvoicePayments:
    if unknown:
        raise _unknown_parameter(unknown)
    if type(invoice) is not str:
        raise _refused("The fake lists invoice payments of one invoice: give invoice.", param="invoice")
    return _InvoicePayments(Invoice._api_retrieve(invoice))


_add_route("GET", "/v1/invoice_payments", _invoice_payments_list)
