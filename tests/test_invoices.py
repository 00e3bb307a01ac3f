"""Invoices kept true by invoice.* events and refresh_invoices; renewals that ask the user back.

Events are signed here with Stripe's canonical invoice object (current API shape: the subscription
under ``parent.subscription_details``); renewals and on-session payments run against the fake Stripe
(its test-only ``_renew`` plays Stripe's clock).
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aa_stripe.exceptions import StripeSubscriptionIncomplete
from aa_stripe.models import (
    StripeCustomer,
    StripeInvoice,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    StripeWebhook,
)
from aa_stripe.signals import stripe_subscription_payment_action_required, stripe_subscription_payment_failed
from aa_stripe.testing import make_event
from tests.stripe_fixtures import stripe_object
from tests.test_payment_intents import _post, set_up_card
from tests.test_payment_methods import card_payment_method
from tests.test_subscriptions_prices import ALWAYS_AUTHENTICATE, PLAIN, authenticate
from tests.test_webhook_handlers import deliver, now, received

pytestmark = pytest.mark.django_db


def invoice_object(
    customer: StripeCustomer, subscription_id: str | None = "sub_known", **overrides: Any
) -> dict:
    values = {
        "id": "in_test0001",
        "customer": customer.stripe_customer_id,
        "status": "open",
        "number": "A1B2C3D4-0001",
        "billing_reason": "subscription_cycle",
        "amount_due": 1500,
        "amount_paid": 0,
        "currency": "usd",
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_test/test_abc",
        "invoice_pdf": "https://pay.stripe.com/invoice/acct_test/test_abc/pdf",
        "period_start": 1_900_000_000,
        "period_end": 1_902_592_000,
        "created": 1_902_592_000,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"metadata": {}, "subscription": subscription_id},
            "quote_details": None,
        },
        "subscription": None,
    }
    return stripe_object("invoice", **{**values, **overrides})


@pytest.fixture
def known_subscription(customer: StripeCustomer, plan: Any) -> StripeSubscription:
    """A subscription row as created earlier (no Stripe call needed by these event tests)."""
    return StripeSubscription.objects.create(
        user=customer.user,
        customer=customer,
        plan=plan,
        stripe_subscription_id="sub_known",
        is_created_at_stripe=True,
        status=StripeSubscription.STATUS_ACTIVE,
    )


def test_an_invoice_event_of_a_known_customer_makes_its_row(client, customer, known_subscription):
    deliver(client, make_event("invoice.finalized", invoice_object(customer)))

    invoice = StripeInvoice.objects.get()
    assert (invoice.customer, invoice.subscription, invoice.number, invoice.status) == (
        customer,
        known_subscription,
        "A1B2C3D4-0001",
        "open",
    )
    assert invoice.hosted_invoice_url.startswith("https://invoice.stripe.com/")
    assert invoice.invoice_pdf.endswith("/pdf") and invoice.amount_due == 1500
    assert int(invoice.period_end.timestamp()) == 1_902_592_000


def test_an_invoice_of_an_unknown_customer_is_stored_and_invents_nothing(client, customer):
    data = {**invoice_object(customer), "customer": "cus_unknown"}

    webhook = deliver(client, make_event("invoice.paid", data))

    assert (
        webhook.is_parsed
        and not StripeInvoice.objects.exists()
        and not StripeCustomer.objects.exclude(pk=customer.pk).exists()
    )


def test_an_invoice_of_an_unknown_subscription_keeps_its_id_and_invents_no_subscription(client, customer):
    deliver(
        client, make_event("invoice.finalized", invoice_object(customer, subscription_id="sub_elsewhere"))
    )

    invoice = StripeInvoice.objects.get()
    assert (invoice.subscription, invoice.stripe_subscription_id) == (None, "sub_elsewhere")
    assert not StripeSubscription.objects.exists()


def test_a_failed_renewal_sends_its_signal_once(client, customer, known_subscription):
    first = make_event("invoice.payment_failed", invoice_object(customer), created=now() - 10)
    retried = make_event("invoice.payment_failed", invoice_object(customer), created=now())  # Stripe retries

    with received(stripe_subscription_payment_failed) as sent:
        deliver(client, first)
        deliver(client, first, expected="duplicate")  # Stripe's redelivery of the same event
        deliver(client, retried)

    [send] = sent
    assert send["invoice"].stripe_invoice_id == "in_test0001" and send["subscription"] == known_subscription
    assert StripeInvoice.objects.get().payment_failed_signaled


def test_a_renewal_that_needs_authentication_sends_its_signal_once(client, customer, known_subscription):
    event = make_event("invoice.payment_action_required", invoice_object(customer))

    with received(stripe_subscription_payment_action_required) as sent:
        deliver(client, event)
        deliver(client, event, expected="duplicate")

    assert [send["subscription"] for send in sent] == [known_subscription]


def test_an_older_or_late_event_changes_nothing_and_asks_nobody(client, customer, known_subscription):
    paid = make_event(
        "invoice.paid", invoice_object(customer, status="paid", amount_paid=1500), created=now()
    )
    failed_before = make_event("invoice.payment_failed", invoice_object(customer), created=now() - 60)

    with received(stripe_subscription_payment_failed) as sent:
        deliver(client, paid)
        deliver(client, failed_before)  # arrives last, happened first

    invoice = StripeInvoice.objects.get()
    assert (invoice.status, invoice.amount_paid, sent) == ("paid", 1500, [])


def test_a_failure_event_of_an_invoice_paid_since_asks_nobody(client, customer, known_subscription):
    """The event's own data is newer than the row, but says paid: nothing to ask."""
    event = make_event("invoice.payment_failed", invoice_object(customer, status="paid", amount_paid=1500))

    with received(stripe_subscription_payment_failed) as sent:
        deliver(client, event)

    assert sent == []


