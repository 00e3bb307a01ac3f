"""GraphQL types over aa_stripe's models: Relay nodes with explicit, described fields.

Fields are declared one by one (not generated from the models) so that the contract in
GRAPHQL.md stays fixed whatever the host's GRAPHENE settings, nothing internal leaks (card
data only as brand/last4/expiry, never raw token JSON), and nested objects resolve from
``select_related`` without extra queries.
"""

from __future__ import annotations

import re
from typing import Any

import graphene
from django.db.models import Prefetch
from graphene import relay
from graphene_django import DjangoObjectType

from aa_stripe.exceptions import AaStripeError
from aa_stripe.models import (
    StripeCharge,
    StripeCoupon,
    StripeCustomer,
    StripePaymentMethod,
    StripePrice,
    StripeRefund,
    StripeSetupIntent,
    StripeSubscription,
    StripeSubscriptionPlan,
)

from .enums import StripeCouponDuration, StripePaymentStatus, StripePlanInterval, StripeSubscriptionStatus
from .errors import logger, masked
from .permissions import has_perm, owned_or_all, require_perm, require_signed_in, stripe_user


def _node_pk(global_pk: Any) -> int | None:
    """The primary key from a global id's second half, or None unless it is plain decimal digits."""
    text = str(global_pk)
    if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) == 0:
        return None
    return int(text)


def is_owner(info: Any, user_id: Any) -> bool:
    """Whether the request's Stripe user (see ``stripe_user``) is the user ``user_id``."""
    owner = stripe_user(info.context)
    return owner is not None and owner.pk is not None and user_id == owner.pk


def owner_client_secret(root: Any, what: str, stripe_id: str) -> str | None:
    """``root.client_secret_for_owner()``, or None when Stripe fails (logged: the owner asks again).
    For the resolvers of ``clientSecret``, which hand it to its owner only: it lets its holder pay."""
    try:
        return root.client_secret_for_owner()
    except AaStripeError as err:
        logger.warning(
            "Client secret of %s %s not read from Stripe: %s: %s",
            what,
            stripe_id,
            type(err).__name__,
            err.message,
        )
        return None


class StripeConnection(relay.Connection):
    """A Relay connection with ``totalCount``; graphene-django counts the rows for every page anyway."""

    total_count = graphene.Int(required=True, description="How many objects all pages hold together.")

    class Meta:
        abstract = True

    @classmethod
    def __init_subclass_with_meta__(
        cls, node: Any = None, description: str | None = None, **options: Any
    ) -> None:
        description = description or (
            f"A page of {node._meta.name} objects (at most STRIPE_GRAPHQL_PAGE_SIZE, default 100), "
            "with Relay cursors and totalCount."
        )
        super().__init_subclass_with_meta__(node=node, description=description, **options)

    @staticmethod
    def resolve_total_count(root: Any, info: Any) -> int:
        return root.length


class StripeNode(DjangoObjectType):
    """Base of this package's Relay nodes: ``node(id)`` obeys the rules of the matching list.

    ``node_access`` is checked before any lookup: ``None`` (anyone), ``"signed_in"`` or a
    permission codename. Rows then come from ``get_queryset``: another user's object is null.
    """

    node_access: str | None = "signed_in"

    class Meta:
        abstract = True

    @classmethod
    def node_queryset(cls) -> Any:
        return cls._meta.model._default_manager.all()

    @classmethod
    @masked
    def get_node(cls, info: Any, id: Any) -> Any:
        if cls.node_access == "signed_in":
            require_signed_in(info)
        elif cls.node_access:
            require_perm(info, cls.node_access)
        pk = _node_pk(id)
        if pk is None:
            return None
        return cls.get_queryset(cls.node_queryset(), info).filter(pk=pk).first()


def _card_values(source: dict[str, Any]) -> dict[str, Any]:
    """A card from a Stripe card object, or from a ``src_`` source object holding one."""
    card = source.get("card") if source.get("object") == "source" else source
    card = card if isinstance(card, dict) else {}
    return {
        "id": source.get("id"),
        "brand": card.get("brand"),
        "last4": card.get("last4"),
        "exp_month": card.get("exp_month"),
        "exp_year": card.get("exp_year"),
        "country": card.get("country"),
        "funding": card.get("funding"),
    }


