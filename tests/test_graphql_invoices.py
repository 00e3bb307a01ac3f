"""Invoices over GraphQL: ``stripeInvoices`` (own, or all with aa_stripe.view_stripeinvoice; newest
first; by subscription and status), ``node(id)`` of a ``StripeInvoice`` under the same rules, its
subscription, and ``clientSecret``: the owner's only, while the invoice is open.

Every request is GraphQL over HTTP. Rows are made directly (the model mirrors Stripe) except for the
client secret, read from a real open invoice of the fake Stripe: a renewal whose bank asks for
authentication (its test-only ``_renew``), paid as stripe.js would with the secret.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from graphql_relay import to_global_id

from aa_stripe.exceptions import StripeSubscriptionIncomplete
from aa_stripe.models import (
    StripeCustomer,
    StripeInvoice,
    StripePrice,
    StripeProduct,
    StripeSubscription,
)
from tests import graphql_helpers as gh
from tests.graphql_helpers import assert_denied, gql, signed_in, staff
from tests.test_graphql_subscriptions_prices import authenticate
from tests.test_payment_intents import _post, set_up_card

pytestmark = pytest.mark.django_db

ALWAYS_AUTHENTICATE = "4000002760003184"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

INVOICE = (
    "id stripeInvoiceId number status amountDue amountPaid currency hostedInvoiceUrl invoicePdf "
    "periodStart periodEnd created subscription { id stripeSubscriptionId }"
)
LIST = f"""query($subscription: ID, $status: StripeInvoiceStatus) {{
  stripeInvoices(subscription: $subscription, status: $status) {{
    totalCount edges {{ node {{ {INVOICE} }} }}
  }}
}}"""
NODE = f"query($id: ID!) {{ node(id: $id) {{ __typename ... on StripeInvoice {{ {INVOICE} }} }} }}"
SECRETS = "{ stripeInvoices { edges { node { stripeInvoiceId clientSecret status } } } }"


# --- the world ----------------------------------------------------------------------------------------


def customer_of(user: Any) -> StripeCustomer:
    [customer] = gh.make_customers(user, prefix=f"{user.username}_{uuid.uuid4().hex[:8]}")
    return customer


def invoice(customer: StripeCustomer, name: str, created: datetime | None, **fields: Any) -> StripeInvoice:
    """A paid invoice of ``customer`` as its events leave it (``name`` makes its ids)."""
    values: dict[str, Any] = {
        "status": StripeInvoice.STATUS_PAID,
        "number": f"ABC-{name}",
        "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_x/test_{name}",
        "invoice_pdf": f"https://pay.stripe.com/invoice/acct_x/test_{name}/pdf",
        "amount_due": 1500,
        "amount_paid": 1500,
        "currency": "usd",
        "stripe_created": created,
        "period_start": created - timedelta(days=30) if created else None,
        "period_end": created,
        **fields,
    }
    return StripeInvoice.objects.create(customer=customer, stripe_invoice_id=f"in_{name}", **values)


def gid(row: Any) -> str:
    names = {StripeInvoice: "StripeInvoice", StripeSubscription: "StripeSubscription"}
    return to_global_id(names[type(row)], row.pk)


def listed(client: Client, **variables: Any) -> list[str]:
    """The stripeInvoiceIds of the list, in its order (totalCount checked)."""
    body = gql(client, LIST, variables)
    assert "errors" not in body, body
    connection = body["data"]["stripeInvoices"]
    ids = [edge["node"]["stripeInvoiceId"] for edge in connection["edges"]]
    assert connection["totalCount"] == len(ids)
    return ids


def node(client: Client, row: StripeInvoice) -> dict[str, Any] | None:
    body = gql(client, NODE, {"id": gid(row)})
    assert "errors" not in body, body
    return body["data"]["node"]


@pytest.fixture
def alice(user: Any) -> StripeCustomer:
    return customer_of(user)


@pytest.fixture
def bobs(other_user: Any) -> StripeInvoice:
    """An invoice of bob's (the other user)."""
    return invoice(customer_of(other_user), "bob1", T0 + timedelta(days=5))