def test_a_deleted_draft_goes(client, customer, known_subscription):
    deliver(
        client,
        make_event(
            "invoice.created", invoice_object(customer, status="draft", number=None), created=now() - 5
        ),
    )

    deliver(client, make_event("invoice.deleted", invoice_object(customer, status="draft", number=None)))

    assert not StripeInvoice.objects.exists()


def test_stored_invoices_keep_no_client_secret(client, customer, known_subscription):
    data = invoice_object(
        customer, confirmation_secret={"client_secret": "pi_123_secret_456", "type": "payment_intent"}
    )

    deliver(client, make_event("invoice.payment_action_required", data))

    assert "pi_123_secret_456" not in str(StripeInvoice.objects.get().stripe_response)
    assert "pi_123_secret_456" not in str(StripeWebhook.objects.get().raw_data)


def test_each_invoice_event_costs_a_bounded_number_of_queries(client, customer, known_subscription):
    deliver(
        client, make_event("invoice.created", invoice_object(customer, status="draft"), created=now() - 5)
    )
    with CaptureQueriesContext(connection) as queries:
        deliver(client, make_event("invoice.finalized", invoice_object(customer)))
    parse = [q["sql"] for q in queries.captured_queries]
    assert len(parse) <= 25, "\n".join(parse)


# --- refresh_invoices ----------------------------------------------------------------------------------


def test_refresh_invoices_pages_through_stripe_and_mirrors_known_customers(
    fake_stripe, customer, plan, other_user
):
    subscription = StripeSubscription.subscribe(customer.user, plan)  # one paid invoice at the fake
    out = StringIO()

    call_command("refresh_invoices", "--since", "1", stdout=out)

    invoice = StripeInvoice.objects.get()
    assert (invoice.customer, invoice.subscription, invoice.status) == (customer, subscription, "paid")
    assert invoice.number and invoice.hosted_invoice_url and invoice.invoice_pdf
    [listed] = list(fake_stripe.proxy.calls("GET", "/v1/invoices"))
    assert listed.query["limit"] == "100" and "created[gte]" in listed.query
    assert "1 invoices at Stripe" in out.getvalue() and "1 created" in out.getvalue()

    call_command("refresh_invoices", "--since", "1", stdout=out)  # again: the same row
    assert StripeInvoice.objects.count() == 1


def test_refresh_invoices_refuses_a_since_it_cannot_read(fake_stripe):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--since"):
        call_command("refresh_invoices", "--since", "last tuesday")


# --- renewals at the fake Stripe, end to end -------------------------------------------------------------


class Events:
    """Stripe's events at the fake, delivered to the webhook URL in the order Stripe made them."""

    def __init__(self, fake_stripe: Any) -> None:
        self.fake_stripe = fake_stripe
        self.seen: set[str] = {event["id"] for event in self._all()}

    def _all(self) -> list[dict[str, Any]]:
        return list(self.fake_stripe.get("/v1/events", limit=100)["data"])  # the fake lists oldest first

    def deliver_new(self, client: Any) -> list[str]:
        types = []
        for event in self._all():
            if event["id"] in self.seen:
                continue
            self.seen.add(event["id"])
            deliver(client, event)
            types.append(event["type"])
        return types