class StripeCard(graphene.ObjectType):
    """A saved card, as much of it as a front-end may show."""

    id = graphene.String(required=True, description="Stripe's id of the card (card_... or src_...).")
    brand = graphene.String(description="Visa, MasterCard, American Express, ...")
    last4 = graphene.String(description="The card number's last four digits.")
    exp_month = graphene.Int(description="Expiry month (1-12).")
    exp_year = graphene.Int(description="Expiry year (four digits).")
    country = graphene.String(description="Two-letter country code of the card's issuer.")
    funding = graphene.String(description="credit, debit, prepaid or unknown.")

    @staticmethod
    def from_source(source: dict[str, Any] | None) -> StripeCard | None:
        return StripeCard(**_card_values(source)) if source else None


def _asks_for(info: Any, *paths: tuple[str, ...]) -> bool:
    """Whether the query asks for any of ``paths`` under the field being resolved (a list's
    ``edges { node }`` or the object itself), through fragments too."""
    from .catalog import selects  # catalog imports this module

    return any(selects(info, "edges", "node", *path) or selects(info, *path) for path in paths)


#: The fields of a customer that read its payment methods (prefetched for a whole page).
_PAYMENT_METHOD_FIELDS = (("paymentMethods",), ("defaultPaymentMethod",))


class StripePaymentMethodType(StripeNode):
    stripe_payment_method_id = graphene.String(
        required=True, description="Stripe's id of the payment method (pm_...)."
    )
    type = graphene.String(
        required=True, description="Stripe's type of the payment method, lower-case: card, sepa_debit, ..."
    )
    card = graphene.Field(
        StripeCard, description="The card (brand, last four digits, expiry); null for other types."
    )
    is_default = graphene.Boolean(
        required=True,
        description="Whether this is the customer's default, for invoices and off-session payments.",
    )
    created = graphene.DateTime(required=True, description="When the payment method was saved here.")

    class Meta:
        model = StripePaymentMethod
        name = "StripePaymentMethod"
        description = (
            "A payment method (a card, a SEPA debit mandate, ...) saved on a customer with a SetupIntent, "
            "for later and off-session payments."
        )
        interfaces = (relay.Node,)
        connection_class = StripeConnection
        fields = ("id",)

    @staticmethod
    @masked
    def resolve_card(root: StripePaymentMethod, info: Any) -> StripeCard | None:
        card = root.card
        return StripeCard(**card) if card else None

    @staticmethod
    @masked
    def resolve_is_default(root: StripePaymentMethod, info: Any) -> bool:
        return root.is_default

    @classmethod
    @masked
    def get_queryset(cls, queryset: Any, info: Any) -> Any:
        """The rules of ``stripeCustomers``: whoever sees a customer sees its payment methods."""
        visible = owned_or_all(info, queryset, "view_stripecustomer", owner_field="customer__user")
        return visible.select_related("customer")


class StripeSetupIntentType(graphene.ObjectType):
    """Returned only in the payloads of its owner's own mutations (it carries the client secret)."""

    stripe_setup_intent_id = graphene.String(
        required=True, description="Stripe's id of the SetupIntent (seti_...)."
    )
    status = graphene.String(
        required=True,
        description="Stripe's status, lower-case as Stripe says it: requires_payment_method, "
        "requires_confirmation, requires_action, processing, succeeded or canceled.",
    )
    client_secret = graphene.String(
        description="For stripe.js (confirmCardSetup/confirmSetup) while the customer has something to do; "
        "null otherwise. Never stored here: read from Stripe when it is asked for again."
    )

    class Meta:
        name = "StripeSetupIntent"
        description = (
            "A SetupIntent saving a payment method on your customer for later (off-session) payments: "
            "stripe.js confirms it with its clientSecret, then completeStripeSetupIntent saves the method."
        )

    @staticmethod
    @masked
    def resolve_client_secret(root: StripeSetupIntent, info: Any) -> str | None:
        return owner_client_secret(root, "SetupIntent", root.stripe_setup_intent_id)