# --- stripeInvoices: whose --------------------------------------------------------------------------------


def test_the_owner_sees_their_invoices_newest_first_with_their_links(user, alice, bobs):
    second_customer = customer_of(user)  # a user may have several customers: all are theirs
    older = invoice(alice, "0001", T0)
    newer = invoice(second_customer, "0003", T0 + timedelta(days=60))
    middle = invoice(alice, "0002", T0 + timedelta(days=30), status="open", amount_paid=0)

    body = gql(signed_in(user), LIST)

    assert "errors" not in body, body
    connection = body["data"]["stripeInvoices"]
    assert connection["totalCount"] == 3
    nodes = [edge["node"] for edge in connection["edges"]]
    assert [n["id"] for n in nodes] == [gid(newer), gid(middle), gid(older)]
    assert nodes[1] == {
        "id": gid(middle),
        "stripeInvoiceId": "in_0002",
        "number": "ABC-0002",
        "status": "OPEN",
        "amountDue": 1500,
        "amountPaid": 0,
        "currency": "usd",
        "hostedInvoiceUrl": "https://invoice.stripe.com/i/acct_x/test_0002",
        "invoicePdf": "https://pay.stripe.com/invoice/acct_x/test_0002/pdf",
        "periodStart": "2025-03-01T12:00:00+00:00",
        "periodEnd": "2025-03-31T12:00:00+00:00",
        "created": "2025-03-31T12:00:00+00:00",  # Stripe's time, not the row's
        "subscription": None,
    }
    assert bobs.stripe_invoice_id not in str(body)


def test_a_draft_shows_nulls_and_created_falls_back_to_the_rows_time(user, alice):
    draft = invoice(
        alice, "draft", None, status="draft", number="", hosted_invoice_url="", invoice_pdf="", amount_paid=0
    )
    invoice(alice, "old", T0)  # Stripe's time long before the draft's row was saved: listed after it

    body = gql(signed_in(user), LIST)

    nodes = [edge["node"] for edge in body["data"]["stripeInvoices"]["edges"]]
    assert [n["stripeInvoiceId"] for n in nodes] == ["in_draft", "in_old"]
    first = nodes[0]
    assert (first["status"], first["number"], first["hostedInvoiceUrl"], first["invoicePdf"]) == (
        "DRAFT",
        None,
        None,
        None,
    )
    assert (first["periodStart"], first["periodEnd"]) == (None, None)
    assert datetime.fromisoformat(first["created"]) == draft.created


def test_another_users_invoices_are_not_listed(other_user, bobs, alice):
    invoice(alice, "alice1", T0)

    assert listed(signed_in(other_user)) == ["in_bob1"]
    third = gh.make_user("carol")
    assert listed(signed_in(third)) == []  # no customer at all: an empty list, no error


def test_anonymous_requests_are_denied(bobs):
    assert_denied(gql(Client(), "{ stripeInvoices { totalCount } }"), "stripeInvoices")
    body = gql(Client(), NODE, {"id": gid(bobs)})
    assert_denied(body, "node")


def test_staff_without_the_permission_see_only_their_own(alice, bobs):
    carol = staff("carol", "view_stripecharge", "view_stripesubscription")
    invoice(customer_of(carol), "carol1", T0)
    invoice(alice, "alice1", T0 + timedelta(days=1))

    assert listed(signed_in(carol)) == ["in_carol1"]


def test_staff_with_view_stripeinvoice_see_all(alice, bobs):
    invoice(alice, "alice1", T0)
    dave = staff("dave", "view_stripeinvoice")

    assert listed(signed_in(dave)) == ["in_bob1", "in_alice1"]


# --- stripeInvoices: arguments ----------------------------------------------------------------------------


