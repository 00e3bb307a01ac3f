"""The fake Stripe's invoices and renewals (aa_stripe/testing/fakestripe/invoices.py), driven by the real
stripe SDK: number and hosted pages once finalized (none on drafts), invoice.finalized, the invoice list
(filters, paging, newest first), and the test-only renewal with its three outcomes (paid; the bank asks
for authentication; declined), each failed one then paid on-session with the invoice's confirmation
secret.

Cards (https://docs.stripe.com/testing): 4242424242424242 pays; 4000002760003184 asks for authentication
every time, off-session included; 4000000000000341 attaches, then is declined."""

from __future__ import annotations

import time
from typing import Any

import pytest
import stripe

from tests import fakestripe_helpers
from tests.fakestripe_helpers import attached
from tests.test_fakestripe_intents import card, count_events
from tests.test_fakestripe_subscriptions import (
    ALWAYS_ASKS,
    DECLINED_WHEN_CHARGED,
    PAYS,
    as_default,
    authenticate,
    last_event,
    subscribe,
)

# The shared fixtures (pytest finds them under these names).
make_client = fakestripe_helpers.make_client
client = fakestripe_helpers.client
customer = fakestripe_helpers.customer
price = fakestripe_helpers.price


@pytest.fixture
def active(client: stripe.StripeClient, customer: stripe.Customer, price: stripe.Price) -> Any:
    """An active subscription, its first invoice paid with the customer's default card."""
    as_default(client, customer, PAYS)
    sub = subscribe(client, customer, {"price": price.id})
    assert sub.status == "active"
    return sub


def renew(client: stripe.StripeClient, subscription: Any) -> Any:
    """The test-only renewal: the period ends now, the next invoice is made and paid off-session."""
    return client.deserialize(
        client.raw_request("post", f"/v1/subscriptions/{subscription.id}/_renew"), api_mode="V1"
    )


def pay_with(client: stripe.StripeClient, subscription: Any, number: str) -> None:
    """From now on the subscription is paid with this card (attached to its customer)."""
    pm = attached(client, client.v1.customers.retrieve(subscription.customer), number)
    client.v1.subscriptions.update(subscription.id, params={"default_payment_method": pm.id})


def latest_invoice(client: stripe.StripeClient, subscription: Any) -> stripe.Invoice:
    latest = client.v1.subscriptions.retrieve(subscription.id).latest_invoice
    return client.v1.invoices.retrieve(latest, params={"expand": ["confirmation_secret"]})


def intent_of(client: stripe.StripeClient, invoice: stripe.Invoice) -> stripe.PaymentIntent:
    """The invoice's PaymentIntent, found from its confirmation secret as stripe.js does."""
    return client.v1.payment_intents.retrieve(invoice.confirmation_secret.client_secret.split("_secret_")[0])


def period(item: Any) -> tuple[int, int]:
    return item.current_period_start, item.current_period_end


def status_changes(client: stripe.StripeClient) -> list[tuple[str, str]]:
    """(old, new) status of each customer.subscription.updated changing it, in the order sent (the fake
    lists events as it made them; `created` alone cannot order events of one second)."""
    events = client.v1.events.list(params={"type": "customer.subscription.updated", "limit": 100}).data
    return [
        (event.data.previous_attributes.status, event.data.object.status)
        for event in events
        if "status" in event.data.previous_attributes
    ]


def ids(listed: Any) -> list[str]:
    return [invoice.id for invoice in listed.data]


# --- number, hosted_invoice_url, invoice_pdf, invoice.finalized ---------------------------------------------