class StripeCustomerType(StripeNode):
    stripe_customer_id = graphene.String(required=True, description="Stripe's id of the customer (cus_...).")
    is_active = graphene.Boolean(required=True, description="False once deleted or replaced.")
    is_created_at_stripe = graphene.Boolean(required=True, description="Whether Stripe has the customer.")
    sources = graphene.List(graphene.NonNull(StripeCard), required=True, description="The customer's cards.")
    default_source = graphene.String(description="Stripe's id of the default card.")
    default_source_card = graphene.Field(StripeCard, description="The default card.")
    payment_methods = graphene.List(
        graphene.NonNull(StripePaymentMethodType),
        required=True,
        description="The payment methods saved with SetupIntents (legacy cards are in sources).",
    )
    default_payment_method = graphene.Field(
        StripePaymentMethodType,
        description="The default payment method (invoices, off-session payments); null when the default "
        "is a legacy card of sources, or there is none.",
    )
    created = graphene.DateTime(required=True, description="When the customer was saved here.")
    updated = graphene.DateTime(required=True, description="When the customer last changed here.")

    class Meta:
        model = StripeCustomer
        name = "StripeCustomer"
        description = "A user's customer at Stripe, created from a stripe.js token; it holds the cards."
        interfaces = (relay.Node,)
        connection_class = StripeConnection
        fields = ("id",)

    @staticmethod
    @masked
    def resolve_sources(root: StripeCustomer, info: Any) -> list[StripeCard]:
        sources = [s for s in root.sources or [] if isinstance(s, dict) and s.get("id")]
        return [StripeCard(**_card_values(source)) for source in sources]

    @staticmethod
    def resolve_default_source(root: StripeCustomer, info: Any) -> str | None:
        return root.default_source or None

    @staticmethod
    @masked
    def resolve_default_source_card(root: StripeCustomer, info: Any) -> StripeCard | None:
        return StripeCard.from_source(root.default_source_data)

    @staticmethod
    @masked
    def resolve_payment_methods(root: StripeCustomer, info: Any) -> list[StripePaymentMethod]:
        return list(root.payment_methods.all())  # prefetched for a page (get_queryset)

    @staticmethod
    @masked
    def resolve_default_payment_method(root: StripeCustomer, info: Any) -> StripePaymentMethod | None:
        target = root.default_payment_method_id
        if not target:
            return None
        if "payment_methods" in getattr(root, "_prefetched_objects_cache", {}):
            return next((m for m in root.payment_methods.all() if m.stripe_payment_method_id == target), None)
        return root.payment_methods.filter(stripe_payment_method_id=target).first()

    @classmethod
    @masked
    def get_queryset(cls, queryset: Any, info: Any) -> Any:
        visible = owned_or_all(info, queryset, "view_stripecustomer")
        if _asks_for(info, *_PAYMENT_METHOD_FIELDS):
            visible = visible.prefetch_related("payment_methods")
        return visible


class StripeRefundType(graphene.ObjectType):
    """Seen only on its charge, by whoever may see the charge."""

    stripe_refund_id = graphene.String(
        description="Stripe's id of the refund (re_...); null for a refund Stripe refused (failureCode)."
    )
    amount = graphene.Int(required=True, description="Refunded, in the currency's minor unit.")
    status = graphene.String(
        required=True,
        description="Stripe's status, lower-case as Stripe says it: pending, requires_action, succeeded, "
        "failed or canceled (failed and canceled gave no money back).",
    )
    failure_code = graphene.String(
        description="Why Stripe refused or failed the refund; null for a refund that was made."
    )
    created = graphene.DateTime(required=True, description="When the refund was saved here.")

    class Meta:
        name = "StripeRefund"
        description = "One refund of a charge (a charge may have several partial refunds)."

    @staticmethod
    def resolve_stripe_refund_id(root: StripeRefund, info: Any) -> str | None:
        return root.stripe_refund_id or None

    @staticmethod
    def resolve_failure_code(root: StripeRefund, info: Any) -> str | None:
        return root.failure_code or None


