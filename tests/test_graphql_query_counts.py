"""Every connection resolves a page, nested objects included, in a constant number of SQL queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from . import graphql_helpers as gh

pytestmark = pytest.mark.django_db

CARD = "{ id brand last4 expMonth expYear country funding }"
CUSTOMER = f"id stripeCustomerId isActive sources {CARD} defaultSource defaultSourceCard {CARD} created"
PLAN = "id stripePlanId name amount currency interval intervalCount trialPeriodDays"
COUPON = "id couponId amountOff percentOff currency duration redeemBy timesRedeemed valid isDeleted"
PRODUCT = "id stripeProductId name description active"
PRICE = "id stripePriceId unitAmount currency nickname lookupKey active recurring { interval intervalCount }"

QUERIES = {
    "stripeCharges": f"{{ stripeCharges(first: $n) {{ totalCount edges {{ node {{ id amount comment "
    f"isCharged customer {{ {CUSTOMER} }} }} }} }} }}",
    "stripeSubscriptions": f"{{ stripeSubscriptions(first: $n) {{ totalCount edges {{ node {{ id status "
    f"plan {{ {PLAN} }} coupon {{ {COUPON} }} }} }} }} }}",
    "stripeCustomers": f"{{ stripeCustomers(first: $n) {{ totalCount edges {{ node {{ {CUSTOMER} }} }} }} }}",
    "stripeSubscriptionPlans": f"{{ stripeSubscriptionPlans(first: $n) {{ edges {{ node {{ {PLAN} }} }} }} }}"
    "",
    "stripeCoupons": f"{{ stripeCoupons(first: $n) {{ edges {{ node {{ {COUPON} }} }} }} }}",
    "stripePrices": f"{{ stripePrices(first: $n) {{ totalCount edges {{ node {{ {PRICE} "
    f"product {{ {PRODUCT} }} }} }} }} }}",
    "stripeProducts": f"{{ stripeProducts(first: $n) {{ totalCount edges {{ node {{ {PRODUCT} "
    f"prices {{ {PRICE} }} }} }} }} }}",
}

# Queries of one request with a session: the session, the user, the user's and the groups'
# permissions, then COUNT and the page of the connection.
EXPECTED = 6  # the same for a page of 10 and of 100
# A list of products with their prices fetches the page's prices in one more query.
EXPECTED_FOR = {"stripeProducts": EXPECTED + 1}


def rows_for(field, user, count):
    """``count`` rows for ``field``, each with its own nested objects (none shares a customer/plan/coupon)."""
    if field == "stripeCharges":
        for customer in gh.make_customers(user, count):
            gh.make_charges(user, customer)
    elif field == "stripeSubscriptions":
        for i, (plan, coupon) in enumerate(zip(gh.make_plans(count), gh.make_coupons(count), strict=True)):
            gh.make_subscriptions(user, plan, coupon if i % 2 else None)
    elif field == "stripeCustomers":
        gh.make_customers(user, count)
    elif field == "stripeSubscriptionPlans":
        gh.make_plans(count)
    elif field == "stripePrices":
        gh.make_prices(gh.make_products(count))
    elif field == "stripeProducts":
        gh.make_prices(gh.make_products(count), per_product=2)
    else:
        gh.make_coupons(count)


def measure(client, field, size):
    query = "query($n: Int) " + QUERIES[field]
    with CaptureQueriesContext(connection) as captured:
        body = gh.gql(client, query, {"n": size})
    assert "errors" not in body, body
    assert len(body["data"][field]["edges"]) == size
    return len(captured)


@pytest.mark.parametrize("field", QUERIES)
def test_a_page_of_10_and_of_100_take_the_same_queries(client, field):
    staff = gh.make_viewer("staff")
    rows_for(field, gh.make_user("payer"), 100)
    client.force_login(staff)
    ten, hundred = measure(client, field, 10), measure(client, field, 100)
    assert ten == hundred == EXPECTED_FOR.get(field, EXPECTED), (ten, hundred)


@pytest.mark.parametrize("signed_in", [False, True])
def test_price_pages_with_their_products_prices_take_the_same_queries(client, signed_in):
    """stripePrices { product { prices } }: the products' prices in one query per page, for anyone."""
    gh.make_prices(gh.make_products(100), per_product=3)
    if signed_in:
        client.force_login(gh.make_viewer("staff"))
    query = (
        "query($n: Int) { stripePrices(first: $n) { edges { node { id "
        "product { id prices { id unitAmount } } } } } }"
    )
    counts = []
    for size in (10, 100):
        with CaptureQueriesContext(connection) as captured:
            body = gh.gql(client, query, {"n": size})
        assert "errors" not in body and len(body["data"]["stripePrices"]["edges"]) == size
        assert all(len(e["node"]["product"]["prices"]) == 3 for e in body["data"]["stripePrices"]["edges"])
        counts.append(len(captured))
    # COUNT, the page, the prices; signed in: the session, the user and the permissions (2) too.
    assert counts == [3 + 4 * signed_in] * 2, counts


