"""The fake Stripe's SetupIntents and PaymentMethods (aa_stripe/testing/fakestripe/intents.py), driven by
the real stripe SDK: saving a card with or without 3-D Secure, failing it, canceling, attaching, detaching,
listing a customer's payment methods, the default payment method, card brands, and the events Stripe
sends meanwhile, as delivered to a webhook endpoint.

Cards: 4242424242424242 needs no authentication; 4000002500003155 asks for it when set up;
4000000000000002 is declined when attached. localstripe takes raw card numbers in
POST /v1/payment_methods (Stripe only with raw-card-data access)."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import stripe

from aa_stripe.testing.fakestripe.plugin import FakeStripe
from tests.test_fakestripe import webhook_receiver

PLAIN = "4242424242424242"
ASKS_AUTHENTICATION = "4000002500003155"
DECLINED = "4000000000000002"
DEFAULT_PARAM = "invoice_settings[default_payment_method]"


@pytest.fixture
def client(fake_stripe: FakeStripe) -> Iterator[stripe.StripeClient]:
    http_client = stripe.RequestsClient(timeout=10)
    yield stripe.StripeClient(
        fake_stripe.api_key, base_addresses={"api": fake_stripe.url}, http_client=http_client
    )
    http_client.close()


@pytest.fixture
def customer(client: stripe.StripeClient) -> stripe.Customer:
    return client.v1.customers.create(params={"email": "jane@example.com"})


def card(client: stripe.StripeClient, number: str = PLAIN) -> stripe.PaymentMethod:
    return client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )


def setup_intent(client: stripe.StripeClient, customer: stripe.Customer) -> stripe.SetupIntent:
    return client.v1.setup_intents.create(params={"customer": customer.id, "usage": "off_session"})


def authenticate(client: stripe.StripeClient, setup_intent_id: str, success: str) -> stripe.SetupIntent:
    """The test-only endpoint: the customer passes (success="true") or fails 3-D Secure."""
    response = client.raw_request(
        "post", f"/v1/setup_intents/{setup_intent_id}/_authenticate?success={success}"
    )
    return client.deserialize(response, api_mode="V1")


def delivered(received: queue.Queue, count: int) -> list[stripe.Event]:
    """The next ``count`` events delivered to the webhook endpoint (in whatever order), then none."""
    events = []
    for _ in range(count):
        body, signature = received.get(timeout=5)
        events.append(stripe.Webhook.construct_event(body, signature, "whsec_test"))
    time.sleep(0.3)
    assert received.empty()
    return events


def one_of_each(events: list[stripe.Event]) -> dict[str, Any]:
    """The delivered objects by event type, each type delivered once."""
    types = [event.type for event in events]
    assert len(set(types)) == len(types), types
    return {event.type: event.data.object for event in events}


def count_events(client: stripe.StripeClient, type_: str) -> int:
    return len(client.v1.events.list(params={"type": type_, "limit": 100}).data)


def customer_pm_ids(client: stripe.StripeClient, customer_id: str, **params: Any) -> list[str]:
    return [pm.id for pm in client.v1.customers.payment_methods.list(customer_id, params=params).data]


# --- Customers without a card, SetupIntents as created ---------------------------------------------


def test_a_customer_is_created_without_a_card_and_announced(fake_stripe, client):
    with webhook_receiver(fake_stripe, ["customer.created"]) as received:
        created = client.v1.customers.create(params={"description": "Jane", "metadata": {"user": "7"}})
        [event] = delivered(received, 1)

    assert (created.description, created.metadata.to_dict(), created.default_source) == (
        "Jane",
        {"user": "7"},
        None,
    )
    assert (event.type, event.data.object.id, event.data.object.metadata["user"]) == (
        "customer.created",
        created.id,
        "7",
    )


def test_a_setup_intent_is_created_for_a_customer_and_read_back(client, customer):
    created = client.v1.setup_intents.create(
        params={"customer": customer.id, "usage": "off_session", "metadata": {"operation": "op-1"}}
    )
    read = client.v1.setup_intents.retrieve(created.id)

    assert read.client_secret.startswith(f"{created.id}_secret_")
    assert (read.customer, read.usage, read.metadata.to_dict(), read.status) == (
        customer.id,
        "off_session",
        {"operation": "op-1"},
        "requires_payment_method",
    )
    assert (read.payment_method, read.last_setup_error, read.payment_method_types) == (None, None, ["card"])
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.setup_intents.create(params={"customer": "cus_nobody"})
    assert (caught.value.http_status, caught.value.code, caught.value.param) == (
        400,
        "resource_missing",
        "customer",
    )
    assert [si.id for si in client.v1.setup_intents.list().data] == [created.id]


# --- SetupIntents that succeed ---------------------------------------------------------------------


def test_a_setup_intent_without_authentication_attaches_its_card_and_says_so(fake_stripe, client, customer):
    pm = card(client)
    intent = setup_intent(client, customer)
    with webhook_receiver(fake_stripe, ["payment_method.attached", "setup_intent.succeeded"]) as received:
        confirmed = client.v1.setup_intents.confirm(intent.id, params={"payment_method": pm.id})
        sent = one_of_each(delivered(received, 2))

    assert (confirmed.status, confirmed.payment_method, confirmed.next_action) == ("succeeded", pm.id, None)
    assert client.v1.payment_methods.retrieve(pm.id).customer == customer.id
    assert customer_pm_ids(client, customer.id) == [pm.id]
    expanded = client.v1.setup_intents.retrieve(intent.id, params={"expand": ["payment_method"]})
    assert (expanded.payment_method.id, expanded.payment_method.customer) == (pm.id, customer.id)
    attached, succeeded = sent["payment_method.attached"], sent["setup_intent.succeeded"]
    assert (attached.id, attached.customer) == (pm.id, customer.id)
    assert (succeeded.id, succeeded.status, succeeded.payment_method) == (intent.id, "succeeded", pm.id)

    # Stripe refuses to confirm it again (localstripe would succeed it, and attach, once more).
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.setup_intents.confirm(intent.id, params={"payment_method": card(client).id})
    assert (caught.value.http_status, caught.value.code) == (400, "setup_intent_unexpected_state")
    assert count_events(client, "setup_intent.succeeded") == 1


@pytest.mark.parametrize("passing", ["second confirm", "_authenticate"])
def test_a_setup_intent_asking_authentication_attaches_its_card_once_passed(
    fake_stripe, client, customer, passing
):
    pm = card(client, ASKS_AUTHENTICATION)
    intent = setup_intent(client, customer)
    events = ["setup_intent.requires_action", "payment_method.attached", "setup_intent.succeeded"]
    with webhook_receiver(fake_stripe, events) as received:
        asking = client.v1.setup_intents.confirm(intent.id, params={"payment_method": pm.id})
        assert (asking.status, asking.next_action.type) == ("requires_action", "use_stripe_sdk")
        assert client.v1.payment_methods.retrieve(pm.id).customer is None  # nothing saved yet
        if passing == "second confirm":  # what localstripe's stand-in stripe.js does
            passed = client.v1.setup_intents.confirm(intent.id)
        else:
            passed = authenticate(client, intent.id, "true")
        sent = one_of_each(delivered(received, 3))

    assert (passed.status, passed.payment_method, passed.next_action) == ("succeeded", pm.id, None)
    assert customer_pm_ids(client, customer.id) == [pm.id]
    requires_action = sent["setup_intent.requires_action"]
    assert (requires_action.status, requires_action.payment_method) == ("requires_action", pm.id)
    assert requires_action.next_action.type == "use_stripe_sdk"
    assert sent["payment_method.attached"].customer == customer.id
    assert sent["setup_intent.succeeded"].status == "succeeded"


# --- SetupIntents that fail or are canceled ---------------------------------------------------------


def test_failed_authentication_attaches_nothing_and_the_setup_intent_takes_another_card(
    fake_stripe, client, customer
):
    pm = card(client, ASKS_AUTHENTICATION)
    intent = setup_intent(client, customer)
    with webhook_receiver(
        fake_stripe, ["setup_intent.requires_action", "setup_intent.setup_failed"]
    ) as received:
        client.v1.setup_intents.confirm(intent.id, params={"payment_method": pm.id})
        failed = authenticate(client, intent.id, "false")
        sent = one_of_each(delivered(received, 2))

    assert (failed.status, failed.payment_method, failed.next_action) == (
        "requires_payment_method",
        None,
        None,
    )
    error = failed.last_setup_error
    assert (error.type, error.code, error.payment_method.id) == (
        "card_error",
        "setup_intent_authentication_failure",
        pm.id,
    )
    assert "authentication failed" in error.message
    assert client.v1.payment_methods.retrieve(pm.id).customer is None
    assert customer_pm_ids(client, customer.id) == []
    in_event = sent["setup_intent.setup_failed"]
    assert (in_event.status, in_event.payment_method, in_event.last_setup_error.code) == (
        "requires_payment_method",
        None,
        "setup_intent_authentication_failure",
    )
    assert sent["setup_intent.requires_action"].status == "requires_action"

    # Authentication only answers a SetupIntent that asks for it.
    with pytest.raises(stripe.InvalidRequestError) as caught:
        authenticate(client, intent.id, "true")
    assert (caught.value.http_status, caught.value.code) == (400, "setup_intent_unexpected_state")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        authenticate(client, intent.id, "maybe")
    assert caught.value.param == "success"

    other = card(client)
    retried = client.v1.setup_intents.confirm(intent.id, params={"payment_method": other.id})
    assert (retried.status, retried.last_setup_error) == ("succeeded", None)
    assert customer_pm_ids(client, customer.id) == [other.id]


def test_a_setup_intent_is_canceled_once_and_only_before_it_succeeds(fake_stripe, client, customer):
    pm = card(client, ASKS_AUTHENTICATION)
    intent = setup_intent(client, customer)
    client.v1.setup_intents.confirm(intent.id, params={"payment_method": pm.id})
    with webhook_receiver(fake_stripe, ["setup_intent.canceled"]) as received:
        canceled = client.v1.setup_intents.cancel(
            intent.id, params={"cancellation_reason": "requested_by_customer"}
        )
        [event] = delivered(received, 1)

    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "requested_by_customer")
    assert (event.type, event.data.object.id, event.data.object.status) == (
        "setup_intent.canceled",
        intent.id,
        "canceled",
    )
    assert client.v1.payment_methods.retrieve(pm.id).customer is None
    for again in (client.v1.setup_intents.cancel, client.v1.setup_intents.confirm):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            again(intent.id)
        assert (caught.value.http_status, caught.value.code) == (400, "setup_intent_unexpected_state")

    succeeded = setup_intent(client, customer)
    client.v1.setup_intents.confirm(succeeded.id, params={"payment_method": card(client).id})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.setup_intents.cancel(succeeded.id)
    assert caught.value.code == "setup_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.setup_intents.cancel(
            setup_intent(client, customer).id, params={"cancellation_reason": "bored"}
        )
    assert caught.value.param == "cancellation_reason"


def test_the_stand_in_stripe_js_still_cancels_when_3d_secure_is_failed(fake_stripe, client, customer):
    intent = setup_intent(client, customer)
    client.v1.setup_intents.confirm(
        intent.id, params={"payment_method": card(client, ASKS_AUTHENTICATION).id}
    )

    # localstripe-v3.js's confirmCardSetup, "Fail authentication": publishable key and client secret.
    response = requests.post(
        f"{fake_stripe.direct_url}/v1/setup_intents/{intent.id}/cancel",
        json={"key": "pk_test_x", "use_stripe_sdk": True, "client_secret": intent.client_secret},
        timeout=10,
    )

    assert (response.status_code, response.json()["status"]) == (200, "canceled")
    assert count_events(client, "setup_intent.canceled") == 1


# --- Attaching, detaching, listing ----------------------------------------------------------------


def test_a_customers_payment_methods_are_listed_newest_first(client, customer):
    first, second, third = card(client), card(client, "5555555555554444"), card(client, "378282246310005")
    sepa = client.v1.payment_methods.create(
        params={"type": "sepa_debit", "sepa_debit": {"iban": "DE89370400440532013000"}}
    )
    for pm in (third, first, sepa, second):  # the attach order does not matter, creation does
        client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})
    someone_else = client.v1.customers.create()
    client.v1.payment_methods.attach(card(client).id, params={"customer": someone_else.id})
    card(client)  # attached to nobody

    assert customer_pm_ids(client, customer.id) == [sepa.id, third.id, second.id, first.id]
    assert customer_pm_ids(client, customer.id, type="card") == [third.id, second.id, first.id]
    page = client.v1.customers.payment_methods.list(customer.id, params={"type": "card", "limit": 2})
    assert ([pm.id for pm in page.data], page.has_more) == ([third.id, second.id], True)
    assert customer_pm_ids(client, customer.id, type="card", starting_after=second.id) == [first.id]

    def listed(**params: Any) -> list[str]:
        found = client.v1.payment_methods.list(params={"customer": customer.id, **params})
        return [pm.id for pm in found.data]

    assert listed() == [sepa.id, third.id, second.id, first.id]  # `type` is optional
    assert listed(type="sepa_debit") == [sepa.id]
    assert listed(type="card", limit=1) == [third.id]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.payment_methods.list("cus_nobody")
    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")


def test_attach_and_detach_are_announced_and_detaching_the_default_clears_it(fake_stripe, client, customer):
    pm = card(client)
    events = ["payment_method.attached", "payment_method.detached", "customer.updated"]
    with webhook_receiver(fake_stripe, events) as received:
        attached = client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})
        client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": pm.id}}
        )
        detached = client.v1.payment_methods.detach(pm.id)
        sent = delivered(received, 4)

    assert (attached.customer, detached.customer) == (customer.id, None)
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method is None
    assert customer_pm_ids(client, customer.id) == []
    by_type: dict[str, list[stripe.Event]] = {}
    for event in sent:
        by_type.setdefault(event.type, []).append(event)
    [attach_event], [detach_event] = by_type["payment_method.attached"], by_type["payment_method.detached"]
    assert (attach_event.data.object.id, attach_event.data.object.customer) == (pm.id, customer.id)
    assert (detach_event.data.object.id, detach_event.data.object.customer) == (pm.id, None)
    assert detach_event.data.previous_attributes.customer == customer.id
    defaults = sorted(
        (event.data.object.invoice_settings.default_payment_method or "")
        for event in by_type["customer.updated"]
    )
    assert defaults == ["", pm.id]  # set, then cleared by the detach
    cleared = next(
        e
        for e in by_type["customer.updated"]
        if e.data.object.invoice_settings.default_payment_method is None
    )
    assert cleared.data.previous_attributes.invoice_settings.default_payment_method == pm.id


def test_detaching_a_payment_method_attached_to_no_customer_is_refused(client, customer):
    never_attached = card(client)
    once_attached = client.v1.payment_methods.attach(card(client).id, params={"customer": customer.id})
    client.v1.payment_methods.detach(once_attached.id)

    for pm in (never_attached, once_attached):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_methods.detach(pm.id)
        assert caught.value.http_status == 400
        assert caught.value.user_message == (
            "The payment method you provided is not attached to a customer so detachment is impossible."
        )
    assert count_events(client, "payment_method.detached") == 1


def test_a_declined_card_is_not_attached(client, customer):
    pm = card(client, DECLINED)

    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})

    assert (caught.value.http_status, caught.value.code) == (402, "card_declined")
    assert client.v1.payment_methods.retrieve(pm.id).customer is None
    assert customer_pm_ids(client, customer.id) == []
    assert count_events(client, "payment_method.attached") == 0


# --- The default payment method ------------------------------------------------------------------


def test_the_default_payment_method_must_be_attached_to_that_customer(client, customer):
    someone_else = client.v1.customers.create()
    theirs = client.v1.payment_methods.attach(card(client).id, params={"customer": someone_else.id})
    nobodys = card(client)
    updates_before = count_events(client, "customer.updated")

    for value, message in (
        ("pm_nope", "No such PaymentMethod: 'pm_nope'"),
        (theirs.id, f"The customer does not have a payment method with the ID {theirs.id}."),
        (nobodys.id, f"The customer does not have a payment method with the ID {nobodys.id}."),
    ):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.update(
                customer.id, params={"invoice_settings": {"default_payment_method": value}}
            )
        assert (caught.value.http_status, caught.value.code, caught.value.param) == (
            400,
            "resource_missing",
            DEFAULT_PARAM,
        )
        assert caught.value.user_message.startswith(message)

    # Nothing changed (localstripe stored the id, then failed every read of the customer).
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method is None
    assert len(client.v1.customers.list().data) == 2
    assert count_events(client, "customer.updated") == updates_before

    mine = client.v1.payment_methods.attach(nobodys.id, params={"customer": customer.id})
    made_default = client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": mine.id}}
    )
    assert made_default.invoice_settings.default_payment_method == mine.id
    unset = client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": ""}}
    )
    assert unset.invoice_settings.default_payment_method is None
    assert count_events(client, "customer.updated") == updates_before + 2


def test_a_new_customers_default_payment_method_is_the_one_it_is_created_with(client):
    loose, given = card(client), card(client)

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.create(params={"invoice_settings": {"default_payment_method": loose.id}})
    assert (caught.value.code, caught.value.param) == ("resource_missing", DEFAULT_PARAM)
    assert client.v1.customers.list().data == []

    created = client.v1.customers.create(
        params={"payment_method": given.id, "invoice_settings": {"default_payment_method": given.id}}
    )
    assert created.invoice_settings.default_payment_method == given.id
    assert customer_pm_ids(client, created.id) == [given.id]
    assert count_events(client, "payment_method.attached") == 1


# --- Card brands ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),  # 15 digits
        ("6011111111111117", "discover"),
        ("36227206271667", "diners"),  # 14 digits
        ("3566002020360505", "jcb"),
        ("6200000000000005", "unionpay"),
    ],
)
def test_a_card_brand_follows_the_number(client, number, brand):
    created = card(client, number)

    for pm in (created, client.v1.payment_methods.retrieve(created.id)):
        assert (pm.card.brand, pm.card.last4, pm.card.exp_month, pm.card.exp_year) == (
            brand,
            number[-4:],
            12,
            2030,
        )
        assert (pm.card.country, pm.card.funding) == ("FR", "credit")  # localstripe's, left alone


def test_setup_intents_are_listed_by_customer_and_creation_time(client, customer):
    other = client.v1.customers.create()
    mine = setup_intent(client, customer)
    setup_intent(client, other)

    listed = client.v1.setup_intents.list(params={"customer": customer.id, "created": {"gte": mine.created}})
    assert [s.id for s in listed.data] == [mine.id]
    later = client.v1.setup_intents.list(
        params={"customer": customer.id, "created": {"gt": mine.created + 60}}
    )
    assert later.data == []
    with pytest.raises(stripe.InvalidRequestError, match="unknown parameter"):
        client.v1.setup_intents.list(params={"customer": customer.id, "colour": "red"})  # type: ignore[typeddict-unknown-key]