#: The fields of a charge whose values come from other tables (prefetched for a whole page).
_REFUND_FIELDS = (("refunds",),)


class StripeChargeType(StripeNode):
    amount = graphene.Int(description="In the currency's minor unit (cents for USD).")
    amount_refunded = graphene.Int(required=True, description="Refunded so far, in the minor unit.")
    currency = graphene.String(required=True, description="Lower-case ISO currency code.")
    description = graphene.String(required=True, description="Description sent to Stripe.")
    statement_descriptor = graphene.String(description="Text on the card statement.")
    comment = graphene.String(description="Internal comment: staff with view_stripecharge only, else null.")
    is_charged = graphene.Boolean(required=True, description="Stripe took the money.")
    is_refunded = graphene.Boolean(required=True, description="Refunded in full.")
    charge_attempt_failed = graphene.Boolean(required=True, description="The last attempt was declined.")
    stripe_charge_id = graphene.String(description="Stripe's id of the charge (ch_...).")
    customer = graphene.Field(
        StripeCustomerType,
        description="The customer charged: yours, or any with aa_stripe.view_stripecustomer; else null.",
    )
    status = graphene.Field(
        StripePaymentStatus,
        required=True,
        description="Where the payment stands: the PaymentIntent's status, PENDING (not sent yet) or FAILED "
        "(the last attempt was declined).",
    )
    payment_intent_id = graphene.String(
        description="Stripe's id of the PaymentIntent (pi_...); null before it is sent, and for charges "
        "made with the Charges API."
    )
    payment_method = graphene.String(
        description="Stripe's id of the payment method the last attempt used (pm_... or card_...): stripe.js "
        "needs it to retry on-session. The customer's: yours, or any with aa_stripe.view_stripecustomer; "
        "else null."
    )
    failure_code = graphene.String(
        description="Why the last attempt failed (Stripe's error code, e.g. card_declined or "
        "authentication_required); null otherwise."
    )
    decline_code = graphene.String(description="The bank's reason for a decline (e.g. insufficient_funds).")
    refunds = graphene.List(
        graphene.NonNull(StripeRefundType),
        required=True,
        description="The charge's refunds, oldest first (refused ones too).",
    )
    client_secret = graphene.String(
        description="For stripe.js (confirmCardPayment/handleNextAction) while the payment waits for the "
        "customer, and only to the charge's own user; null otherwise (staff included). Never stored "
        "here: read from Stripe when asked for."
    )
    created = graphene.DateTime(required=True, description="When the charge was saved here.")
    updated = graphene.DateTime(required=True, description="When the charge last changed here.")

    class Meta:
        model = StripeCharge
        name = "StripeCharge"
        description = "A one-off charge of a user's card, with its refunds."
        interfaces = (relay.Node,)
        connection_class = StripeConnection
        fields = ("id",)

    @staticmethod
    def resolve_comment(root: StripeCharge, info: Any) -> str | None:
        return root.comment if has_perm(info.context, "view_stripecharge") else None

    @staticmethod
    @masked
    def resolve_customer(root: StripeCharge, info: Any) -> StripeCustomer | None:
        """The rules of ``stripeCustomers``: a charge one may see does not show its customer to staff
        with view_stripecharge alone. No SQL: the customer is select_related, and Django caches the
        user's permissions for the request."""
        customer = root.customer
        if customer is None:
            return None
        owner = stripe_user(info.context)
        if owner is not None and owner.pk is not None and customer.user_id == owner.pk:
            return customer
        return customer if has_perm(info.context, "view_stripecustomer") else None

    @staticmethod
    def resolve_statement_descriptor(root: StripeCharge, info: Any) -> str | None:
        return root.statement_descriptor or None

    @staticmethod
    def resolve_stripe_charge_id(root: StripeCharge, info: Any) -> str | None:
        return root.stripe_charge_id or None

    @staticmethod
    def resolve_status(root: StripeCharge, info: Any) -> str:
        return root.status or StripeCharge.PENDING

    @staticmethod
    def resolve_payment_intent_id(root: StripeCharge, info: Any) -> str | None:
        return root.payment_intent_id or None

    @staticmethod
    @masked
    def resolve_payment_method(root: StripeCharge, info: Any) -> str | None:
        """The customer's card: shown as ``customer`` is (not to staff with view_stripecharge alone)."""
        if not root.payment_method:
            return None
        owner = stripe_user(info.context)
        if owner is not None and owner.pk is not None and root.user_id == owner.pk:
            return root.payment_method
        return root.payment_method if has_perm(info.context, "view_stripecustomer") else None

    @staticmethod
    def resolve_failure_code(root: StripeCharge, info: Any) -> str | None:
        return root.failure_code or None

    @staticmethod
    def resolve_decline_code(root: StripeCharge, info: Any) -> str | None:
        return root.decline_code or None

    @staticmethod
    @masked
    def resolve_refunds(root: StripeCharge, info: Any) -> list[StripeRefund]:
        return list(root.refunds.all())  # prefetched for a page (get_queryset)

    @staticmethod
    @masked
    def resolve_client_secret(root: StripeCharge, info: Any) -> str | None:
        """The owner's only (the Stripe user of the request), never staff's: it lets its holder pay."""
        if not is_owner(info, root.user_id):
            return None
        # When Stripe fails, the owner asks again (refreshStripeCharge).
        return owner_client_secret(root, "PaymentIntent", root.payment_intent_id)

    @classmethod
    @masked
    def get_queryset(cls, queryset: Any, info: Any) -> Any:
        visible = owned_or_all(info, queryset, "view_stripecharge").select_related("customer")
        if _asks_for(info, *(("customer", *path) for path in _PAYMENT_METHOD_FIELDS)):
            visible = visible.prefetch_related("customer__payment_methods")
        if _asks_for(info, *_REFUND_FIELDS):
            visible = visible.prefetch_related("refunds")
        return visible


