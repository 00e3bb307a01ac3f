"""GraphQL type of invoices: ``StripeInvoice`` (GRAPHQL.md, "Prices, products and invoices").

Invoices are a mirror of Stripe's (``invoice.*`` events, ``refresh_invoices``), read-only here. Their
owner is their customer's user: a signed-in user sees the invoices of their own customers, staff with
``aa_stripe.view_stripeinvoice`` see all (``stripeInvoices`` and ``node(id)`` alike). A page resolves in
a constant number of SQL queries: the customer's user id is read with the page (the owner checks
need nothing more of the customer), the subscription and what it shows are joined only when the query
asks for them. ``clientSecret`` is the one field
that calls Stripe, and only for the owner of an open invoice.
"""

from __future__ import annotations

from typing import Any

import graphene
from django.db.models import F, Prefetch, QuerySet
from django.db.models.functions import Coalesce
from graphene import relay
from graphql_relay import from_global_id

from aa_stripe.models import StripeInvoice, StripePrice, StripeSubscription

from .enums import StripeInvoiceStatus
from .errors import masked
from .permissions import has_perm, owned_or_all, stripe_user
from .types import (
    StripeConnection,
    StripeNode,
    StripeSubscriptionType,
    _asks_for,
    _node_pk,
    owner_client_secret,
)

#: The owner's id, annotated on every row of get_queryset (the customer's other columns are not read).
OWNER = "owner_user_id"
#: What an invoice's subscription shows under it: the relations joined when the query asks for them,
#: and the products' prices, fetched in one query for the whole page.
_SUBSCRIPTION_JOINS = {
    ("subscription",): "subscription",
    ("subscription", "plan"): "subscription__plan",
    ("subscription", "coupon"): "subscription__coupon",
    ("subscription", "price"): "subscription__price__product",
}
_SUBSCRIPTION_PRODUCT_PRICES = ("subscription", "price", "product", "prices")


def _owns(info: Any, invoice: StripeInvoice) -> bool:
    """Whether the request's Stripe user owns ``invoice`` (its customer's user). No SQL for the rows
    of get_queryset (the owner's id is annotated)."""
    owner = stripe_user(info.context)
    if owner is None or owner.pk is None:
        return False
    owner_id = getattr(invoice, OWNER) if hasattr(invoice, OWNER) else invoice.customer.user_id
    return owner_id == owner.pk


