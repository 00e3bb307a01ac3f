"""Who may call what, as one table: every query, every ``node`` type and every mutation of the schema
against the five roles, through HTTP (session login, CSRF) against the fake Stripe.

``MATRIX`` is the contract (README, "GraphQL"; the descriptions in schema.graphql). Each cell is its
own test with a fresh world: alice (the owner) and bob (the other user) each have a customer with a
card at the fake, a charged charge and a subscription; a coupon and a plan exist at the fake, a
deleted coupon and a plan not at Stripe exist here only. Staff are carol (no permission) and dave
(with the permission of the operation, ``STAFF_PERMISSIONS``); neither has Stripe rows of their own.

alice and bob each also have a paid invoice of their subscription (made here: the mirror of Stripe's).
Every response is checked for leaks (``leaks``): rows of users the cell does not allow, e-mails,
the API key, token JSON or ids, tracebacks. ``test_every_operation_has_a_row`` fails when the schema
gains a query, a mutation or a Node type without a row here.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from graphql_relay import to_global_id

from aa_stripe import stripe_api
from aa_stripe.models import (
    StripeCharge,
    StripeCoupon,
    StripeCustomer,
    StripeInvoice,
    StripePaymentMethod,
    StripePrice,
    StripeProduct,
    StripeSetupIntent,
    StripeSubscription,
    StripeSubscriptionPlan,
)
from aa_stripe_graphql.schema import schema
from tests.graphql_helpers import make_coupons, make_plans
from tests.test_payment_intents import ALWAYS_ASKS, attached_card

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "owner", "other", "staff", "staff_perm")


# --- outcomes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Denied:
    """A top-level PERMISSION_DENIED error before any lookup: no SQL on aa_stripe's tables, nothing
    saved, nothing sent to Stripe."""

    def __repr__(self) -> str:
        return "DENIED"


DENIED = Denied()


@dataclass(frozen=True)
class Sees:
    """A query's answer: exactly these objects of the queried type come back, and of the world's
    objects (``owner.customer``, ``other.comment``, ``plan``, ...) exactly these appear in the body."""

    items: frozenset[str]
    #: the payload's error codes (a subscription made that waits for the customer reports one)
    errors: tuple[str, ...] = ()

    def __init__(self, *items: str, errors: tuple[str, ...] = ()) -> None:
        object.__setattr__(self, "items", frozenset(items))
        object.__setattr__(self, "errors", errors)

    def __repr__(self) -> str:
        return f"Sees{tuple(sorted(self.items))}"


@dataclass(frozen=True)
class Ok:
    """The mutation did its work (checked by ``EFFECTS``); of the world's objects exactly ``items``
    appear in the body (new objects of the caller's are not in the world)."""

    items: frozenset[str]
    #: the payload's error codes (a subscription made that waits for the customer reports one)
    errors: tuple[str, ...] = ()

    def __init__(self, *items: str, errors: tuple[str, ...] = ()) -> None:
        object.__setattr__(self, "items", frozenset(items))
        object.__setattr__(self, "errors", errors)

    def __repr__(self) -> str:
        return f"Ok{tuple(sorted(self.items))}"


@dataclass(frozen=True)
class Refused:
    """The payload's only error is ``code`` on ``field``; nothing saved, nothing sent to Stripe."""

    code: str
    field: str | None = None


CUSTOMERS = ("owner.customer", "other.customer")
CHARGES_AND_COMMENTS = ("owner.charge", "owner.comment", "other.charge", "other.comment")
SUBSCRIPTIONS = ("owner.subscription", "other.subscription")
INVOICES = ("owner.invoice", "other.invoice")
NOT_FOUND = {
    "customer": Refused("NOT_FOUND", "customer"),
    "subscription": Refused("NOT_FOUND", "subscription"),
    "paymentMethod": Refused("NOT_FOUND", "paymentMethod"),
    "setupIntent": Refused("NOT_FOUND", "setupIntent"),
    "charge": Refused("NOT_FOUND", "charge"),
}
PAYMENT_METHODS = ("owner.payment_method", "other.payment_method")
#: The operations whose world has cards saved with SetupIntents (``build_world(payment_methods=True)``).
NEEDS_PAYMENT_METHODS = frozenset(
    {
        "node(StripePaymentMethod)",
        "completeStripeSetupIntent",
        "setDefaultStripePaymentMethod",
        "detachStripePaymentMethod",
    }
)
#: The operations whose world has a charge of each user that waits for its owner (the bank asked for
#: authentication off-session: ``build_world(waiting_charges=True)``).
NEEDS_WAITING_CHARGES = frozenset({"payStripeCharge"})
#: Mutations that a second role may rightly do to the same object (not a replay of the first call).
SAME_OBJECT_FOR_OTHERS = frozenset({"refreshStripeCharge"})
STAFF_ONLY = {"anonymous": DENIED, "owner": DENIED, "other": DENIED, "staff": DENIED}

# What "staff_perm" (dave) holds in each row; "staff" (carol) is staff with no permission at all.
STAFF_PERMISSIONS = {
    "stripeCustomers": ("view_stripecustomer",),
    "stripeCharges": ("view_stripecharge",),
    "stripeSubscriptions": ("view_stripesubscription",),
    "stripeInvoices": ("view_stripeinvoice",),
    "stripeSubscriptionPlans": ("view_stripesubscriptionplan",),
    "stripeCoupon": ("view_stripecoupon",),
    "stripeCoupons": ("view_stripecoupon",),
    "node(StripeCustomer)": ("view_stripecustomer",),
    "node(StripeCharge)": ("view_stripecharge",),
    "node(StripeSubscription)": ("view_stripesubscription",),
    "node(StripeInvoice)": ("view_stripeinvoice",),
    "node(StripeSubscriptionPlan)": ("view_stripesubscriptionplan",),
    "node(StripeCoupon)": ("view_stripecoupon",),
    "stripeProducts": ("view_stripeproduct",),
    "stripePrices": ("view_stripeprice",),
    "node(StripeProduct)": ("view_stripeproduct",),
    "node(StripePrice)": ("view_stripeprice",),
    "createStripeProduct": ("add_stripeproduct",),
    "createStripePrice": ("add_stripeprice",),
    "createStripeCustomer": ("add_stripecustomer",),
    "addStripeCustomerSource": ("view_stripecustomer", "change_stripecustomer"),
    "createStripeSubscription": ("add_stripesubscription",),
    "cancelStripeSubscription": ("change_stripesubscription",),
    "createStripeCharge": ("add_stripecharge",),
    "refundStripeCharge": ("change_stripecharge",),
    "createStripeSubscriptionPlan": ("add_stripesubscriptionplan",),
    "createStripeCoupon": ("add_stripecoupon",),
    "updateStripeCoupon": ("change_stripecoupon",),
    "deleteStripeCoupon": ("delete_stripecoupon",),
    "node(StripePaymentMethod)": ("view_stripecustomer",),
    "createStripeSetupIntent": ("add_stripesetupintent",),
    "completeStripeSetupIntent": ("view_stripecustomer", "change_stripesetupintent"),
    "setDefaultStripePaymentMethod": ("view_stripecustomer", "change_stripepaymentmethod"),
    "detachStripePaymentMethod": ("view_stripecustomer", "delete_stripepaymentmethod"),
    "payStripeCharge": ("view_stripecharge", "change_stripecharge"),
    "refreshStripeCharge": ("view_stripecharge",),
}

# operation -> role -> outcome. Lists and node(id) ask for both users' rows; a charge shows its
# customer ("x.customer") and comment ("x.comment") where allowed, a subscription its plan. Anything
# of the world a cell does not name must not be in its response.
MATRIX: dict[str, dict[str, Any]] = {
    # --- queries ---
    "stripeCustomers": {
        "anonymous": DENIED,
        "owner": Sees("owner.customer"),
        "other": Sees("other.customer"),
        "staff": Sees(),
        "staff_perm": Sees(*CUSTOMERS),
    },
    "stripeCharges": {
        "anonymous": DENIED,
        "owner": Sees("owner.charge", "owner.customer"),
        "other": Sees("other.charge", "other.customer"),
        "staff": Sees(),
        "staff_perm": Sees(*CHARGES_AND_COMMENTS),  # customers need view_stripecustomer too
    },
    "stripeSubscriptions": {
        "anonymous": DENIED,
        "owner": Sees("owner.subscription", "plan"),
        "other": Sees("other.subscription", "plan"),
        "staff": Sees(),
        "staff_perm": Sees(*SUBSCRIPTIONS, "plan"),
    },
    "stripeInvoices": {  # an invoice shows its subscription as stripeSubscriptions would
        "anonymous": DENIED,
        "owner": Sees("owner.invoice", "owner.subscription"),
        "other": Sees("other.invoice", "other.subscription"),
        "staff": Sees(),
        "staff_perm": Sees(*INVOICES),  # subscriptions need view_stripesubscription too
    },
    "stripeSubscriptionPlans": {  # plans at Stripe only, for everyone (anonymous too)
        "anonymous": Sees("plan"),
        "owner": Sees("plan"),
        "other": Sees("plan"),
        "staff": Sees("plan"),
        "staff_perm": Sees("plan"),
    },
    "stripeCoupon": {  # asked for the live, the deleted and an unknown code: null for the last two
        "anonymous": DENIED,
        "owner": Sees("coupon"),
        "other": Sees("coupon"),
        "staff": Sees("coupon"),
        "staff_perm": Sees("coupon"),
    },
    "stripeCoupons": {**STAFF_ONLY, "staff_perm": Sees("coupon", "deleted_coupon")},
    # --- node(id), asked for the owner's and the other user's object (or: live and hidden one) ---
    "node(StripeCustomer)": {
        "anonymous": DENIED,
        "owner": Sees("owner.customer"),
        "other": Sees("other.customer"),
        "staff": Sees(),
        "staff_perm": Sees(*CUSTOMERS),
    },
    "node(StripeCharge)": {
        "anonymous": DENIED,
        "owner": Sees("owner.charge", "owner.customer"),
        "other": Sees("other.charge", "other.customer"),
        "staff": Sees(),
        "staff_perm": Sees(*CHARGES_AND_COMMENTS),
    },
    "node(StripeSubscription)": {
        "anonymous": DENIED,
        "owner": Sees("owner.subscription", "plan"),
        "other": Sees("other.subscription", "plan"),
        "staff": Sees(),
        "staff_perm": Sees(*SUBSCRIPTIONS, "plan"),
    },
    "node(StripeInvoice)": {
        "anonymous": DENIED,
        "owner": Sees("owner.invoice", "owner.subscription"),
        "other": Sees("other.invoice", "other.subscription"),
        "staff": Sees(),
        "staff_perm": Sees(*INVOICES),
    },
    "node(StripeSubscriptionPlan)": {  # the plan at Stripe and one that is not
        "anonymous": Sees("plan"),
        "owner": Sees("plan"),
        "other": Sees("plan"),
        "staff": Sees("plan"),
        "staff_perm": Sees("plan", "hidden_plan"),
    },
    "node(StripeCoupon)": {**STAFF_ONLY, "staff_perm": Sees("coupon", "deleted_coupon")},
    "node(StripePaymentMethod)": {  # the rules of customers
        "anonymous": DENIED,
        "owner": Sees("owner.payment_method"),
        "other": Sees("other.payment_method"),
        "staff": Sees(),
        "staff_perm": Sees(*PAYMENT_METHODS),
    },
    # --- the catalog: what is for sale, for anyone; the rest for staff with the view permission ---
    "stripeProducts": {role: Sees("product", "price") for role in ROLES},  # its prices beside it
    "stripePrices": {role: Sees("price", "product") for role in ROLES},  # hidden ones: active: false
    "node(StripeProduct)": {  # the product for sale and one not created at Stripe
        **{role: Sees("product", "price") for role in ROLES},
        "staff_perm": Sees("product", "hidden_product", "price"),  # the hidden price needs view_stripeprice
    },
    "node(StripePrice)": {  # the price for sale and one not created at Stripe
        **{role: Sees("price", "product") for role in ROLES},
        "staff_perm": Sees("price", "hidden_price", "product"),
    },
    # --- mutations on the owner's objects, or the caller's own ---
    "createStripeCustomer": {  # a new customer of the caller, from the caller's token
        "anonymous": DENIED,
        "owner": Ok(),
        "other": Ok(),
        "staff": Ok(),
        "staff_perm": Ok(),
    },
    "addStripeCustomerSource": {  # a card for the owner's customer
        "anonymous": DENIED,
        "owner": Ok("owner.customer"),
        "other": NOT_FOUND["customer"],
        "staff": NOT_FOUND["customer"],
        "staff_perm": NOT_FOUND["customer"],  # nobody adds cards to another user's customer
    },
    "createStripeSubscription": {  # subscribes the caller, with the caller's own card only
        "anonymous": DENIED,
        "owner": Ok("plan", "coupon"),
        "other": Ok("plan", "coupon"),  # bob has a card of his own here
        "staff": Refused("NO_ACTIVE_CUSTOMER"),  # carol and dave have none: alice's is not used
        "staff_perm": Refused("NO_ACTIVE_CUSTOMER"),
    },
    "cancelStripeSubscription": {  # the owner's subscription
        "anonymous": DENIED,
        "owner": Ok("owner.subscription", "plan"),
        "other": NOT_FOUND["subscription"],
        "staff": NOT_FOUND["subscription"],
        "staff_perm": Ok("owner.subscription", "plan"),
    },
    # --- saving cards with SetupIntents: the caller's own customer only ---
    "createStripeSetupIntent": {  # for the caller's customer; staff have none: a new one, without a card
        "anonymous": DENIED,
        "owner": Ok("owner.customer"),
        "other": Ok("other.customer"),
        "staff": Ok(),
        "staff_perm": Ok(),
    },
    "completeStripeSetupIntent": {  # the owner's confirmed SetupIntent
        "anonymous": DENIED,
        "owner": Ok("owner.customer"),
        "other": NOT_FOUND["setupIntent"],
        "staff": NOT_FOUND["setupIntent"],
        "staff_perm": NOT_FOUND["setupIntent"],  # nobody saves a card for another user's customer
    },
    "setDefaultStripePaymentMethod": {
        "anonymous": DENIED,
        "owner": Ok("owner.customer", "owner.payment_method"),
        "other": NOT_FOUND["paymentMethod"],
        "staff": NOT_FOUND["paymentMethod"],
        "staff_perm": NOT_FOUND["paymentMethod"],  # sees it (view_stripecustomer), may not change it
    },
    "detachStripePaymentMethod": {
        "anonymous": DENIED,
        "owner": Ok("owner.customer"),
        "other": NOT_FOUND["paymentMethod"],
        "staff": NOT_FOUND["paymentMethod"],
        "staff_perm": NOT_FOUND["paymentMethod"],
    },
    # --- paying one's own charge on-session (Strong Customer Authentication) ---
    "payStripeCharge": {  # the owner's charge that waits for authentication: its client secret
        "anonymous": DENIED,
        "owner": Ok("owner.waiting_charge", "owner.customer"),
        "other": NOT_FOUND["charge"],
        "staff": NOT_FOUND["charge"],
        "staff_perm": NOT_FOUND["charge"],  # sees it (view_stripecharge), may not pay it
    },
    "refreshStripeCharge": {  # reads the owner's PaymentIntent; the owner or staff who may see it
        "anonymous": DENIED,
        "owner": Ok("owner.charge", "owner.customer"),
        "other": NOT_FOUND["charge"],
        "staff": NOT_FOUND["charge"],
        "staff_perm": Ok("owner.charge", "owner.comment"),  # customer hidden: no view_stripecustomer
    },
    # --- staff mutations ---
    "createStripeCharge": {**STAFF_ONLY, "staff_perm": Ok()},  # charges the owner; customer hidden
    "refundStripeCharge": {**STAFF_ONLY, "staff_perm": Ok("owner.charge")},  # comment hidden
    "createStripeSubscriptionPlan": {**STAFF_ONLY, "staff_perm": Ok()},
    "createStripeCoupon": {**STAFF_ONLY, "staff_perm": Ok()},
    "updateStripeCoupon": {**STAFF_ONLY, "staff_perm": Ok("coupon")},
    "deleteStripeCoupon": {**STAFF_ONLY, "staff_perm": Ok("coupon")},
    "createStripeProduct": {**STAFF_ONLY, "staff_perm": Ok()},
    "createStripePrice": {**STAFF_ONLY, "staff_perm": Ok("product")},  # a price of the product for sale
}


# --- the world of one cell --------------------------------------------------------------------

PASSWORD = "pw"
USERNAMES = {"owner": "alice", "other": "bob", "staff": "carol", "staff_perm": "dave"}


@dataclass
class Item:
    """One object of the world and the strings that give it away in a response body."""

    type_name: str
    gid: str | None
    markers: tuple[str, ...]


@dataclass
class World:
    users: dict[str, Any]
    rows: dict[str, Any]
    items: dict[str, Item]
    tokens: list[dict[str, Any]] = field(default_factory=list)

    def gid(self, name: str) -> str:
        return self.items[name].gid  # type: ignore[return-value]


def _user(role: str, codenames: tuple[str, ...] = ()) -> Any:
    name = USERNAMES[role]
    user = get_user_model().objects.create_user(
        username=name, email=f"{name}@example.com", password=PASSWORD, is_staff=role.startswith("staff")
    )
    if codenames:
        perms = Permission.objects.filter(content_type__app_label="aa_stripe", codename__in=codenames)
        assert perms.count() == len(codenames), codenames
        user.user_permissions.add(*perms)
    return user


def _confirmed_setup_intent(customer: StripeCustomer, number: str) -> StripeSetupIntent:
    """A SetupIntent of ``customer`` that stripe.js confirmed with a new card (done here directly)."""
    intent = StripeSetupIntent.create_for_customer(customer)
    card = {"number": number, "exp_month": 12, "exp_year": datetime.date.today().year + 2, "cvc": "123"}
    method = stripe_api.call("payment_methods", "create", params={"type": "card", "card": card})
    stripe_api.call(
        "setup_intents", "confirm", intent.stripe_setup_intent_id, params={"payment_method": method["id"]}
    )
    return intent


def build_world(
    fake_stripe: Any, codenames: tuple[str, ...], payment_methods: bool = False, waiting_charges: bool = False
) -> World:
    """``payment_methods``: each customer also has a card saved with a SetupIntent and a confirmed
    SetupIntent not completed yet (only the cells that need them: they cost six calls to Stripe).
    ``waiting_charges``: each user also has a charge that waits for authentication (a card that always
    asks becomes the customer's default after the first charge)."""
    users = {role: _user(role, codenames if role == "staff_perm" else ()) for role in USERNAMES}
    plan = StripeSubscriptionPlan.objects.create(name="Gold", amount=5000, interval="month")
    plan.create_at_stripe()
    [hidden_plan] = make_plans(prefix="plan_hidden_", is_created_at_stripe=False)
    coupon = StripeCoupon.objects.create(coupon_id="SUMMER", duration="forever", percent_off=20)
    [deleted_coupon] = make_coupons(prefix="GONE", is_deleted=True)
    product = StripeProduct.objects.create(name="Tea")
    product.create_at_stripe()
    price = StripePrice(product=product, unit_amount=700, currency="usd", lookup_key="tea-monthly")
    price.create_at_stripe()
    hidden_product = StripeProduct.objects.create(name="Draft product")  # not created at Stripe
    hidden_price = StripePrice.objects.create(product=product, unit_amount=1, lookup_key="draft-price")
    world = World(users=users, rows={}, items={})
    world.rows.update(plan=plan, hidden_plan=hidden_plan, coupon=coupon, deleted_coupon=deleted_coupon)
    world.rows.update(product=product, price=price, hidden_product=hidden_product, hidden_price=hidden_price)
    world.items.update(
        plan=Item("StripeSubscriptionPlan", _gid(plan), (plan.stripe_plan_id,)),
        hidden_plan=Item("StripeSubscriptionPlan", _gid(hidden_plan), (hidden_plan.stripe_plan_id,)),
        coupon=Item("StripeCoupon", _gid(coupon), (coupon.coupon_id,)),
        deleted_coupon=Item("StripeCoupon", _gid(deleted_coupon), (deleted_coupon.coupon_id,)),
        product=Item("StripeProduct", _gid(product), (product.stripe_product_id,)),
        price=Item("StripePrice", _gid(price), (price.stripe_price_id,)),
        hidden_product=Item("StripeProduct", _gid(hidden_product), (hidden_product.stripe_product_id,)),
        hidden_price=Item("StripePrice", _gid(hidden_price), (hidden_price.lookup_key,)),
    )
    for role in ("owner", "other"):
        user = users[role]
        token = fake_stripe.card_token()
        world.tokens.append(token)
        customer = StripeCustomer(user=user, stripe_js_response=token).create_at_stripe()
        charge = StripeCharge.objects.create(
            user=user, amount=1000, description="Order", comment=f"internal note on {user.username}"
        )
        charge.charge()
        subscription = StripeSubscription.objects.create(user=user, plan=plan)
        subscription.create_at_stripe()
        invoice = StripeInvoice.objects.create(  # paid: clientSecret is null and asks Stripe nothing
            customer=customer,
            subscription=subscription,
            stripe_subscription_id=subscription.stripe_subscription_id,
            stripe_invoice_id=f"in_authz_{user.username}",
            number=f"INV-{user.username.upper()}-0001",
            status=StripeInvoice.STATUS_PAID,
            amount_due=5000,
            amount_paid=5000,
            currency="usd",
            hosted_invoice_url=f"https://invoice.stripe.com/i/acct_x/test_{user.username}_page",
            invoice_pdf=f"https://pay.stripe.com/invoice/acct_x/test_{user.username}_page/pdf",
        )
        world.rows.update(
            {
                f"{role}.customer": customer,
                f"{role}.charge": charge,
                f"{role}.subscription": subscription,
                f"{role}.invoice": invoice,
            }
        )
        world.items.update(
            {
                f"{role}.customer": Item(
                    "StripeCustomer", _gid(customer), (customer.stripe_customer_id, customer.default_source)
                ),
                f"{role}.charge": Item(
                    "StripeCharge", _gid(charge), (charge.stripe_charge_id, charge.payment_intent_id)
                ),
                f"{role}.comment": Item("comment", None, (charge.comment,)),
                f"{role}.subscription": Item(
                    "StripeSubscription", _gid(subscription), (subscription.stripe_subscription_id,)
                ),
                f"{role}.invoice": Item(
                    "StripeInvoice",
                    _gid(invoice),
                    (invoice.stripe_invoice_id, invoice.number, invoice.hosted_invoice_url),
                ),
            }
        )
        if payment_methods:
            # A card saved with a SetupIntent (not the default: the token's card is), and one confirmed
            # by stripe.js but not completed yet.
            method = _confirmed_setup_intent(customer, "4242424242424242").complete()
            pending = _confirmed_setup_intent(customer, "5555555555554444")
            world.rows.update({f"{role}.payment_method": method, f"{role}.setup_intent": pending})
            world.items.update(
                {
                    f"{role}.payment_method": Item(
                        "StripePaymentMethod", _gid(method), (method.stripe_payment_method_id,)
                    ),
                    f"{role}.setup_intent": Item(
                        "StripeSetupIntent", None, (pending.stripe_setup_intent_id,)
                    ),
                }
            )
        if waiting_charges:
            method = attached_card(fake_stripe, customer, ALWAYS_ASKS)
            waiting = StripeCharge.objects.create(user=user, amount=2000, description="Order 3-D Secure")
            assert waiting.charge() is None
            waiting.refresh_from_db()
            assert waiting.status == StripeCharge.REQUIRES_PAYMENT_METHOD, waiting.status
            world.rows[f"{role}.waiting_charge"] = waiting
            # its intent's id is the start of its client secret
            markers = (waiting.payment_intent_id, method)
            world.items[f"{role}.waiting_charge"] = Item("StripeCharge", _gid(waiting), markers)
    return world


def _gid(row: Any) -> str:
    names = {
        StripeCustomer: "StripeCustomer",
        StripeCharge: "StripeCharge",
        StripeSubscription: "StripeSubscription",
        StripeInvoice: "StripeInvoice",
        StripeSubscriptionPlan: "StripeSubscriptionPlan",
        StripeCoupon: "StripeCoupon",
        StripeProduct: "StripeProduct",
        StripePrice: "StripePrice",
        StripePaymentMethod: "StripePaymentMethod",
    }
    return to_global_id(names[type(row)], row.pk)


# --- the requests -----------------------------------------------------------------------------

CUSTOMER = "id stripeCustomerId defaultSource isActive"
CHARGE = (
    "id stripeChargeId amount amountRefunded isCharged status paymentIntentId paymentMethod clientSecret "
    f"refunds {{ stripeRefundId amount }} comment customer {{ {CUSTOMER} }}"
)
SUBSCRIPTION = "id stripeSubscriptionId status atPeriodEnd plan { id stripePlanId } coupon { id couponId }"
INVOICE = (
    "id stripeInvoiceId number status amountDue hostedInvoiceUrl invoicePdf clientSecret "
    "subscription { id stripeSubscriptionId }"
)
PLAN = "id stripePlanId name isCreatedAtStripe"
COUPON = "id couponId isDeleted"
PRODUCT = "id stripeProductId name active prices { id stripePriceId lookupKey }"
PRICE = "id stripePriceId lookupKey unitAmount active product { id stripeProductId name }"
PAYMENT_METHOD = "id stripePaymentMethodId type isDefault card { last4 }"
ERRORS = "errors { field code message declineCode } clientMutationId"
FIELDS = {
    "StripeCustomer": CUSTOMER,
    "StripeCharge": CHARGE,
    "StripeSubscription": SUBSCRIPTION,
    "StripeInvoice": INVOICE,
    "StripeSubscriptionPlan": PLAN,
    "StripeCoupon": COUPON,
    "StripeProduct": PRODUCT,
    "StripePrice": PRICE,
    "StripePaymentMethod": PAYMENT_METHOD,
}
LISTS = {
    "stripeCustomers": "StripeCustomer",
    "stripeCharges": "StripeCharge",
    "stripeSubscriptions": "StripeSubscription",
    "stripeInvoices": "StripeInvoice",
    "stripeSubscriptionPlans": "StripeSubscriptionPlan",
    "stripeCoupons": "StripeCoupon",
    "stripeProducts": "StripeProduct",
    "stripePrices": "StripePrice",
}
NODE_IDS = {  # node(Type): the two objects asked for
    "StripeCustomer": ("owner.customer", "other.customer"),
    "StripeCharge": ("owner.charge", "other.charge"),
    "StripeSubscription": ("owner.subscription", "other.subscription"),
    "StripeInvoice": INVOICES,
    "StripeSubscriptionPlan": ("plan", "hidden_plan"),
    "StripeCoupon": ("coupon", "deleted_coupon"),
    "StripeProduct": ("product", "hidden_product"),
    "StripePrice": ("price", "hidden_price"),
    "StripePaymentMethod": PAYMENT_METHODS,
}
COUPON_QUERY = f"""query($live: String!, $gone: String!) {{
  live: stripeCoupon(couponId: $live) {{ {COUPON} }}
  gone: stripeCoupon(couponId: $gone) {{ {COUPON} }}
  unknown: stripeCoupon(couponId: "NO-SUCH-CODE") {{ {COUPON} }}
}}"""
PAYLOADS = {
    "createStripeCustomer": f"customer {{ {CUSTOMER} defaultSourceCard {{ last4 }} }}",
    "addStripeCustomerSource": f"customer {{ {CUSTOMER} defaultSourceCard {{ last4 }} }}",
    "createStripeSubscription": f"subscription {{ {SUBSCRIPTION} }}",
    "cancelStripeSubscription": f"subscription {{ {SUBSCRIPTION} }}",
    "createStripeCharge": f"charge {{ {CHARGE} }}",
    "refundStripeCharge": f"charge {{ {CHARGE} }}",
    "createStripeSubscriptionPlan": f"plan {{ {PLAN} }}",
    "createStripeCoupon": f"coupon {{ {COUPON} }}",
    "updateStripeCoupon": f"coupon {{ {COUPON} }}",
    "deleteStripeCoupon": f"coupon {{ {COUPON} }}",
    "createStripeProduct": f"product {{ {PRODUCT} }}",
    "createStripePrice": f"price {{ {PRICE} }}",
    "createStripeSetupIntent": (
        f"setupIntent {{ stripeSetupIntentId status clientSecret }} customer {{ {CUSTOMER} }}"
    ),
    "completeStripeSetupIntent": f"customer {{ {CUSTOMER} }} paymentMethod {{ {PAYMENT_METHOD} }}",
    "setDefaultStripePaymentMethod": f"customer {{ {CUSTOMER} }} paymentMethod {{ {PAYMENT_METHOD} }}",
    "detachStripePaymentMethod": f"customer {{ {CUSTOMER} }}",
    "payStripeCharge": f"charge {{ {CHARGE} }}",
    "refreshStripeCharge": f"charge {{ {CHARGE} }}",
}


def mutation_input(operation: str, world: World, fake_stripe: Any) -> dict[str, Any]:
    def fresh_token() -> str:
        token = fake_stripe.card_token("5555555555554444")
        world.tokens.append(token)
        return json.dumps(token)

    inputs = {
        "createStripeCustomer": lambda: {"stripeJsResponse": fresh_token()},
        "addStripeCustomerSource": lambda: {
            "customer": world.gid("owner.customer"),
            "stripeJsResponse": fresh_token(),
        },
        "createStripeSubscription": lambda: {"plan": world.gid("plan"), "coupon": "SUMMER"},
        "cancelStripeSubscription": lambda: {"subscription": world.gid("owner.subscription")},
        "createStripeCharge": lambda: {
            "user": str(world.users["owner"].pk),
            "amount": 1500,
            "description": "Order 2",
            "comment": "staff only",
        },
        "refundStripeCharge": lambda: {"charge": world.gid("owner.charge"), "amount": 400},
        "createStripeSubscriptionPlan": lambda: {"name": "Silver", "amount": 2500, "interval": "WEEK"},
        "createStripeCoupon": lambda: {"couponId": "AUTUMN", "duration": "ONCE", "percentOff": "15"},
        "updateStripeCoupon": lambda: {
            "coupon": world.gid("coupon"),
            "metadata": json.dumps({"campaign": "spring"}),
        },
        "deleteStripeCoupon": lambda: {"coupon": world.gid("coupon")},
        "createStripeProduct": lambda: {"name": "Coffee"},
        "createStripePrice": lambda: {
            "product": world.gid("product"),
            "unitAmount": 900,
            "recurring": {"interval": "YEAR"},
        },
        "createStripeSetupIntent": lambda: {},
        "completeStripeSetupIntent": lambda: {
            "setupIntent": world.rows["owner.setup_intent"].stripe_setup_intent_id
        },
        "setDefaultStripePaymentMethod": lambda: {"paymentMethod": world.gid("owner.payment_method")},
        "detachStripePaymentMethod": lambda: {"paymentMethod": world.gid("owner.payment_method")},
        "payStripeCharge": lambda: {"charge": world.gid("owner.waiting_charge")},
        "refreshStripeCharge": lambda: {"charge": world.gid("owner.charge")},
    }
    return {**inputs[operation](), "clientMutationId": "authz"}


def request_for(operation: str, world: World, fake_stripe: Any) -> tuple[str, dict[str, Any]]:
    if operation in LISTS:
        fields = FIELDS[LISTS[operation]]
        return f"{{ {operation} {{ totalCount edges {{ node {{ {fields} }} }} }} }}", {}
    if operation == "stripeCoupon":
        return COUPON_QUERY, {"live": "SUMMER", "gone": world.rows["deleted_coupon"].coupon_id}
    if operation.startswith("node("):
        type_name = operation[5:-1]
        first, second = NODE_IDS[type_name]
        query = f"""query($a: ID!, $b: ID!) {{
          a: node(id: $a) {{ __typename ... on {type_name} {{ {FIELDS[type_name]} }} }}
          b: node(id: $b) {{ __typename ... on {type_name} {{ {FIELDS[type_name]} }} }}
        }}"""
        return query, {"a": world.gid(first), "b": world.gid(second)}
    input_type = operation[0].upper() + operation[1:] + "Input"
    query = f"""mutation($input: {input_type}!) {{
      {operation}(input: $input) {{ {PAYLOADS[operation]} {ERRORS} }}
    }}"""
    return query, {"input": mutation_input(operation, world, fake_stripe)}


def send(role: str, world: World, query: str, variables: dict[str, Any]) -> tuple[int, str, list[str]]:
    """POST as ``role``: session login, the CSRF cookie from a GET, the token in X-CSRFToken.
    Returns the status, the body and the SQL run while the POST was served."""
    client = Client(enforce_csrf_checks=True)
    if role != "anonymous":
        assert client.login(username=USERNAMES[role], password=PASSWORD)
    url = reverse("aa-stripe-graphql")
    warm_up = client.get(url, {"query": "{ __typename }"}, HTTP_ACCEPT="application/json")
    assert warm_up.json() == {"data": {"__typename": "StripeQuery"}}  # and the CSRF cookie is set
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    data = json.dumps({"query": query, "variables": variables})
    with CaptureQueriesContext(connection) as queries:
        response = client.post(url, data=data, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    return response.status_code, response.content.decode(), [q["sql"] for q in queries.captured_queries]


# --- leaks ------------------------------------------------------------------------------------

ALWAYS_FORBIDDEN = (
    "sk_test_",
    "sk_live_",
    "rk_live_",
    "tok_",
    '"object": "token"',
    '"object":"token"',
    '"client_ip"',
    "Traceback",
    'File "',
    '.py", line',
)


def leaks(body: str, forbidden: list[str]) -> list[str]:
    """The forbidden strings found in ``body``, also once JSON string escaping is undone."""
    texts = (body, body.replace('\\"', '"').replace("\\\\", "\\"))
    return sorted({marker for marker in forbidden if marker and any(marker in text for text in texts)})


def forbidden_markers(world: World, allowed: frozenset[str]) -> list[str]:
    markers = [*ALWAYS_FORBIDDEN, settings.STRIPE_API_KEY]
    markers += [user.email for user in world.users.values()]
    for token in world.tokens:  # the owner's and the other's stored stripe_js_response, inputs
        markers += [token["id"], token.get("client_ip") or "", (token.get("card") or {}).get("fingerprint")]
    for name, item in world.items.items():
        if name not in allowed:
            markers += [f'"{item.gid}"' if item.gid else "", *item.markers]
    return [m for m in markers if m]


def assert_no_leaks(body: str, world: World, allowed: frozenset[str]) -> None:
    found = leaks(body, forbidden_markers(world, allowed))
    assert not found, f"leaked {found} in {body[:3000]}"


# --- the state around a request ----------------------------------------------------------------


#: The journal's own rows: one per write to Stripe, which ``cell.calls()`` already shows; their
#: states are tested in tests/test_journal*.py.
BOOKKEEPING = {"StripeOperation"}


def snapshot() -> dict[tuple[str, Any], dict[str, Any]]:
    """Every aa_stripe row (deleted coupons too) but the journal's, by (model, pk)."""
    rows = {}
    for model in apps.get_app_config("aa_stripe").get_models():
        if model.__name__ in BOOKKEEPING:
            continue
        for values in model._base_manager.order_by("pk").values():
            rows[(model.__name__, values["id"] if "id" in values else values["pk"])] = values
    return rows


@dataclass
class Diff:
    created: list[tuple[str, Any]]
    changed: list[tuple[str, Any]]
    deleted: list[tuple[str, Any]]

    @classmethod
    def between(cls, before: dict, after: dict) -> Diff:
        return cls(
            created=sorted(key for key in after if key not in before),
            changed=sorted(key for key in after if key in before and after[key] != before[key]),
            deleted=sorted(key for key in before if key not in after),
        )


def aa_stripe_tables() -> list[str]:
    return [model._meta.db_table for model in apps.get_app_config("aa_stripe").get_models()]


# --- checks per outcome -----------------------------------------------------------------------


@dataclass
class Cell:
    operation: str
    role: str
    world: World
    body: dict[str, Any]
    diff: Diff
    stripe: list[Any]  # the requests the fake received

    @property
    def caller(self) -> Any:
        return self.world.users.get(self.role)

    @property
    def payload(self) -> dict[str, Any]:
        return self.body["data"][self.operation]

    def created(self, model: type) -> Any:
        [key] = [key for key in self.diff.created if key[0] == model.__name__]
        return model._base_manager.get(pk=key[1])

    def calls(self) -> list[tuple[str, str]]:
        return [(request.method, request.path) for request in self.stripe]


def check_denied(cell: Cell, sql: list[str]) -> None:
    body = cell.body
    assert "errors" in body and set(body["data"].values()) == {None}, body
    assert [error["extensions"]["code"] for error in body["errors"]] == ["PERMISSION_DENIED"] * len(
        body["data"]
    ), body
    touched = [q for q in sql if any(f'"{table}"' in q for table in aa_stripe_tables())]
    assert touched == [], "denied only after a lookup"
    assert cell.diff == Diff([], [], []) and cell.stripe == []


def returned(cell: Cell) -> set[str]:
    """Global ids of the objects the query returned."""
    data = cell.body["data"]
    if cell.operation in LISTS:
        connection = data[cell.operation]
        nodes = [edge["node"] for edge in connection["edges"]]
        assert connection["totalCount"] == len(nodes)
        return {node["id"] for node in nodes}
    return {value["id"] for value in data.values() if value is not None}


def queried_type(operation: str) -> str:
    if operation == "stripeCoupon":
        return "StripeCoupon"
    return LISTS.get(operation) or operation[5:-1]


def check_sees(cell: Cell, outcome: Sees) -> None:
    assert "errors" not in cell.body, cell.body
    type_name = queried_type(cell.operation)
    expected = {cell.world.gid(n) for n in outcome.items if cell.world.items[n].type_name == type_name}
    assert returned(cell) == expected
    assert cell.diff == Diff([], [], []) and cell.stripe == []  # a query changes nothing anywhere


def check_refused(cell: Cell, outcome: Refused) -> None:
    assert "errors" not in cell.body, cell.body
    payload = cell.payload
    assert [(e["field"], e["code"]) for e in payload["errors"]] == [(outcome.field, outcome.code)]
    assert payload["clientMutationId"] == "authz"
    assert {value for key, value in payload.items() if key not in ("errors", "clientMutationId")} == {None}
    assert cell.diff == Diff([], [], []) and cell.stripe == []


def check_ok(cell: Cell, outcome: Ok) -> None:
    assert "errors" not in cell.body, cell.body
    assert [error["code"] for error in cell.payload["errors"]] == list(outcome.errors)
    assert cell.payload["clientMutationId"] == "authz"
    EFFECTS[cell.operation](cell)


def check_appears(body: str, world: World, items: frozenset[str]) -> None:
    """The rows the cell allows do appear (so that their absence elsewhere means something)."""
    for name in items:
        item = world.items[name]
        marker = f'"{item.gid}"' if item.gid else f'"{item.markers[0]}"'
        assert marker in body, f"{name} missing from {body}"


# --- what each mutation that succeeds must have done ------------------------------------------


def effect_create_customer(cell: Cell) -> None:
    customer = cell.created(StripeCustomer)
    assert (customer.user, customer.is_created_at_stripe, customer.is_active) == (cell.caller, True, True)
    assert cell.diff == Diff([("StripeCustomer", customer.pk)], [], [])
    assert cell.payload["customer"]["id"] == _gid(customer)
    assert cell.payload["customer"]["defaultSourceCard"] == {"last4": "4444"}
    assert cell.calls() == [("POST", "/v1/customers")]
    assert cell.stripe[0].params["source"] == cell.world.tokens[-1]["id"]  # the caller's own token


def effect_add_source(cell: Cell) -> None:
    customer = cell.world.rows["owner.customer"]
    before = customer.default_source
    customer.refresh_from_db()
    assert customer.default_source != before
    assert cell.diff == Diff([], [("StripeCustomer", customer.pk)], [])
    assert cell.payload["customer"]["defaultSource"] == customer.default_source
    assert cell.payload["customer"]["defaultSourceCard"] == {"last4": "4444"}
    assert cell.calls() == [("POST", f"/v1/customers/{customer.stripe_customer_id}")]
    assert cell.stripe[0].params["source"] == cell.world.tokens[-1]["id"]


def effect_create_subscription(cell: Cell) -> None:
    subscription = cell.created(StripeSubscription)
    own_customer = cell.world.rows.get(f"{cell.role}.customer")
    if own_customer is None:  # the caller had no customer: one of theirs, without a card, is made
        own_customer = cell.created(StripeCustomer)
        assert own_customer.user == cell.caller and not own_customer.default_payment_method_id
        assert cell.diff == Diff(
            [("StripeCustomer", own_customer.pk), ("StripeSubscription", subscription.pk)], [], []
        )
        assert cell.calls() == [("POST", "/v1/customers"), ("POST", "/v1/subscriptions")]
        assert subscription.status == "incomplete"
    else:
        assert cell.diff == Diff([("StripeSubscription", subscription.pk)], [], [])
        assert cell.calls() == [("POST", "/v1/subscriptions")]
        assert subscription.status == "active"
    assert (subscription.user, subscription.customer, subscription.coupon) == (
        cell.caller,
        own_customer,
        cell.world.rows["coupon"],
    )
    assert subscription.is_created_at_stripe
    assert cell.payload["subscription"]["id"] == _gid(subscription)
    assert cell.stripe[-1].params["customer"] == own_customer.stripe_customer_id  # never another's card


def effect_cancel_subscription(cell: Cell) -> None:
    subscription = cell.world.rows["owner.subscription"]
    subscription.refresh_from_db()
    assert subscription.at_period_end and subscription.canceled_at is not None
    assert cell.diff == Diff([], [("StripeSubscription", subscription.pk)], [])
    assert cell.payload["subscription"]["atPeriodEnd"] is True
    path = f"/v1/subscriptions/{subscription.stripe_subscription_id}"
    assert cell.calls() == [("GET", path), ("POST", path)]
    assert cell.stripe[1].params == {"cancel_at_period_end": "true"}


def effect_create_charge(cell: Cell) -> None:
    charge = cell.created(StripeCharge)
    owner_customer = cell.world.rows["owner.customer"]
    assert (charge.user, charge.customer, charge.amount, charge.is_charged) == (
        cell.world.users["owner"],
        owner_customer,
        1500,
        True,
    )
    assert cell.diff == Diff([("StripeCharge", charge.pk)], [], [])
    payload = cell.payload["charge"]
    assert payload["id"] == _gid(charge) and payload["stripeChargeId"] == charge.stripe_charge_id
    assert payload["comment"] is None and payload["customer"] is None  # dave has no view permission
    assert payload["paymentMethod"] is None and payload["clientSecret"] is None  # the owner's card
    assert (payload["status"], payload["paymentIntentId"]) == ("SUCCEEDED", charge.payment_intent_id)
    assert cell.calls() == [("POST", "/v1/payment_intents")]  # off-session, with the owner's default card
    assert cell.stripe[0].params["customer"] == owner_customer.stripe_customer_id
    assert cell.stripe[0].params["payment_method"] == owner_customer.default_source


def effect_refund(cell: Cell) -> None:
    charge = cell.world.rows["owner.charge"]
    charge.refresh_from_db()
    assert (charge.amount_refunded, charge.is_refunded) == (400, False)
    [refund] = [key for key in cell.diff.created if key[0] == "StripeRefund"]
    assert cell.diff == Diff([refund], [("StripeCharge", charge.pk)], [])
    payload = cell.payload["charge"]
    assert payload["amountRefunded"] == 400 and payload["comment"] is None and payload["customer"] is None
    assert cell.calls() == [("POST", "/v1/refunds")]
    assert (cell.stripe[0].params["charge"], cell.stripe[0].params["amount"]) == (
        charge.stripe_charge_id,
        "400",
    )


def effect_create_plan(cell: Cell) -> None:
    plan = cell.created(StripeSubscriptionPlan)
    assert (plan.name, plan.amount, plan.interval, plan.is_created_at_stripe) == (
        "Silver",
        2500,
        "week",
        True,
    )
    assert cell.diff == Diff([("StripeSubscriptionPlan", plan.pk)], [], [])
    assert cell.payload["plan"]["id"] == _gid(plan)
    assert cell.calls() == [("POST", "/v1/plans")]
    assert cell.stripe[0].params["id"] == plan.stripe_plan_id


def effect_create_coupon(cell: Cell) -> None:
    coupon = cell.created(StripeCoupon)
    assert (coupon.coupon_id, coupon.duration, coupon.is_created_at_stripe) == ("AUTUMN", "once", True)
    assert cell.diff == Diff([("StripeCoupon", coupon.pk)], [], [])
    assert cell.payload["coupon"]["id"] == _gid(coupon)
    assert cell.calls() == [("POST", "/v1/coupons")]


def effect_update_coupon(cell: Cell) -> None:
    coupon = cell.world.rows["coupon"]
    coupon.refresh_from_db()
    assert coupon.metadata == {"campaign": "spring"} and not coupon.is_deleted
    assert cell.diff == Diff([], [("StripeCoupon", coupon.pk)], [])
    assert cell.calls() == [("POST", "/v1/coupons/SUMMER")]
    sent = dict(cell.stripe[0].params)
    assert sent.pop("metadata[operation]")  # the journal's id, beside the campaign
    assert sent == {"metadata[campaign]": "spring"}


def effect_delete_coupon(cell: Cell) -> None:
    coupon = StripeCoupon.objects.all_with_deleted().get(pk=cell.world.rows["coupon"].pk)
    assert coupon.is_deleted and cell.payload["coupon"]["isDeleted"] is True
    assert cell.diff == Diff([], [("StripeCoupon", coupon.pk)], [])
    assert cell.calls() == [("GET", "/v1/coupons/SUMMER"), ("DELETE", "/v1/coupons/SUMMER")]


def effect_create_product(cell: Cell) -> None:
    product = cell.created(StripeProduct)
    assert (product.name, product.is_created_at_stripe) == ("Coffee", True)
    assert cell.diff == Diff([("StripeProduct", product.pk)], [], [])
    assert cell.payload["product"]["id"] == _gid(product)
    assert cell.calls() == [("POST", "/v1/products")]
    assert cell.stripe[0].params["id"] == product.stripe_product_id


def effect_create_price(cell: Cell) -> None:
    price = cell.created(StripePrice)
    product = cell.world.rows["product"]
    assert (price.product, price.unit_amount, price.recurring_interval, price.is_created_at_stripe) == (
        product,
        900,
        "year",
        True,
    )
    assert cell.diff == Diff([("StripePrice", price.pk)], [], [])
    assert cell.payload["price"]["id"] == _gid(price)
    assert cell.calls() == [("POST", "/v1/prices")]
    assert cell.stripe[0].params["product"] == product.stripe_product_id


def effect_create_setup_intent(cell: Cell) -> None:
    intent = cell.created(StripeSetupIntent)
    own = cell.world.rows.get(f"{cell.role}.customer")
    if own is None:  # staff have no customer: one is made, without a card
        customer = cell.created(StripeCustomer)
        assert (customer.user, customer.is_created_at_stripe, customer.stripe_js_response) == (
            cell.caller,
            True,
            {},
        )
        assert cell.diff == Diff(
            sorted([("StripeCustomer", customer.pk), ("StripeSetupIntent", intent.pk)]), [], []
        )
        assert cell.calls() == [("POST", "/v1/customers"), ("POST", "/v1/setup_intents")]
    else:
        customer = own
        assert cell.diff == Diff([("StripeSetupIntent", intent.pk)], [], [])
        assert cell.calls() == [("POST", "/v1/setup_intents")]
    assert intent.customer == customer and intent.status == "requires_payment_method"
    assert cell.stripe[-1].params["customer"] == customer.stripe_customer_id  # never another's customer
    payload = cell.payload
    assert payload["customer"]["id"] == _gid(customer)
    assert payload["setupIntent"]["stripeSetupIntentId"] == intent.stripe_setup_intent_id
    assert payload["setupIntent"]["clientSecret"].startswith(f"{intent.stripe_setup_intent_id}_secret_")


def effect_complete_setup_intent(cell: Cell) -> None:
    intent = cell.world.rows["owner.setup_intent"]
    method = cell.created(StripePaymentMethod)
    intent.refresh_from_db()
    assert intent.status == "succeeded" and intent.payment_method == method.stripe_payment_method_id
    assert method.customer == cell.world.rows["owner.customer"] and method.card_last4 == "4444"
    assert cell.diff == Diff([("StripePaymentMethod", method.pk)], [("StripeSetupIntent", intent.pk)], [])
    payload = cell.payload
    assert payload["paymentMethod"]["id"] == _gid(method)
    assert payload["paymentMethod"]["isDefault"] is False  # the token's card stays the default
    assert cell.calls() == [
        ("GET", f"/v1/setup_intents/{intent.stripe_setup_intent_id}"),
        ("GET", f"/v1/payment_methods/{method.stripe_payment_method_id}"),
    ]


def effect_set_default_payment_method(cell: Cell) -> None:
    customer = cell.world.rows["owner.customer"]
    method = cell.world.rows["owner.payment_method"]
    customer.refresh_from_db()
    assert customer.default_payment_method == method.stripe_payment_method_id
    assert cell.diff == Diff([], [("StripeCustomer", customer.pk)], [])
    assert cell.payload["paymentMethod"] == {
        "id": _gid(method),
        "stripePaymentMethodId": method.stripe_payment_method_id,
        "type": "card",
        "isDefault": True,
        "card": {"last4": "4242"},
    }
    assert cell.calls() == [("POST", f"/v1/customers/{customer.stripe_customer_id}")]
    sent = cell.stripe[0].params
    assert sent["invoice_settings[default_payment_method]"] == method.stripe_payment_method_id


def effect_detach_payment_method(cell: Cell) -> None:
    method = cell.world.rows["owner.payment_method"]
    assert not StripePaymentMethod.objects.filter(pk=method.pk).exists()
    [tombstone] = [key for key in cell.diff.created if key[0] == "StripeTombstone"]
    assert cell.diff == Diff([tombstone], [], [("StripePaymentMethod", method.pk)])
    assert cell.payload["customer"]["id"] == _gid(cell.world.rows["owner.customer"])
    assert cell.calls() == [("POST", f"/v1/payment_methods/{method.stripe_payment_method_id}/detach")]


def effect_pay_charge(cell: Cell) -> None:
    charge = cell.world.rows["owner.waiting_charge"]
    assert cell.diff == Diff([], [], [])  # it waits as it did: the customer confirms it with stripe.js
    payload = cell.payload["charge"]
    assert (payload["id"], payload["status"], payload["isCharged"]) == (
        _gid(charge),
        "REQUIRES_PAYMENT_METHOD",
        False,
    )
    assert payload["paymentIntentId"] == charge.payment_intent_id
    assert payload["paymentMethod"] == charge.payment_method
    assert payload["clientSecret"].startswith(f"{charge.payment_intent_id}_secret_")
    assert cell.calls() == [("GET", f"/v1/payment_intents/{charge.payment_intent_id}")]


def effect_refresh_charge(cell: Cell) -> None:
    charge = cell.world.rows["owner.charge"]
    assert (cell.diff.created, cell.diff.deleted) == ([], [])
    assert set(cell.diff.changed) <= {("StripeCharge", charge.pk)}  # what Stripe says, rewritten
    after = StripeCharge.objects.get(pk=charge.pk)
    assert (after.is_charged, after.status, after.amount_refunded) == (True, "succeeded", 0)
    payload = cell.payload["charge"]
    assert (payload["id"], payload["status"], payload["isCharged"], payload["clientSecret"]) == (
        _gid(charge),
        "SUCCEEDED",
        True,
        None,
    )
    assert cell.calls() == [("GET", f"/v1/payment_intents/{charge.payment_intent_id}")]


EFFECTS = {
    "createStripeCustomer": effect_create_customer,
    "addStripeCustomerSource": effect_add_source,
    "createStripeSubscription": effect_create_subscription,
    "cancelStripeSubscription": effect_cancel_subscription,
    "createStripeCharge": effect_create_charge,
    "refundStripeCharge": effect_refund,
    "createStripeSubscriptionPlan": effect_create_plan,
    "createStripeCoupon": effect_create_coupon,
    "updateStripeCoupon": effect_update_coupon,
    "deleteStripeCoupon": effect_delete_coupon,
    "createStripeProduct": effect_create_product,
    "createStripePrice": effect_create_price,
    "createStripeSetupIntent": effect_create_setup_intent,
    "completeStripeSetupIntent": effect_complete_setup_intent,
    "setDefaultStripePaymentMethod": effect_set_default_payment_method,
    "detachStripePaymentMethod": effect_detach_payment_method,
    "payStripeCharge": effect_pay_charge,
    "refreshStripeCharge": effect_refresh_charge,
}


# --- the tests --------------------------------------------------------------------------------


def _schema_operations() -> set[str]:
    graphql_schema = schema.graphql_schema
    node = graphql_schema.get_type("Node")
    queries = {name for name in graphql_schema.query_type.fields if name != "node"}
    nodes = {f"node({t.name})" for t in graphql_schema.get_implementations(node).objects}
    return queries | nodes | set(graphql_schema.mutation_type.fields)


def test_every_operation_has_a_row():
    """A query, mutation or Node type added to the schema fails here until the table has its row."""
    assert "node" in schema.graphql_schema.query_type.fields
    operations = _schema_operations()
    assert sorted(operations - set(MATRIX)) == [], "operations without a row in MATRIX"
    assert sorted(set(MATRIX) - operations) == [], "rows in MATRIX for operations the schema lacks"
    assert set(STAFF_PERMISSIONS) == operations
    assert set(EFFECTS) == set(schema.graphql_schema.mutation_type.fields)
    for operation, row in MATRIX.items():
        assert set(row) == set(ROLES), f"{operation}: a cell per role"


def test_the_leak_checker_finds_what_it_must():
    body = json.dumps(
        {
            "errors": [{"message": 'Traceback (most recent call last):\n  File "x.py", line 1'}],
            "data": {"x": json.dumps({"id": "tok_123", "object": "token", "client_ip": "1.2.3.4"})},
        }
    )
    assert leaks(body, list(ALWAYS_FORBIDDEN)) == sorted(
        ["Traceback", 'File "', '.py", line', "tok_", '"object": "token"', '"client_ip"']
    )
    assert leaks('{"k": "sk_test_abc"}', [*ALWAYS_FORBIDDEN]) == ["sk_test_"]
    assert leaks('{"ok": "cus_1"}', ["cus_2"]) == []


# ids such as "stripeCharges-staff_perm" or "node:StripeCharge-other" (usable with -k)
CELLS = [
    pytest.param(op, role, id=f"{op.replace('(', ':').rstrip(')')}-{role}") for op in MATRIX for role in ROLES
]


@pytest.mark.parametrize(("operation", "role"), CELLS)
def test_matrix_cell(fake_stripe, operation, role):
    world = build_world(
        fake_stripe,
        STAFF_PERMISSIONS[operation],
        operation in NEEDS_PAYMENT_METHODS,
        operation in NEEDS_WAITING_CHARGES,
    )
    query, variables = request_for(operation, world, fake_stripe)
    before = snapshot()
    fake_stripe.proxy.reset()  # forget the world's calls (tokens are made directly, never recorded)

    status, text, sql = send(role, world, query, variables)

    assert status == 200, text
    outcome = MATRIX[operation][role]
    allowed = getattr(outcome, "items", frozenset())
    assert_no_leaks(text, world, allowed)
    check_appears(text, world, allowed)
    cell = Cell(
        operation, role, world, json.loads(text), Diff.between(before, snapshot()), fake_stripe.proxy.requests
    )
    if outcome is DENIED:
        check_denied(cell, sql)
    elif isinstance(outcome, Sees):
        check_sees(cell, outcome)
    elif isinstance(outcome, Refused):
        check_refused(cell, outcome)
    else:
        check_ok(cell, outcome)


# --- idempotency keys across roles ---------------------------------------------------------------

KEYED = sorted(op for op, cells in MATRIX.items() if op in PAYLOADS)


def _first_ok_role(operation: str) -> str:
    return next(role for role in ("owner", "staff_perm") if isinstance(MATRIX[operation][role], Ok))


@pytest.mark.django_db
@pytest.mark.parametrize("operation", KEYED)
def test_a_key_never_replays_one_users_payload_to_another(fake_stripe, operation):
    """The first allowed caller acts with a key; every other role sending the same key and input
    gets what its own rights give it (denied, refused, or its own work), never the first payload."""
    world = build_world(
        fake_stripe,
        STAFF_PERMISSIONS[operation],
        operation in NEEDS_PAYMENT_METHODS,
        operation in NEEDS_WAITING_CHARGES,
    )
    query, variables = request_for(operation, world, fake_stripe)
    variables["input"]["idempotencyKey"] = "shared-key"
    actor = _first_ok_role(operation)
    _status, first_text, _sql = send(actor, world, query, variables)
    first = json.loads(first_text)["data"][operation]
    assert first is not None and "errors" in first, first_text
    made = {value["id"] for value in first.values() if isinstance(value, dict) and "id" in value}

    for role in ROLES:
        if role == actor:
            continue
        sent_before = len(fake_stripe.proxy.requests)
        status, text, _sql = send(role, world, query, variables)
        assert status == 200, text
        body = json.loads(text)
        answer = (body.get("data") or {}).get(operation)
        if MATRIX[operation][role] is DENIED:
            assert answer is None and body["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED", text
            continue
        assert answer != first, (role, text)
        if operation in SAME_OBJECT_FOR_OTHERS and isinstance(MATRIX[operation][role], Ok):
            # the same object, by its own right: read from Stripe again, not the first call's replay
            assert answer["errors"] == [] and len(fake_stripe.proxy.requests) > sent_before, (role, text)
            continue
        assert not [gid for gid in made if gid in text], (role, text)  # none of the first's objects