class StripeSubscriptionPlanType(StripeNode):
    node_access = None

    stripe_plan_id = graphene.String(description="Stripe's id of the plan.")
    name = graphene.String(required=True, description="Name shown on invoices.")
    amount = graphene.Int(required=True, description="Price per interval, in the currency's minor unit.")
    currency = graphene.String(required=True, description="Lower-case ISO currency code.")
    interval = graphene.Field(StripePlanInterval, required=True, description="Billing period unit.")
    interval_count = graphene.Int(required=True, description="Billing period length, in intervals.")
    trial_period_days = graphene.Int(required=True, description="Free days before the first charge.")
    is_created_at_stripe = graphene.Boolean(required=True, description="Whether Stripe has the plan.")

    class Meta:
        model = StripeSubscriptionPlan
        name = "StripeSubscriptionPlan"
        description = "A recurring price users subscribe to."
        interfaces = (relay.Node,)
        connection_class = StripeConnection
        fields = ("id",)

    @staticmethod
    def resolve_stripe_plan_id(root: StripeSubscriptionPlan, info: Any) -> str | None:
        return root.stripe_plan_id or None

    @classmethod
    @masked
    def get_queryset(cls, queryset: Any, info: Any) -> Any:
        if has_perm(info.context, "view_stripesubscriptionplan"):
            return queryset
        return queryset.filter(is_created_at_stripe=True)


class StripeCouponType(StripeNode):
    node_access = "view_stripecoupon"

    coupon_id = graphene.String(required=True, description="The code customers enter.")
    amount_off = graphene.Decimal(description="Amount off in currency units (10 = $10.00), as the model.")
    percent_off = graphene.Decimal(description="Percent off (e.g. 12.5).")
    currency = graphene.String(description="Currency of amountOff.")
    duration = graphene.Field(StripeCouponDuration, required=True, description="How long it applies.")
    duration_in_months = graphene.Int(description="Months it applies, for REPEATING.")
    max_redemptions = graphene.Int(description="How many times it can be redeemed in total.")
    redeem_by = graphene.DateTime(description="Last moment it can be redeemed.")
    times_redeemed = graphene.Int(required=True, description="How many times it was redeemed.")
    valid = graphene.Boolean(required=True, description="Whether it can still be applied.")
    is_deleted = graphene.Boolean(required=True, description="Deleted at Stripe (the row is kept).")

    class Meta:
        model = StripeCoupon
        name = "StripeCoupon"
        description = "A discount code for subscriptions."
        interfaces = (relay.Node,)
        connection_class = StripeConnection
        fields = ("id",)

    @classmethod
    @masked
    def get_queryset(cls, queryset: Any, info: Any) -> Any:
        return queryset if has_perm(info.context, "view_stripecoupon") else queryset.none()

    @classmethod
    def node_queryset(cls) -> Any:
        return StripeCoupon.objects.all_with_deleted()  # deleted coupons too: the manager hides them