@pytest.fixture
def subscriptions(user: Any, other_user: Any) -> dict[str, StripeSubscription]:
    [plan] = gh.make_plans()
    [first, second] = gh.make_subscriptions(user, plan, None, count=2, prefix="sub_alice_")
    [theirs] = gh.make_subscriptions(other_user, plan, None, prefix="sub_bob_")
    return {"first": first, "second": second, "bobs": theirs}


def test_the_list_by_subscription(user, alice, bobs, subscriptions):
    first, second, theirs = subscriptions["first"], subscriptions["second"], subscriptions["bobs"]
    invoice(alice, "a1", T0, subscription=first)
    invoice(alice, "a2", T0 + timedelta(days=30), subscription=first)
    invoice(alice, "a3", T0 + timedelta(days=31), subscription=second)
    invoice(alice, "one-off", T0 + timedelta(days=32))
    StripeInvoice.objects.filter(pk=bobs.pk).update(subscription=theirs)
    alice_client = signed_in(user)

    assert listed(alice_client, subscription=gid(first)) == ["in_a2", "in_a1"]
    assert listed(alice_client, subscription=gid(second)) == ["in_a3"]
    assert listed(alice_client) == ["in_one-off", "in_a3", "in_a2", "in_a1"]
    # another user's subscription, an unknown one, another type's id, nonsense: an empty list, no error
    for other in [
        gid(theirs),
        to_global_id("StripeSubscription", 999_999),
        to_global_id("StripeInvoice", bobs.pk),
        to_global_id("StripeSubscription", "x"),
        "nonsense",
    ]:
        assert listed(alice_client, subscription=other) == [], other


def test_staff_filter_by_a_subscription_they_may_see(alice, bobs, subscriptions):
    invoice(alice, "a1", T0, subscription=subscriptions["first"])
    invoices_only = staff("dave", "view_stripeinvoice")
    both = staff("erin", "view_stripeinvoice", "view_stripesubscription")

    # dave sees every invoice, but not the subscriptions: filtering by one tells nothing of it
    assert listed(signed_in(invoices_only), subscription=gid(subscriptions["first"])) == []
    assert listed(signed_in(both), subscription=gid(subscriptions["first"])) == ["in_a1"]


def test_the_list_by_status(user, alice, bobs):
    invoice(alice, "paid", T0)
    invoice(alice, "open", T0 + timedelta(days=1), status="open")
    invoice(alice, "void", T0 + timedelta(days=2), status="void")
    alice_client = signed_in(user)

    assert listed(alice_client, status="OPEN") == ["in_open"]
    assert listed(alice_client, status="PAID") == ["in_paid"]
    assert listed(alice_client, status="UNCOLLECTIBLE") == []
    body = gql(alice_client, LIST, {"status": "LATE"})
    assert body["errors"] and "data" not in body  # not a status: a validation error


def test_pages_are_capped_and_follow_cursors(settings, user, alice):
    settings.STRIPE_GRAPHQL_PAGE_SIZE = 3
    for day in range(5):
        invoice(alice, f"{day}", T0 + timedelta(days=day))
    alice_client = signed_in(user)
    page = "query($after: String) { stripeInvoices(first: 2, after: $after) { totalCount "
    page += "pageInfo { hasNextPage endCursor } edges { node { stripeInvoiceId } } } }"

    first = gql(alice_client, page)["data"]["stripeInvoices"]
    second = gql(alice_client, page, {"after": first["pageInfo"]["endCursor"]})["data"]["stripeInvoices"]

    assert [e["node"]["stripeInvoiceId"] for e in first["edges"]] == ["in_4", "in_3"]
    assert [e["node"]["stripeInvoiceId"] for e in second["edges"]] == ["in_2", "in_1"]
    assert first["totalCount"] == 5 and first["pageInfo"]["hasNextPage"]
    unpaged = gql(alice_client, "{ stripeInvoices { edges { node { id } } } }")
    assert len(unpaged["data"]["stripeInvoices"]["edges"]) == 3  # the cap is also the default page
    too_many = gql(alice_client, "{ stripeInvoices(first: 4) { edges { node { id } } } }")
    assert too_many["errors"][0]["extensions"]["code"] == "PAGE_SIZE_EXCEEDED"