def test_a_finalized_invoice_has_a_number_and_pages_a_draft_has_none(client, customer, active):
    invoice = latest_invoice(client, active)

    prefix, sequence = invoice.number.split("-")
    assert (len(prefix), prefix.isupper() or prefix.isalnum(), sequence) == (8, True, "0001")
    assert invoice.hosted_invoice_url.startswith("https://invoice.stripe.com/i/acct_")
    assert "/test_" in invoice.hosted_invoice_url
    assert invoice.invoice_pdf == (
        invoice.hosted_invoice_url.replace("https://invoice.stripe.com/i/", "https://pay.stripe.com/invoice/")
        + "/pdf"
    )
    assert (invoice.status, invoice.billing_reason, invoice.amount_due, invoice.amount_paid) == (
        "paid",
        "subscription_create",
        1500,
        1500,
    )
    assert (invoice.parent.subscription_details.subscription, invoice.subscription) == (active.id, active.id)
    assert invoice.status_transitions.finalized_at is not None

    created = last_event(client, "invoice.created").data.object  # Stripe makes it a draft first
    assert (created.id, created.status, created.number, created.hosted_invoice_url, created.invoice_pdf) == (
        invoice.id,
        "draft",
        None,
        None,
        None,
    )
    finalized = last_event(client, "invoice.finalized").data.object
    assert (finalized.id, finalized.number, finalized.hosted_invoice_url) == (
        invoice.id,
        invoice.number,
        invoice.hosted_invoice_url,
    )
    assert count_events(client, "invoice.finalized") == 1


def test_numbers_follow_each_customer(client, customer, price, active):
    first = latest_invoice(client, active)
    renew(client, active)
    second = latest_invoice(client, active)
    other = client.v1.customers.create(params={"email": "joe@example.com"})
    as_default(client, other, PAYS)
    subscribe(client, other, {"price": price.id})
    elsewhere = client.v1.invoices.list(params={"customer": other.id}).data[0]

    prefix = first.number.split("-")[0]
    assert (first.number, second.number) == (f"{prefix}-0001", f"{prefix}-0002")
    assert elsewhere.number.endswith("-0001") and not elsewhere.number.startswith(prefix)
    assert second.hosted_invoice_url != first.hosted_invoice_url
    assert latest_invoice(client, active).number == second.number  # stable


# --- Renewals ------------------------------------------------------------------------------------------


def test_a_renewal_paid_with_a_plain_card(client, customer, price, active):
    [item] = active["items"].data
    first = latest_invoice(client, active)

    renewed = renew(client, active)

    assert renewed.status == "active"
    [moved] = client.v1.subscriptions.retrieve(active.id)["items"].data
    assert moved.current_period_start == item.current_period_end
    assert moved.current_period_end > moved.current_period_start
    invoice = latest_invoice(client, active)
    assert invoice.id != first.id
    assert (invoice.status, invoice.billing_reason, invoice.amount_due, invoice.amount_paid) == (
        "paid",
        "subscription_cycle",
        1500,
        1500,
    )
    assert invoice.parent.subscription_details.subscription == active.id
    assert (invoice.period_start, invoice.period_end) == period(item)  # looks back one period
    [line] = invoice.lines.data
    assert (line.amount, line.period.start, line.period.end, line.plan.id) == (1500, *period(moved), price.id)
    assert intent_of(client, invoice).status == "succeeded"
    for type_ in ("invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded"):
        assert count_events(client, type_) == 2, type_
    assert count_events(client, "payment_intent.succeeded") == 2
    assert count_events(client, "invoice.payment_failed") == 0
    [updated] = client.v1.events.list(params={"type": "customer.subscription.updated"}).data
    assert updated.data.object.latest_invoice == invoice.id
    assert updated.data.previous_attributes.latest_invoice == first.id
    assert updated.data.object["items"].data[0].current_period_start == moved.current_period_start


def test_a_renewal_asking_authentication_is_past_due_until_authenticated(client, customer, active):
    pay_with(client, active, ALWAYS_ASKS)

    renewed = renew(client, active)

    invoice = latest_invoice(client, active)
    assert (renewed.status, invoice.status, invoice.amount_paid) == ("past_due", "open", 0)
    assert invoice.number.endswith("-0002")
    intent = intent_of(client, invoice)
    assert (intent.status, intent.client_secret, intent.latest_charge) == (
        "requires_action",
        invoice.confirmation_secret.client_secret,
        None,
    )
    assert count_events(client, "invoice.payment_action_required") == 1
    assert count_events(client, "payment_intent.requires_action") == 1
    assert count_events(client, "invoice.payment_failed") == 1  # Stripe sends it for this too
    assert status_changes(client) == [("active", "past_due")]

    authenticate(client, intent, "true")

    assert latest_invoice(client, active).status == "paid"
    assert client.v1.subscriptions.retrieve(active.id).status == "active"
    assert count_events(client, "invoice.paid") == 2
    assert status_changes(client) == [("active", "past_due"), ("past_due", "active")]