class StripeInvoiceType(StripeNode):
    stripe_invoice_id = graphene.String(required=True, description="Stripe's id of the invoice (in_...).")
    number = graphene.String(
        description="The number printed on the invoice (e.g. ABC-0001); null while it is a draft."
    )
    status = graphene.Field(StripeInvoiceStatus, description="Stripe's status; null when not known yet.")
    amount_due = graphene.Int(required=True, description="To be paid, in the currency's minor unit.")
    amount_paid = graphene.Int(required=True, description="Paid so far, in the currency's minor unit.")
    currency = graphene.String(required=True, description="Lower-case ISO currency code.")
    hosted_invoice_url = graphene.String(
        description="Stripe's page of the invoice, where the customer can see and pay it; null for a draft."
    )
    invoice_pdf = graphene.String(description="Link to the invoice's PDF at Stripe; null for a draft.")
    period_start = graphene.DateTime(description="Start of the period billed; null when unknown.")
    period_end = graphene.DateTime(description="End of the period billed; null when unknown.")
    subscription = graphene.Field(
        StripeSubscriptionType,
        description="The subscription billed; null for other invoices, for one not known here, and "
        "unless it is yours or you have aa_stripe.view_stripesubscription.",
    )
    client_secret = graphene.String(
        description="For stripe.js (confirmCardPayment) while the invoice is OPEN, and only to the "
        "invoice's own user (null otherwise, staff included): the secret of its PaymentIntent, to pay "
        "it on-session. Never stored here: read from Stripe (one request per open invoice) when asked "
        "for, which also updates the invoice."
    )
    created = graphene.DateTime(
        required=True, description="When Stripe made the invoice (when it was saved here, if unknown)."
    )

    class Meta:
        model = StripeInvoice
        name = "StripeInvoice"
        description = (
            "A Stripe invoice of one of a user's customers (a subscription's renewal, ...), mirrored "
            "from Stripe: read-only."
        )
        interfaces = (relay.Node,)
        connection_class = StripeConnection
        fields = ("id",)

    @staticmethod
    def resolve_number(root: StripeInvoice, info: Any) -> str | None:
        return root.number or None

    @staticmethod
    def resolve_status(root: StripeInvoice, info: Any) -> str | None:
        return root.status or None

    @staticmethod
    def resolve_hosted_invoice_url(root: StripeInvoice, info: Any) -> str | None:
        return root.hosted_invoice_url or None

    @staticmethod
    def resolve_invoice_pdf(root: StripeInvoice, info: Any) -> str | None:
        return root.invoice_pdf or None

    @staticmethod
    def resolve_created(root: StripeInvoice, info: Any) -> Any:
        return root.stripe_created or root.created

    @staticmethod
    @masked
    def resolve_subscription(root: StripeInvoice, info: Any) -> StripeSubscription | None:
        """The rules of ``stripeSubscriptions``: staff with view_stripeinvoice alone do not see it. No
        SQL: joined for a page (get_queryset), and Django caches the user's permissions."""
        subscription = root.subscription
        if subscription is None:
            return None
        owner = stripe_user(info.context)
        if owner is not None and owner.pk is not None and subscription.user_id == owner.pk:
            return subscription
        return subscription if has_perm(info.context, "view_stripesubscription") else None

    @staticmethod
    @masked
    def resolve_client_secret(root: StripeInvoice, info: Any) -> str | None:
        """The owner's only (the Stripe user of the request), never staff's: it lets its holder pay.
        Stripe is called for an open invoice of the owner only."""
        if root.status != StripeInvoice.STATUS_OPEN or not _owns(info, root):
            return None
        return owner_client_secret(root, "invoice", root.stripe_invoice_id)

    @classmethod
    @masked
    def get_queryset(cls, queryset: Any, info: Any) -> Any:
        visible = owned_or_all(info, queryset, "view_stripeinvoice", owner_field="customer__user")
        visible = visible.annotate(**{OWNER: F("customer__user_id")})
        joins = [join for path, join in _SUBSCRIPTION_JOINS.items() if _asks_for(info, path)]
        if joins:
            visible = visible.select_related(*joins)
        if _asks_for(info, _SUBSCRIPTION_PRODUCT_PRICES):
            from .catalog import visible_prices  # catalog imports types, which this module imports

            prices = visible_prices(info, StripePrice.objects.order_by("-created", "-pk"))
            visible = visible.prefetch_related(
                Prefetch("subscription__price__product__prices", queryset=prices)
            )
        return visible


def _subscription_pk(global_id: str) -> int | None:
    """The primary key a StripeSubscription global id names; None (nothing matches) for any other id."""
    try:
        type_name, pk = from_global_id(global_id)
    except Exception:
        return None
    if type_name != "StripeSubscription":
        return None
    return _node_pk(pk)


def newest_first(queryset: QuerySet[StripeInvoice]) -> QuerySet[StripeInvoice]:
    """By ``created`` as the type shows it (Stripe's time, else the row's), the same on every database
    (a NULL ``stripe_created`` sorts first on PostgreSQL, last on SQLite)."""
    return queryset.order_by(Coalesce(F("stripe_created"), F("created")).desc(), "-pk")


def invoices(info: Any, subscription: str | None = None, status: Any = None) -> QuerySet[StripeInvoice]:
    """``stripeInvoices`` before the type's ``get_queryset`` (who sees which invoices): the arguments
    applied. ``subscription`` matches only a subscription the caller may see (``stripeSubscriptions``'
    rules): another user's gives an empty page, as an unknown id does, also to staff who see all
    invoices (view_stripeinvoice) but not that subscription."""
    queryset = newest_first(StripeInvoice.objects.all())
    if subscription is not None:
        pk = _subscription_pk(subscription)
        if pk is None:
            return queryset.none()
        queryset = queryset.filter(subscription_id=pk)
        queryset = owned_or_all(info, queryset, "view_stripesubscription", owner_field="subscription__user")
    if status is not None:
        queryset = queryset.filter(status=getattr(status, "value", status))
    return queryset