def renew(fake_stripe: Any, subscription: StripeSubscription) -> None:
    response = _post(fake_stripe, f"/v1/subscriptions/{subscription.stripe_subscription_id}/_renew")
    assert response.ok, response.text


@pytest.fixture
def paying(fake_stripe: Any, user: Any) -> Any:
    """``paying(number)``: the user's subscription to a monthly price, paid at once with a card that
    becomes the customer's default."""

    def make(number: str) -> StripeSubscription:
        customer = StripeCustomer.get_or_create_for_user(user)
        product = StripeProduct.objects.create(name="Tea club")
        product.create_at_stripe()
        price = StripePrice(product=product, unit_amount=1500, currency="usd", recurring_interval="month")
        price.create_at_stripe()
        set_up_card(fake_stripe, customer, PLAIN)
        subscription = StripeSubscription.subscribe(user, price=price)
        if number != PLAIN:  # the card the renewals will meet
            set_up_card(fake_stripe, customer, number)
            _post(
                fake_stripe,
                f"/v1/subscriptions/{subscription.stripe_subscription_id}",
                {"default_payment_method": customer.payment_methods.latest("pk").stripe_payment_method_id},
            )
        return subscription

    return make


def test_a_renewal_that_fails_sends_its_signal_once(client, fake_stripe, paying):
    subscription = paying("4000000000000341")  # attaches, then every charge is declined
    events = Events(fake_stripe)
    renew(fake_stripe, subscription)

    with received(stripe_subscription_payment_failed) as failed:
        delivered = events.deliver_new(client)

    assert "invoice.payment_failed" in delivered
    [send] = failed
    invoice = StripeInvoice.objects.get(billing_reason="subscription_cycle")
    assert send["invoice"] == invoice and send["subscription"] == subscription
    assert invoice.status == "open" and invoice.number.endswith("-0002") and invoice.hosted_invoice_url
    subscription.refresh_from_db()
    assert subscription.status == StripeSubscription.STATUS_PAST_DUE


def test_a_renewal_that_needs_authentication_asks_once_and_the_owner_pays_it(client, fake_stripe, paying):
    subscription = paying(ALWAYS_AUTHENTICATE)
    events = Events(fake_stripe)
    renew(fake_stripe, subscription)

    with (
        received(stripe_subscription_payment_action_required) as asked,
        received(stripe_subscription_payment_failed) as failed,
    ):
        events.deliver_new(client)

    [send] = asked
    invoice = send["invoice"]
    assert failed == []  # Stripe's invoice.payment_failed for it says nothing new
    secret = invoice.client_secret_for_owner()
    assert secret and secret not in str(StripeInvoice.objects.get(pk=invoice.pk).stripe_response)

    authenticate(fake_stripe, secret, success=True)  # stripe.confirmCardPayment(secret) in the browser
    events.deliver_new(client)

    invoice.refresh_from_db()
    subscription.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", 1500) and subscription.status == "active"
    assert invoice.client_secret_for_owner() is None


def test_invoice_paid_brings_a_past_due_subscription_up_to_date_before_its_own_event(
    client, fake_stripe, paying
):
    subscription = paying(ALWAYS_AUTHENTICATE)
    events = Events(fake_stripe)
    renew(fake_stripe, subscription)
    events.deliver_new(client)
    invoice = StripeInvoice.objects.get(billing_reason="subscription_cycle")
    authenticate(fake_stripe, invoice.client_secret_for_owner(), success=True)
    paid = [
        e for e in reversed(fake_stripe.get("/v1/events", limit=100)["data"]) if e["type"] == "invoice.paid"
    ]

    deliver(client, paid[-1])  # customer.subscription.updated is late

    subscription.refresh_from_db()
    assert subscription.status == "active"


# --- review findings ----------------------------------------------------------------------------------


def test_a_retried_failure_event_older_than_the_row_still_asks_about_an_open_invoice(
    client, customer, known_subscription
):
    deliver(client, make_event("invoice.updated", invoice_object(customer), created=now()))

    with received(stripe_subscription_payment_failed) as sent:
        deliver(client, make_event("invoice.payment_failed", invoice_object(customer), created=now() - 30))

    assert len(sent) == 1