@pytest.mark.parametrize("field", ["stripeCharges", "stripeSubscriptions", "stripeCustomers"])
def test_owner_pages_take_the_same_queries(client, field):
    owner = gh.make_user("owner")
    rows_for(field, owner, 100)
    client.force_login(owner)
    ten, hundred = measure(client, field, 10), measure(client, field, 100)
    assert ten == hundred == EXPECTED, (ten, hundred)


# --- payment methods (saved with SetupIntents) ------------------------------------------------

PAYMENT_METHOD = f"id stripePaymentMethodId type isDefault created card {CARD}"
WITH_PAYMENT_METHODS = {
    "stripeCustomers": f"{{ stripeCustomers(first: $n) {{ edges {{ node {{ id "
    f"paymentMethods {{ {PAYMENT_METHOD} }} defaultPaymentMethod {{ {PAYMENT_METHOD} }} }} }} }} }}",
    "stripeCharges": f"{{ stripeCharges(first: $n) {{ edges {{ node {{ id customer {{ id "
    f"paymentMethods {{ {PAYMENT_METHOD} }} defaultPaymentMethod {{ id isDefault }} }} }} }} }} }}",
}


def customers_with_payment_methods(user, count):
    """``count`` customers (with a charge each), each with two saved cards, the first its default."""
    from aa_stripe.models import StripeCustomer, StripePaymentMethod

    customers = gh.make_customers(user, count)
    methods = []
    for customer in customers:
        gh.make_charges(user, customer)
        for i in range(2):
            methods.append(
                StripePaymentMethod(
                    customer=customer,
                    stripe_payment_method_id=f"pm_{customer.pk}_{i}",
                    type="card",
                    card_brand="visa",
                    card_last4="4242",
                    card_exp_month=12,
                    card_exp_year=2040,
                )
            )
    StripePaymentMethod.objects.bulk_create(methods)
    for customer in customers:
        StripeCustomer.objects.filter(pk=customer.pk).update(default_payment_method=f"pm_{customer.pk}_0")


@pytest.mark.parametrize("field", WITH_PAYMENT_METHODS)
@pytest.mark.parametrize("as_owner", [False, True], ids=["staff", "owner"])
def test_pages_with_payment_methods_take_the_same_queries(client, field, as_owner):
    """A customer's paymentMethods and defaultPaymentMethod, under a customer or a charge's customer:
    the page's payment methods in one more query."""
    owner = gh.make_user("owner")
    customers_with_payment_methods(owner, 100)
    client.force_login(owner if as_owner else gh.make_viewer("staff"))
    query = "query($n: Int) " + WITH_PAYMENT_METHODS[field]
    counts = []
    for size in (10, 100):
        with CaptureQueriesContext(connection) as captured:
            body = gh.gql(client, query, {"n": size})
        assert "errors" not in body, body
        edges = body["data"][field]["edges"]
        assert len(edges) == size
        customers = [e["node"] if field == "stripeCustomers" else e["node"]["customer"] for e in edges]
        assert all(len(c["paymentMethods"]) == 2 for c in customers)
        assert all(c["defaultPaymentMethod"]["isDefault"] for c in customers)
        counts.append(len(captured))
    assert counts == [EXPECTED + 1] * 2, counts


# --- charges on PaymentIntents: their status and refunds --------------------------------------