def _price_type() -> type:
    from .catalog import StripePriceType  # catalog imports this module

    return StripePriceType


#: What a subscription's price shows under it, read for the whole page (see get_queryset).
_PRICE_PRODUCT_PRICES = (("price", "product", "prices"),)


class StripeSubscriptionType(StripeNode):
    stripe_subscription_id = graphene.String(description="Stripe's id of the subscription (sub_...).")
    status = graphene.Field(StripeSubscriptionStatus, description="Stripe's status; null until created.")
    plan = graphene.Field(
        StripeSubscriptionPlanType,
        description="The legacy plan subscribed to; null for subscriptions to a price (see price).",
        deprecation_reason="null for subscriptions to a price; use price",
    )
    price = graphene.Field(
        _price_type,
        description="The recurring price subscribed to; null for subscriptions to a legacy plan. Whoever "
        "may see the subscription sees its price, also once the price is archived.",
    )
    coupon = graphene.Field(
        StripeCouponType,
        description="The coupon applied, if any. Whoever may see the subscription sees its coupon, "
        "also once the coupon is deleted (the coupon lists and node(id) need "
        "aa_stripe.view_stripecoupon).",
    )
    is_created_at_stripe = graphene.Boolean(required=True, description="Whether Stripe has the subscription.")
    current_period_start = graphene.DateTime(
        description="Start of the billing period being paid for; null when unknown."
    )
    current_period_end = graphene.DateTime(
        description="End of the billing period being paid for (the next renewal); null when unknown."
    )
    trial_end = graphene.DateTime(description="When the free trial ends; null without a trial.")
    client_secret = graphene.String(
        description="For stripe.js while the subscription waits for the customer, and only to the "
        "subscription's own user (null otherwise, staff included): the first invoice's confirmation "
        "secret while status is INCOMPLETE (confirmCardPayment), or the trial's SetupIntent secret when "
        "there is no card to charge yet (confirmCardSetup). Never stored here: read from Stripe when "
        "asked for."
    )
    end_date = graphene.Date(description="Day after which end_subscriptions cancels it.")
    canceled_at = graphene.DateTime(description="When it was canceled.")
    at_period_end = graphene.Boolean(required=True, description="Ends at the end of the paid period.")
    created = graphene.DateTime(required=True, description="When the subscription was saved here.")

    class Meta:
        model = StripeSubscription
        name = "StripeSubscription"
        description = "A user's subscription to a price (or a legacy plan)."
        interfaces = (relay.Node,)
        connection_class = StripeConnection
        fields = ("id",)

    @staticmethod
    def resolve_status(root: StripeSubscription, info: Any) -> str | None:
        return root.status or None

    @staticmethod
    @masked
    def resolve_client_secret(root: StripeSubscription, info: Any) -> str | None:
        """The owner's only (the Stripe user of the request), never staff's: it lets its holder pay."""
        if not is_owner(info, root.user_id) or not root.waits_for_customer:
            return None
        return owner_client_secret(root, "subscription", root.stripe_subscription_id)

    @classmethod
    @masked
    def get_queryset(cls, queryset: Any, info: Any) -> Any:
        visible = owned_or_all(info, queryset, "view_stripesubscription")
        visible = visible.select_related("plan", "coupon", "price__product")
        if _asks_for(info, *_PRICE_PRODUCT_PRICES):
            from .catalog import visible_prices  # catalog imports this module

            prices = visible_prices(info, StripePrice.objects.order_by("-created", "-pk"))
            visible = visible.prefetch_related(Prefetch("price__product__prices", queryset=prices))
        return visible