def test_an_old_event_redelivered_after_a_refresh_does_not_reopen_a_paid_invoice(client, fake_stripe, paying):
    subscription = paying("4000000000000341")
    renew(fake_stripe, subscription)
    failed = [
        e for e in fake_stripe.get("/v1/events", limit=100)["data"] if e["type"] == "invoice.payment_failed"
    ][-1]
    invoice_id = failed["data"]["object"]["id"]
    method = card_payment_method(fake_stripe, PLAIN)
    secret = fake_stripe.get(f"/v1/invoices/{invoice_id}", **{"expand[]": "confirmation_secret"})[
        "confirmation_secret"
    ]["client_secret"]
    intent = secret.split("_secret_")[0]
    assert _post(
        fake_stripe,
        f"/v1/payment_intents/{intent}/confirm",
        {"payment_method": method, "client_secret": secret},
    ).ok
    call_command("refresh_invoices", "--since", "1", stdout=StringIO())  # the endpoint was down
    assert StripeInvoice.objects.get(stripe_invoice_id=invoice_id).status == "paid"

    with received(stripe_subscription_payment_failed) as sent:
        deliver(client, failed)  # Stripe's backlog arrives

    assert StripeInvoice.objects.get(stripe_invoice_id=invoice_id).status == "paid" and sent == []


def test_an_invoice_stripe_does_not_find_on_a_refetch_is_kept_unless_a_draft(
    client, fake_stripe, customer, known_subscription
):
    event = make_event("invoice.finalized", invoice_object(customer))
    deliver(client, event)

    deliver(
        client, make_event("invoice.updated", invoice_object(customer), created=event["created"])
    )  # a tie

    assert StripeInvoice.objects.filter(stripe_invoice_id="in_test0001").exists()


def test_an_authentication_renewal_asks_to_authenticate_whichever_event_comes_first(
    client, fake_stripe, paying
):
    subscription = paying(ALWAYS_AUTHENTICATE)
    events = Events(fake_stripe)
    renew(fake_stripe, subscription)
    new = [e for e in fake_stripe.get("/v1/events", limit=100)["data"] if e["id"] not in events.seen]
    failed = [e for e in new if e["type"] == "invoice.payment_failed"]
    others = [e for e in new if e["type"] != "invoice.payment_failed"]

    with (
        received(stripe_subscription_payment_action_required) as asked,
        received(stripe_subscription_payment_failed) as failures,
    ):
        for event in [*others[:3], *failed, *others[3:]]:  # the failure before the action event
            deliver(client, event)

    assert len(asked) == 1 and failures == []


def test_the_first_payment_s_invoice_asks_nobody_its_user_is_on_the_page(client, fake_stripe, user):
    customer = StripeCustomer.get_or_create_for_user(user)
    set_up_card(fake_stripe, customer, ALWAYS_AUTHENTICATE)
    product = StripeProduct.objects.create(name="Tea club")
    product.create_at_stripe()
    price = StripePrice(product=product, unit_amount=1500, currency="usd", recurring_interval="month")
    price.create_at_stripe()
    events = Events(fake_stripe)
    with pytest.raises(StripeSubscriptionIncomplete):
        StripeSubscription.subscribe(user, price=price)

    with received(stripe_subscription_payment_action_required) as asked:
        events.deliver_new(client)

    assert asked == [] and StripeInvoice.objects.get().billing_reason == "subscription_create"


def test_invoices_whose_events_came_before_the_subscription_s_answer_join_it(client, customer, plan):
    deliver(client, make_event("invoice.finalized", invoice_object(customer, subscription_id="sub_later")))
    row = StripeSubscription.objects.create(user=customer.user, customer=customer, plan=plan)

    row.set_stripe_data({"id": "sub_later", "status": "active", "items": {"data": []}})

    assert StripeInvoice.objects.get().subscription == row


def test_the_period_is_the_one_billed_not_the_one_looked_back_on(client, fake_stripe, paying):
    subscription = paying(PLAIN)
    events = Events(fake_stripe)
    renew(fake_stripe, subscription)
    events.deliver_new(client)

    invoice = StripeInvoice.objects.get(billing_reason="subscription_cycle")
    subscription.refresh_from_db()
    assert (invoice.period_start, invoice.period_end) == (
        subscription.current_period_start,
        subscription.current_period_end,
    )