# --- the subscription of an invoice -----------------------------------------------------------------------


def test_an_invoices_subscription_follows_the_subscription_rules(user, alice, subscriptions):
    own = invoice(alice, "a1", T0, subscription=subscriptions["first"])
    expected = {"id": gid(subscriptions["first"]), "stripeSubscriptionId": "sub_alice_0"}

    assert node(signed_in(user), own)["subscription"] == expected
    assert node(signed_in(staff("dave", "view_stripeinvoice")), own)["subscription"] is None
    both = staff("erin", "view_stripeinvoice", "view_stripesubscription")
    assert node(signed_in(both), own)["subscription"] == expected


# --- node(id) ---------------------------------------------------------------------------------------------


def test_node_follows_the_rules_of_the_list(user, other_user, alice, bobs):
    own = invoice(alice, "alice1", T0)

    assert node(signed_in(user), own)["stripeInvoiceId"] == "in_alice1"
    assert node(signed_in(user), bobs) is None  # another user's: null, as an unknown id
    assert node(signed_in(other_user), own) is None
    assert node(signed_in(staff("carol")), own) is None
    seen = node(signed_in(staff("dave", "view_stripeinvoice")), own)
    assert seen["__typename"] == "StripeInvoice" and seen["number"] == "ABC-alice1"
    body = gql(signed_in(user), NODE, {"id": to_global_id("StripeInvoice", 999_999)})
    assert body == {"data": {"node": None}}


# --- clientSecret -----------------------------------------------------------------------------------------


def test_no_client_secret_and_no_stripe_call_but_for_the_owner_of_an_open_invoice(
    fake_stripe, user, other_user, alice
):
    invoice(alice, "paid", T0)
    invoice(alice, "void", T0 + timedelta(days=1), status="void")
    invoice(alice, "open", T0 + timedelta(days=2), status="open", amount_paid=0)
    viewer = staff("dave", "view_stripeinvoice", "view_stripesubscription", "view_stripecustomer")
    fake_stripe.proxy.reset()

    staff_sees = gql(signed_in(viewer), SECRETS)
    owner_sees = gql(signed_in(user), SECRETS.replace("stripeInvoices", "stripeInvoices(status: PAID)"))
    other_sees = gql(signed_in(other_user), SECRETS)

    assert [
        (e["node"]["stripeInvoiceId"], e["node"]["clientSecret"])
        for e in staff_sees["data"]["stripeInvoices"]["edges"]
    ] == [("in_open", None), ("in_void", None), ("in_paid", None)]
    assert owner_sees["data"]["stripeInvoices"]["edges"] == [
        {"node": {"stripeInvoiceId": "in_paid", "clientSecret": None, "status": "PAID"}}
    ]
    assert other_sees["data"]["stripeInvoices"]["edges"] == []
    assert fake_stripe.proxy.requests == []


@pytest.fixture
def monthly(fake_stripe: Any) -> StripePrice:
    product = StripeProduct.objects.create(name="Tea club")
    product.create_at_stripe()
    price = StripePrice(product=product, unit_amount=1500, currency="usd", recurring_interval="month")
    price.create_at_stripe()
    return price


def renewal_that_asks(fake_stripe: Any, user: Any, price: StripePrice) -> StripeSubscription:
    """A subscription paid with a card whose bank asks every time: its first invoice authenticated,
    then renewed at the fake (the renewal waits for authentication: open, past_due); the invoices
    mirrored with refresh_invoices."""
    customer = StripeCustomer.get_or_create_for_user(user)
    set_up_card(fake_stripe, customer, ALWAYS_AUTHENTICATE)
    with pytest.raises(StripeSubscriptionIncomplete) as raised:
        StripeSubscription.subscribe(user, price=price)
    subscription = raised.value.subscription
    authenticate(fake_stripe, subscription.client_secret_for_owner())
    subscription.refresh_from_stripe()
    assert subscription.status == StripeSubscription.STATUS_ACTIVE
    renewed = _post(fake_stripe, f"/v1/subscriptions/{subscription.stripe_subscription_id}/_renew")
    assert renewed.ok, renewed.text
    call_command("refresh_invoices", "--since", "1", stdout=StringIO())
    subscription.refresh_from_stripe()
    assert subscription.status == StripeSubscription.STATUS_PAST_DUE
    return subscription