REFUND = "stripeRefundId amount status failureCode created"
CHARGES_WITH_REFUNDS = (
    "query($n: Int) { stripeCharges(first: $n) { edges { node { id status paymentIntentId paymentMethod "
    f"failureCode declineCode clientSecret refunds {{ {REFUND} }} }} }} }} }}"
)


def charges_with_refunds(user, count):
    """``count`` paid charges, each refunded twice (one refund Stripe refused)."""
    from aa_stripe.models import StripeCharge, StripeRefund

    charges = gh.make_charges(
        user, None, count, is_charged=True, status=StripeCharge.SUCCEEDED, payment_method="pm_card"
    )
    refunds = []
    for charge in charges:
        StripeCharge.objects.filter(pk=charge.pk).update(payment_intent_id=f"pi_{charge.pk}")
        refunds.append(
            StripeRefund(charge=charge, amount=100, currency="usd", stripe_refund_id=f"re_{charge.pk}")
        )
        refunds.append(
            StripeRefund(charge=charge, amount=50, currency="usd", status="failed", failure_code="refused")
        )
    StripeRefund.objects.bulk_create(refunds)


@pytest.mark.parametrize("as_owner", [False, True], ids=["staff", "owner"])
def test_charge_pages_with_their_refunds_take_the_same_queries(client, as_owner):
    """A charge's refunds: the page's refunds in one more query; the status fields and the client
    secret (null: nothing waits for the customer) cost none, and no call to Stripe."""
    owner = gh.make_user("owner")
    charges_with_refunds(owner, 100)
    client.force_login(owner if as_owner else gh.make_viewer("staff"))
    counts = []
    for size in (10, 100):
        with CaptureQueriesContext(connection) as captured:
            body = gh.gql(client, CHARGES_WITH_REFUNDS, {"n": size})
        assert "errors" not in body, body
        nodes = [edge["node"] for edge in body["data"]["stripeCharges"]["edges"]]
        assert len(nodes) == size
        assert {(n["status"], n["paymentMethod"], n["clientSecret"]) for n in nodes} == {
            ("SUCCEEDED", "pm_card", None)
        }
        assert all(n["paymentIntentId"].startswith("pi_") for n in nodes)
        assert all(
            [(r["amount"], r["status"], r["failureCode"]) for r in n["refunds"]]
            == [(100, "succeeded", None), (50, "failed", "refused")]
            for n in nodes
        )
        assert all(n["refunds"][1]["stripeRefundId"] is None for n in nodes)
        counts.append(len(captured))
    assert counts == [EXPECTED + 1] * 2, counts


# --- subscriptions to prices -------------------------------------------------------------------

SUBSCRIPTIONS_WITH_PRICES = (
    "query($n: Int) { stripeSubscriptions(first: $n) { edges { node { id status clientSecret "
    f"currentPeriodStart currentPeriodEnd trialEnd plan {{ id }} coupon {{ id }} price {{ {PRICE} "
    f"product {{ {PRODUCT} prices {{ id unitAmount }} }} }} }} }} }} }}"
)


@pytest.mark.parametrize("as_owner", [False, True], ids=["staff", "owner"])
def test_subscription_pages_with_their_prices_take_the_same_queries(client, as_owner):
    """A subscription's price and its product are joined; the products' prices take one more query
    for the page; clientSecret (null: nothing waits for the customer) costs none, and no Stripe call."""
    owner = gh.make_user("owner")
    prices = gh.make_prices(gh.make_products(100), per_product=2)[::2]
    for price in prices:
        gh.make_subscriptions(owner, None, None, price=price)
    client.force_login(owner if as_owner else gh.make_viewer("staff"))
    counts = []
    for size in (10, 100):
        with CaptureQueriesContext(connection) as captured:
            body = gh.gql(client, SUBSCRIPTIONS_WITH_PRICES, {"n": size})
        assert "errors" not in body, body
        nodes = [edge["node"] for edge in body["data"]["stripeSubscriptions"]["edges"]]
        assert len(nodes) == size
        assert {(n["status"], n["clientSecret"], n["plan"]) for n in nodes} == {("ACTIVE", None, None)}
        assert all(len(n["price"]["product"]["prices"]) == 2 for n in nodes)
        counts.append(len(captured))
    assert counts == [EXPECTED + 1] * 2, counts


