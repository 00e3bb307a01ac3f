"""The ``stripeInvoices`` workload of graphql_pages.py: a page of 100 of the user's invoices, newest
first, each with its subscription, as the four variants answer it (a helper module, not a benchmark of
its own).

Imported after ``django.setup()``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import F
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from graphql_relay import to_global_id

from aa_stripe.models import StripeCustomer, StripeInvoice, StripeSubscription

PAGE = 100

INVOICES_QUERY = """
query Invoices {
  stripeInvoices(first: 100) {
    edges { node {
      id stripeInvoiceId number status amountDue amountPaid currency hostedInvoiceUrl invoicePdf
      periodStart periodEnd created
      subscription { stripeSubscriptionId status }
    } }
  }
}
"""

# Added to graphql_pages.SDL for the bare graphql-core variant (StripeSubscription is declared there).
INVOICES_SDL = """
enum StripeInvoiceStatus { DRAFT OPEN PAID UNCOLLECTIBLE VOID }
type StripeInvoice {
  id: ID! stripeInvoiceId: String! number: String status: StripeInvoiceStatus amountDue: Int!
  amountPaid: Int! currency: String! hostedInvoiceUrl: String invoicePdf: String periodStart: DateTime
  periodEnd: DateTime created: DateTime! subscription: StripeSubscription
}
type StripeInvoiceEdge { node: StripeInvoice }
type StripeInvoiceConnection { edges: [StripeInvoiceEdge]! }
extend type Query { stripeInvoices(first: Int): StripeInvoiceConnection }
"""
#: Enums of INVOICES_SDL whose values graphql_pages makes the models' lower-case ones.
ENUMS = ("StripeInvoiceStatus",)

ATTRIBUTES = {
    "stripeInvoiceId": "stripe_invoice_id",
    "amountDue": "amount_due",
    "amountPaid": "amount_paid",
    "hostedInvoiceUrl": "hosted_invoice_url",
    "invoicePdf": "invoice_pdf",
    "periodStart": "period_start",
    "periodEnd": "period_end",
}


def invoices(request: HttpRequest) -> Any:
    """The page as the GraphQL type filters and orders it: the user's own, unless staff may see all."""
    queryset = StripeInvoice.objects.order_by(
        Coalesce(F("stripe_created"), F("created")).desc(), "-pk"
    ).select_related("subscription")
    user = request.user
    if not user.is_authenticated:
        return queryset.none()
    if not (user.is_active and user.has_perm("aa_stripe.view_stripeinvoice")):
        queryset = queryset.filter(customer__user_id=user.pk)
    return queryset[:PAGE]


def created(invoice: StripeInvoice) -> Any:
    return invoice.stripe_created or invoice.created


def visible_subscription(request: HttpRequest, invoice: StripeInvoice) -> StripeSubscription | None:
    """The invoice's subscription under the rules of stripeSubscriptions."""
    subscription = invoice.subscription
    if subscription is None:
        return None
    user = request.user
    if subscription.user_id == user.pk or (
        user.is_active and user.has_perm("aa_stripe.view_stripesubscription")
    ):
        return subscription
    return None


def hand_invoices(request: HttpRequest) -> dict[str, Any]:
    """The hand-written view's answer."""
    edges = []
    for invoice in invoices(request):
        subscription = visible_subscription(request, invoice)
        node = {
            "id": to_global_id("StripeInvoice", invoice.pk),
            "stripeInvoiceId": invoice.stripe_invoice_id,
            "number": invoice.number or None,
            "status": invoice.status.upper() if invoice.status else None,
            "amountDue": invoice.amount_due,
            "amountPaid": invoice.amount_paid,
            "currency": invoice.currency,
            "hostedInvoiceUrl": invoice.hosted_invoice_url or None,
            "invoicePdf": invoice.invoice_pdf or None,
            "periodStart": invoice.period_start.isoformat() if invoice.period_start else None,
            "periodEnd": invoice.period_end.isoformat() if invoice.period_end else None,
            "created": created(invoice).isoformat(),
            "subscription": {
                "stripeSubscriptionId": subscription.stripe_subscription_id,
                "status": subscription.status.upper() if subscription.status else None,
            }
            if subscription
            else None,
        }
        edges.append({"node": node})
    return {"stripeInvoices": {"edges": edges}}


def core_root(request: HttpRequest) -> dict[str, Any]:
    """The root value of the bare graphql-core variant."""
    return {"stripeInvoices": {"edges": [{"node": invoice} for invoice in invoices(request)]}}


def seed(customer: StripeCustomer, subscriptions: list[StripeSubscription], other: StripeCustomer) -> None:
    """100 invoices of ``customer``, one a month, billing ``subscriptions`` in turn (every tenth bills
    none: a one-off), and 10 of ``other`` the page leaves out."""
    from tests.graphql_helpers import FIXED

    def row(owner: StripeCustomer, i: int, subscription: StripeSubscription | None) -> StripeInvoice:
        made = FIXED + timedelta(days=30 * i)
        return StripeInvoice(
            customer=owner,
            subscription=subscription,
            stripe_subscription_id=subscription.stripe_subscription_id if subscription else "",
            stripe_invoice_id=f"in_bench_{owner.pk}_{i:04d}",
            number=f"BENCH{owner.pk}-{i + 1:04d}",
            status=StripeInvoice.STATUS_OPEN if i == PAGE - 1 else StripeInvoice.STATUS_PAID,
            billing_reason="subscription_cycle" if subscription else "manual",
            amount_due=1500,
            amount_paid=0 if i == PAGE - 1 else 1500,
            currency="usd",
            hosted_invoice_url=f"https://invoice.stripe.com/i/acct_bench/test_{owner.pk}_{i}",
            invoice_pdf=f"https://pay.stripe.com/invoice/acct_bench/test_{owner.pk}_{i}/pdf",
            period_start=made - timedelta(days=30),
            period_end=made,
            stripe_created=made,
        )

    rows = [
        row(customer, i, None if i % 10 == 9 else subscriptions[i % len(subscriptions)]) for i in range(PAGE)
    ]
    rows += [row(other, i, None) for i in range(10)]
    StripeInvoice.objects.bulk_create(rows)