def test_a_declined_renewal_is_past_due_until_paid_with_another_card(client, make_client, customer, active):
    pay_with(client, active, DECLINED_WHEN_CHARGED)

    renewed = renew(client, active)

    invoice = latest_invoice(client, active)
    assert (renewed.status, invoice.status, invoice.amount_paid) == ("past_due", "open", 0)
    intent = intent_of(client, invoice)
    assert (intent.status, intent.last_payment_error.code, intent.last_payment_error.decline_code) == (
        "requires_payment_method",
        "card_declined",
        "generic_decline",
    )
    assert count_events(client, "invoice.payment_failed") == 1
    assert count_events(client, "invoice.payment_action_required") == 0
    assert count_events(client, "charge.failed") == 1
    assert status_changes(client) == [("active", "past_due")]

    new = card(client, PAYS)
    browser = make_client("pk_test_fake")  # stripe.js: the publishable key and the client secret
    browser.v1.payment_intents.confirm(
        intent.id,
        params={"payment_method": new.id, "client_secret": invoice.confirmation_secret.client_secret},
    )

    paid = latest_invoice(client, active)
    assert (paid.status, paid.amount_paid) == ("paid", 1500)
    assert client.v1.subscriptions.retrieve(active.id).status == "active"
    assert count_events(client, "invoice.paid") == 2
    assert status_changes(client) == [("active", "past_due"), ("past_due", "active")]


def test_a_renewal_without_a_payment_method_fails(client, customer, price):
    as_default(client, customer, PAYS)
    sub = subscribe(
        client, customer, {"price": price.id}, payment_settings={"save_default_payment_method": "off"}
    )
    pm = client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method
    client.v1.payment_methods.detach(pm)

    assert renew(client, sub).status == "past_due"
    assert latest_invoice(client, sub).status == "open"
    assert count_events(client, "invoice.payment_failed") == 1


def test_only_active_or_past_due_subscriptions_renew(client, customer, price):
    sub = subscribe(client, customer, {"price": price.id}, payment_behavior="default_incomplete")

    with pytest.raises(stripe.InvalidRequestError) as caught:
        renew(client, sub)

    assert caught.value.http_status == 400
    assert count_events(client, "invoice.created") == 1


def test_a_past_due_subscription_renews_again(client, customer, active):
    pay_with(client, active, DECLINED_WHEN_CHARGED)
    renew(client, active)
    pay_with(client, active, PAYS)

    assert renew(client, active).status == "active"
    statuses = [
        invoice.status for invoice in client.v1.invoices.list(params={"subscription": active.id}).data
    ]
    assert statuses == ["paid", "open", "paid"]


# --- The invoice list --------------------------------------------------------------------------------------