# --- invoices ----------------------------------------------------------------------------------

INVOICE = "id stripeInvoiceId number status amountDue amountPaid currency hostedInvoiceUrl invoicePdf"
INVOICES = {
    "flat": f"query($n: Int) {{ stripeInvoices(first: $n) {{ totalCount edges {{ node {{ {INVOICE} "
    "periodStart periodEnd created clientSecret } } } }",
    "subscription": f"query($n: Int) {{ stripeInvoices(first: $n) {{ totalCount edges {{ node {{ {INVOICE} "
    f"clientSecret subscription {{ id status plan {{ {PLAN} }} coupon {{ {COUPON} }} }} }} }} }} }}",
    "price": f"query($n: Int) {{ stripeInvoices(first: $n) {{ edges {{ node {{ id subscription {{ id "
    f"price {{ {PRICE} product {{ {PRODUCT} prices {{ id unitAmount }} }} }} }} }} }} }} }}",
}


def invoices_for(user, count, with_prices):
    """``count`` paid invoices, each of its own customer and subscription (to a plan with a coupon
    every other one, or to a price of its own product with two prices)."""
    from aa_stripe.models import StripeInvoice

    customers = gh.make_customers(user, count)
    if with_prices:
        prices = gh.make_prices(gh.make_products(count), per_product=2)[::2]
        subscriptions = [gh.make_subscriptions(user, None, None, price=price)[0] for price in prices]
    else:
        plans, coupons = gh.make_plans(count), gh.make_coupons(count)
        subscriptions = [
            gh.make_subscriptions(user, plan, coupon if i % 2 else None)[0]
            for i, (plan, coupon) in enumerate(zip(plans, coupons, strict=True))
        ]
    StripeInvoice.objects.bulk_create(
        StripeInvoice(
            customer=customer,
            subscription=subscription,
            stripe_subscription_id=subscription.stripe_subscription_id,
            stripe_invoice_id=f"in_{i:04d}",
            number=f"ABC-{i:04d}",
            status=StripeInvoice.STATUS_PAID,
            amount_due=1500,
            amount_paid=1500,
            currency="usd",
            hosted_invoice_url=f"https://invoice.stripe.com/i/acct_x/test_{i}",
            invoice_pdf=f"https://pay.stripe.com/invoice/acct_x/test_{i}/pdf",
            stripe_created=gh.FIXED,
        )
        for i, (customer, subscription) in enumerate(zip(customers, subscriptions, strict=True))
    )


@pytest.mark.parametrize("shape", INVOICES)
@pytest.mark.parametrize("as_owner", [False, True], ids=["staff", "owner"])
def test_invoice_pages_take_the_same_queries(client, shape, as_owner):
    """An invoice's customer (for the owner checks) and subscription with its plan, coupon, price
    and product are joined; the products' prices take one more query for the page; clientSecret
    (null: no invoice is open) costs none, and no Stripe call."""
    owner = gh.make_user("owner")
    invoices_for(owner, 100, with_prices=shape == "price")
    viewer = gh.make_user("staff", *gh.VIEW_PERMISSIONS, "view_stripeinvoice", is_staff=True)
    client.force_login(owner if as_owner else viewer)
    counts = []
    for size in (10, 100):
        with CaptureQueriesContext(connection) as captured:
            body = gh.gql(client, INVOICES[shape], {"n": size})
        assert "errors" not in body, body
        nodes = [edge["node"] for edge in body["data"]["stripeInvoices"]["edges"]]
        assert len(nodes) == size
        assert all(n.get("clientSecret") is None for n in nodes)
        if shape == "subscription":
            assert all(n["subscription"]["plan"]["amount"] for n in nodes)
            assert sum(n["subscription"]["coupon"] is not None for n in nodes) == size // 2
        if shape == "price":
            assert all(len(n["subscription"]["price"]["product"]["prices"]) == 2 for n in nodes)
        counts.append(len(captured))
    assert counts == [EXPECTED + (shape == "price")] * 2, counts