def test_the_owner_pays_an_open_renewal_with_its_client_secret(fake_stripe, user, other_user, monthly):
    subscription = renewal_that_asks(fake_stripe, user, monthly)
    [renewal] = StripeInvoice.objects.filter(status=StripeInvoice.STATUS_OPEN)
    assert renewal.subscription == subscription and renewal.number and renewal.hosted_invoice_url
    owner = signed_in(user)
    query = (
        "query($s: ID) { stripeInvoices(subscription: $s) { edges { node { stripeInvoiceId "
        "clientSecret status subscription { id status } } } } }"
    )
    by_subscription = {"s": gid(subscription)}

    # staff who see everything get no secret, and nothing is asked of Stripe for them
    viewer = staff("dave", "view_stripeinvoice", "view_stripesubscription")
    fake_stripe.proxy.reset()
    seen = gql(signed_in(viewer), query, by_subscription)["data"]["stripeInvoices"]["edges"]
    assert {e["node"]["stripeInvoiceId"]: e["node"]["clientSecret"] for e in seen} == {
        invoice_row.stripe_invoice_id: None for invoice_row in StripeInvoice.objects.all()
    }
    assert fake_stripe.proxy.requests == []
    assert gql(signed_in(other_user), query, by_subscription)["data"]["stripeInvoices"]["edges"] == []

    body = gql(owner, query, by_subscription)
    nodes = {e["node"]["stripeInvoiceId"]: e["node"] for e in body["data"]["stripeInvoices"]["edges"]}
    assert len(nodes) == 2  # the first invoice (paid) and the renewal
    assert [(r.method, r.path) for r in fake_stripe.proxy.requests] == [
        ("GET", f"/v1/invoices/{renewal.stripe_invoice_id}")  # the open one only
    ]
    secret = nodes[renewal.stripe_invoice_id]["clientSecret"]
    assert secret and "_secret_" in secret
    assert nodes[renewal.stripe_invoice_id]["status"] == "OPEN"
    assert nodes[renewal.stripe_invoice_id]["subscription"] == {"id": gid(subscription), "status": "PAST_DUE"}
    [paid_one] = [n for key, n in nodes.items() if key != renewal.stripe_invoice_id]
    assert (paid_one["status"], paid_one["clientSecret"]) == ("PAID", None)
    assert secret not in str(StripeInvoice.objects.get(pk=renewal.pk).stripe_response)  # never stored

    authenticate(fake_stripe, secret)  # stripe.js: confirmCardPayment(clientSecret), 3-D Secure passed

    # read again: Stripe says paid, the row follows, no secret
    again = gql(owner, NODE.replace("created", "created clientSecret"), {"id": gid(renewal)})
    assert again["data"]["node"]["clientSecret"] is None
    renewal.refresh_from_db()
    assert renewal.status == StripeInvoice.STATUS_PAID and renewal.amount_paid == renewal.amount_due


def test_stripe_failing_to_answer_gives_no_secret_and_no_error(fake_stripe, user, alice, caplog):
    """The invoice is not (or no longer) at Stripe: null, logged, and the rest of the answer stands."""
    invoice(alice, "gone", T0, status="open", amount_paid=0)

    body = gql(signed_in(user), SECRETS)

    assert body == {
        "data": {
            "stripeInvoices": {
                "edges": [{"node": {"stripeInvoiceId": "in_gone", "clientSecret": None, "status": "OPEN"}}]
            }
        }
    }
    assert "Client secret of invoice in_gone not read from Stripe" in caplog.text