def test_invoices_are_listed_newest_first_filtered_and_paged(client, customer, price, active):
    renew(client, active)
    renew(client, active)
    pay_with(client, active, DECLINED_WHEN_CHARGED)
    renew(client, active)  # 4 invoices, the newest open
    other = client.v1.customers.create(params={"email": "joe@example.com"})
    as_default(client, other, PAYS)
    elsewhere = subscribe(client, other, {"price": price.id})
    mine = client.v1.invoices.list(params={"customer": customer.id, "limit": 100})

    assert len(mine.data) == 4
    assert [invoice.number.split("-")[1] for invoice in mine.data] == ["0004", "0003", "0002", "0001"]
    assert mine.data[0].id == latest_invoice(client, active).id
    assert ids(client.v1.invoices.list(params={"subscription": active.id})) == ids(mine)
    assert ids(client.v1.invoices.list(params={"subscription": elsewhere.id})) == [
        elsewhere.latest_invoice.id
    ]
    assert ids(client.v1.invoices.list(params={"customer": customer.id, "status": "open"})) == ids(mine)[:1]
    assert ids(client.v1.invoices.list(params={"customer": customer.id, "status": "paid"})) == ids(mine)[1:]
    assert client.v1.invoices.list(params={"customer": customer.id, "status": "void"}).data == []
    assert len(client.v1.invoices.list().data) == 5

    page = client.v1.invoices.list(params={"customer": customer.id, "limit": 2})
    assert (ids(page), page.has_more) == (ids(mine)[:2], True)
    page = client.v1.invoices.list(
        params={"customer": customer.id, "limit": 2, "starting_after": page.data[-1].id}
    )
    assert (ids(page), page.has_more) == (ids(mine)[2:], False)
    paged = client.v1.invoices.list(params={"customer": customer.id, "limit": 2}).auto_paging_iter()
    assert [invoice.id for invoice in paged] == ids(mine)


def test_invoices_are_listed_by_created(client, customer, active):
    created = latest_invoice(client, active).created
    later = int(time.time()) + 1000

    assert len(client.v1.invoices.list(params={"created": {"gte": created}}).data) == 1
    assert len(client.v1.invoices.list(params={"created": created}).data) == 1
    assert client.v1.invoices.list(params={"created": {"gt": created}}).data == []
    assert client.v1.invoices.list(params={"created": {"gte": later}}).data == []
    assert len(client.v1.invoices.list(params={"created": {"lt": later, "lte": later}}).data) == 1


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"status": "bogus"}, "status"),
        ({"created": {"after": 1}}, "created[after]"),
        ({"collection_methodx": "charge_automatically"}, "collection_methodx"),
    ],
)
def test_bad_list_parameters_are_refused(client, params, param):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.list(params=params)

    assert (caught.value.http_status, caught.value.param) == (400, param)


@pytest.mark.parametrize(
    ("coupon", "first", "renewal"),
    [
        ({"duration": "once", "percent_off": 10}, 1350, 1500),
        ({"duration": "forever", "amount_off": 200, "currency": "usd"}, 1300, 1300),
        ({"duration": "repeating", "duration_in_months": 3, "percent_off": 50}, 750, 750),
        ({"duration": "forever", "amount_off": 5000, "currency": "usd"}, 0, 0),
    ],
)
def test_a_coupon_is_taken_off_the_invoices_it_covers(client, customer, price, coupon, first, renewal):
    # localstripe has no discounts; Stripe takes the coupon off each invoice it covers, the first one
    # included, and the PaymentIntent charges the discounted total.
    made = client.v1.coupons.create(params=coupon)
    as_default(client, customer, PAYS)
    sub = subscribe(client, customer, {"price": price.id}, discounts=[{"coupon": made.id}])

    invoice = latest_invoice(client, sub)
    assert (sub.status, invoice.status) == ("active", "paid")
    assert (invoice.subtotal, invoice.total, invoice.amount_due, invoice.amount_paid) == (
        1500,
        first,
        first,
        first,
    )
    if first:
        assert intent_of(client, invoice).amount == first

    renew(client, sub)

    renewed = latest_invoice(client, sub)
    assert renewed.id != invoice.id
    assert (renewed.subtotal, renewed.amount_paid) == (1500, renewal)


def test_a_coupon_deleted_later_leaves_the_invoices_made_with_it(client, customer, price):
    made = client.v1.coupons.create(params={"duration": "forever", "percent_off": 10})
    as_default(client, customer, PAYS)
    sub = subscribe(client, customer, {"price": price.id}, discounts=[{"coupon": made.id}])
    paid = latest_invoice(client, sub)

    client.v1.coupons.delete(made.id)

    assert client.v1.invoices.retrieve(paid.id).amount_paid == 1350
