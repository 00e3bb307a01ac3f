"""The fake Stripe's PaymentIntents, charges and refunds (aa_stripe/testing/fakestripe/payment_intents.py),
driven by the real stripe SDK: paying off-session and on-session, 3-D Secure asked, passed and failed,
declines, retries with another card, confirming with the publishable key, cancel, lists, refunds, and the
events Stripe sends meanwhile, as delivered to a webhook endpoint.

Cards (https://docs.stripe.com/testing): 4242424242424242 pays; 4000002500003155 asks for authentication
unless set up for off-session use; 4000002760003184 asks every time; 4000008260003178 asks (unless set up),
then is declined for insufficient funds; 4000008400001629 asks, then is declined; 4000000000000341
attaches, then is declined; 4000000000000002 is declined."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import stripe

from tests import fakestripe_helpers
from tests.fakestripe_helpers import attached
from tests.test_fakestripe import webhook_receiver
from tests.test_fakestripe_intents import card, count_events, delivered, one_of_each

# The shared fixtures (pytest finds them under these names).
make_client = fakestripe_helpers.make_client
client = fakestripe_helpers.client
customer = fakestripe_helpers.customer

PAYS = "4242424242424242"
UNLESS_SET_UP = "4000002500003155"
ALWAYS_ASKS = "4000002760003184"
ASKS_THEN_INSUFFICIENT_FUNDS = "4000008260003178"
ASKS_THEN_DECLINED = "4000008400001629"
DECLINED_WHEN_CHARGED = "4000000000000341"
DECLINED = "4000000000000002"


def saved_through_setup_intent(
    client: stripe.StripeClient, customer: stripe.Customer, number: str
) -> stripe.PaymentMethod:
    """Saved for off-session use as stripe.js does it: a SetupIntent confirmed, 3-D Secure passed."""
    pm = card(client, number)
    intent = client.v1.setup_intents.create(params={"customer": customer.id, "usage": "off_session"})
    confirmed = client.v1.setup_intents.confirm(intent.id, params={"payment_method": pm.id})
    if confirmed.status == "requires_action":
        client.raw_request("post", f"/v1/setup_intents/{intent.id}/_authenticate?success=true")
    assert client.v1.setup_intents.retrieve(intent.id).status == "succeeded"
    return pm


def off_session_params(customer: stripe.Customer, payment_method: str, **extra: Any) -> dict[str, Any]:
    """What StripeCharge.charge() sends."""
    return {
        "amount": 1000,
        "currency": "usd",
        "customer": customer.id,
        "payment_method": payment_method,
        "off_session": True,
        "confirm": True,
        "description": "Order 42",
        "statement_descriptor_suffix": "ORDER 42",
        "metadata": {"attempt": "1", "order": "42"},
        # A saved card is charged as it is; redirect-based methods cannot be off-session.
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        **extra,
    }


def on_session(
    client: stripe.StripeClient, customer: stripe.Customer, payment_method: str
) -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": payment_method,
            "confirm": True,
            "payment_method_types": ["card"],
        }
    )


def authenticate(
    client: stripe.StripeClient, intent: stripe.PaymentIntent, success: str
) -> stripe.PaymentIntent:
    """localstripe's test endpoint: the customer passes (success="true") or fails 3-D Secure."""
    response = client.raw_request(
        "post",
        f"/v1/payment_intents/{intent.id}/_authenticate?client_secret={intent.client_secret}&success={success}",
    )
    return client.deserialize(response, api_mode="V1")


def error_of(caught: pytest.ExceptionInfo) -> dict[str, Any]:
    return caught.value.json_body["error"]


# --- Creating, and paying off-session -----------------------------------------------------------------


def test_an_intent_keeps_its_description_and_statement_descriptor_suffix(fake_stripe, client, customer):
    pm = attached(client, customer, PAYS)
    with webhook_receiver(fake_stripe, ["payment_intent.created"]) as received:
        created = client.v1.payment_intents.create(
            params={
                "amount": 1000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": pm.id,
                "description": "Order 42",
                "statement_descriptor_suffix": "ORDER 42",
                "metadata": {"order": "42"},
            }
        )
        [event] = delivered(received, 1)

    read = client.v1.payment_intents.retrieve(created.id)
    assert (read.status, read.description, read.statement_descriptor_suffix, read.statement_descriptor) == (
        "requires_confirmation",
        "Order 42",
        "ORDER 42",
        None,
    )
    assert (read.payment_method_types, read.latest_charge, read.last_payment_error) == (["card"], None, None)
    assert "charges" not in read  # removed from the current API
    assert read.automatic_payment_methods.to_dict() == {"allow_redirects": "always", "enabled": True}
    assert (event.data.object.id, event.data.object.status) == (created.id, "requires_confirmation")


def test_statement_descriptor_is_refused_for_cards_and_the_suffix_is_checked(client, customer):
    pm = attached(client, customer, PAYS)
    base = {"amount": 1000, "currency": "usd", "customer": customer.id, "payment_method": pm.id}

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.create(params={**base, "statement_descriptor": "ACME ORDER 42"})
    assert (caught.value.http_status, caught.value.param) == (400, "statement_descriptor")
    assert "not supported for the payment_method_type `card`" in caught.value.user_message
    assert "statement_descriptor_suffix" in caught.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.create(params={**base, "statement_descriptor_suffix": "X" * 23})
    assert caught.value.param == "statement_descriptor_suffix"
    assert client.v1.payment_intents.list().data == []  # nothing created


def test_confirming_on_creation_needs_a_return_url_while_redirects_are_allowed(client, customer):
    pm = attached(client, customer, PAYS)
    base = {
        "amount": 1000,
        "currency": "usd",
        "customer": customer.id,
        "payment_method": pm.id,
        "confirm": True,
    }

    for refused in ({}, {"automatic_payment_methods": {"enabled": True}}):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.payment_intents.create(params={**base, **refused})
        assert "A `return_url` must be specified" in caught.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.create(
            params={**base, "payment_method_types": ["card"], "automatic_payment_methods": {"enabled": True}}
        )
    assert caught.value.param == "automatic_payment_methods"
    assert client.v1.payment_intents.list().data == []

    never = client.v1.payment_intents.create(
        params={**base, "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"}}
    )
    with_url = client.v1.payment_intents.create(params={**base, "return_url": "https://example.com/back"})
    card_only = client.v1.payment_intents.create(params={**base, "payment_method_types": ["card"]})
    assert [pi.status for pi in (never, with_url, card_only)] == ["succeeded"] * 3
    assert never.automatic_payment_methods.to_dict() == {"allow_redirects": "never", "enabled": True}
    assert card_only.automatic_payment_methods is None


def test_an_off_session_payment_succeeds_and_its_charge_carries_the_intents_details(
    fake_stripe, client, customer
):
    pm = attached(client, customer, PAYS)
    events = ["payment_intent.created", "charge.succeeded", "payment_intent.succeeded"]
    with webhook_receiver(fake_stripe, events) as received:
        paid = client.v1.payment_intents.create(params=off_session_params(customer, pm.id))
        sent = one_of_each(delivered(received, 3))

    assert (paid.status, paid.amount_received, paid.payment_method, paid.next_action) == (
        "succeeded",
        1000,
        pm.id,
        None,
    )
    assert isinstance(paid.latest_charge, str) and paid.latest_charge.startswith("ch_")
    charge = client.v1.charges.retrieve(paid.latest_charge)
    assert (charge.payment_intent, charge.payment_method, charge.customer, charge.status, charge.paid) == (
        paid.id,
        pm.id,
        customer.id,
        "succeeded",
        True,
    )
    assert (charge.description, charge.statement_descriptor_suffix, charge.metadata.to_dict()) == (
        "Order 42",
        "ORDER 42",
        {"attempt": "1", "order": "42"},
    )
    assert (charge.outcome.type, charge.outcome.network_status) == ("authorized", "approved_by_network")
    expanded = client.v1.payment_intents.retrieve(paid.id, params={"expand": ["latest_charge"]})
    assert (expanded.latest_charge.id, expanded.latest_charge.amount) == (charge.id, 1000)
    listed = client.v1.charges.list(params={"payment_intent": paid.id})
    assert [c.id for c in listed.data] == [charge.id]
    assert (sent["payment_intent.created"].id, sent["payment_intent.succeeded"].status) == (
        paid.id,
        "succeeded",
    )
    assert sent["payment_intent.succeeded"].latest_charge == charge.id
    in_event = sent["charge.succeeded"]
    assert (in_event.id, in_event.payment_intent, in_event.metadata.to_dict()) == (
        charge.id,
        paid.id,
        {"attempt": "1", "order": "42"},
    )


def test_a_legacy_card_source_pays_as_a_payment_method(client):
    token = client.v1.tokens.create(
        params={"card": {"number": PAYS, "exp_month": "12", "exp_year": "2030", "cvc": "123"}}
    )
    customer = client.v1.customers.create(params={"source": token.id})
    assert customer.default_source.startswith("card_")

    paid = client.v1.payment_intents.create(params=off_session_params(customer, customer.default_source))

    assert (paid.status, paid.payment_method) == ("succeeded", customer.default_source)
    assert client.v1.charges.retrieve(paid.latest_charge).payment_method == customer.default_source


# --- Off-session payments that need authentication ----------------------------------------------------


@pytest.mark.parametrize(
    ("number", "saved"),
    [
        (UNLESS_SET_UP, "attached"),  # not set up for off-session use
        (ALWAYS_ASKS, "attached"),
        (ALWAYS_ASKS, "setup intent"),  # asks even once set up
    ],
)
def test_off_session_authentication_required_is_a_402_carrying_the_intent(
    fake_stripe, client, customer, number, saved
):
    if saved == "attached":
        pm = attached(client, customer, number)
    else:
        pm = saved_through_setup_intent(client, customer, number)
    events = ["charge.failed", "payment_intent.payment_failed", "payment_intent.requires_action"]
    with webhook_receiver(fake_stripe, events) as received:
        with pytest.raises(stripe.CardError) as caught:
            client.v1.payment_intents.create(params=off_session_params(customer, pm.id))
        sent = one_of_each(delivered(received, 2))

    error = error_of(caught)
    assert (caught.value.http_status, caught.value.code) == (402, "authentication_required")
    assert (error["type"], error["decline_code"], error["payment_method"]["id"]) == (
        "card_error",
        "authentication_required",
        pm.id,
    )
    assert error["message"] == "Your card was declined. This transaction requires authentication."
    intent = error["payment_intent"]
    assert (intent["status"], intent["payment_method"], intent["latest_charge"]) == (
        "requires_payment_method",
        None,
        error["charge"],
    )
    last = intent["last_payment_error"]
    assert (
        last["type"],
        last["code"],
        last["decline_code"],
        last["charge"],
        last["payment_method"]["id"],
    ) == (
        "card_error",
        "authentication_required",
        "authentication_required",
        error["charge"],
        pm.id,
    )
    read = client.v1.payment_intents.retrieve(intent["id"])  # it stays, in that state
    assert (read.status, read.last_payment_error.code, read.client_secret) == (
        "requires_payment_method",
        "authentication_required",
        intent["client_secret"],
    )
    charge = client.v1.charges.retrieve(error["charge"])
    assert (charge.status, charge.failure_code, charge.outcome.reason) == (
        "failed",
        "authentication_required",
        "authentication_required",
    )
    assert sent["payment_intent.payment_failed"].last_payment_error.code == "authentication_required"
    assert sent["charge.failed"].id == charge.id


def test_a_card_set_up_for_off_session_pays_off_session_without_asking_but_asks_on_session(
    fake_stripe, client, customer
):
    pm = saved_through_setup_intent(client, customer, UNLESS_SET_UP)

    paid = client.v1.payment_intents.create(params=off_session_params(customer, pm.id))
    asked = on_session(client, customer, pm.id)

    assert (paid.status, paid.next_action) == ("succeeded", None)
    assert (asked.status, asked.next_action.type) == ("requires_action", "use_stripe_sdk")


# --- On-session payments: 3-D Secure ------------------------------------------------------------------


def test_on_session_3d_secure_is_asked_then_passed(fake_stripe, client, customer):
    pm = attached(client, customer, UNLESS_SET_UP)
    events = ["payment_intent.requires_action", "charge.succeeded", "payment_intent.succeeded"]
    with webhook_receiver(fake_stripe, events) as received:
        asked = on_session(client, customer, pm.id)
        assert (asked.status, asked.next_action.type, asked.latest_charge) == (
            "requires_action",
            "use_stripe_sdk",
            None,
        )
        passed = authenticate(client, asked, "true")
        sent = one_of_each(delivered(received, 3))

    assert (passed.status, passed.next_action, passed.payment_method) == ("succeeded", None, pm.id)
    assert sent["payment_intent.requires_action"].status == "requires_action"
    assert sent["charge.succeeded"].id == passed.latest_charge
    assert sent["payment_intent.succeeded"].id == passed.id


@pytest.mark.parametrize(
    ("number", "decline_code", "message"),
    [
        (ASKS_THEN_INSUFFICIENT_FUNDS, "insufficient_funds", "Your card has insufficient funds."),
        (ASKS_THEN_DECLINED, "generic_decline", "Your card was declined."),
    ],
)
def test_authenticated_then_declined(fake_stripe, client, customer, number, decline_code, message):
    pm = attached(client, customer, number)
    asked = on_session(client, customer, pm.id)
    assert asked.status == "requires_action"

    with webhook_receiver(fake_stripe, ["charge.failed", "payment_intent.payment_failed"]) as received:
        with pytest.raises(stripe.CardError) as caught:
            authenticate(client, asked, "true")
        sent = one_of_each(delivered(received, 2))

    error = error_of(caught)
    assert (caught.value.code, error["decline_code"], error["message"]) == (
        "card_declined",
        decline_code,
        message,
    )
    assert error["payment_intent"]["last_payment_error"]["decline_code"] == decline_code
    read = client.v1.payment_intents.retrieve(asked.id)
    assert (read.status, read.payment_method, read.latest_charge) == (
        "requires_payment_method",
        None,
        error["charge"],
    )
    assert sent["charge.failed"].outcome.reason == decline_code
    assert sent["payment_intent.payment_failed"].last_payment_error.decline_code == decline_code


def test_insufficient_funds_once_set_up_is_declined_off_session_without_asking(client, customer):
    pm = saved_through_setup_intent(client, customer, ASKS_THEN_INSUFFICIENT_FUNDS)

    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_intents.create(params=off_session_params(customer, pm.id))

    assert (caught.value.code, error_of(caught)["decline_code"]) == ("card_declined", "insufficient_funds")


def test_failed_authentication_then_a_retry_with_another_card(fake_stripe, client, customer):
    pm = attached(client, customer, ALWAYS_ASKS)
    asked = on_session(client, customer, pm.id)
    with webhook_receiver(fake_stripe, ["payment_intent.payment_failed"]) as received:
        failed = authenticate(client, asked, "false")
        [event] = delivered(received, 1)

    assert (failed.status, failed.payment_method, failed.next_action) == (
        "requires_payment_method",
        None,
        None,
    )
    error = failed.last_payment_error
    assert (error.code, error.type, error.payment_method.id) == (
        "payment_intent_authentication_failure",
        "invalid_request_error",
        pm.id,
    )
    assert event.data.object.last_payment_error.code == "payment_intent_authentication_failure"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        authenticate(client, asked, "true")  # only while it asks
    assert caught.value.code == "payment_intent_unexpected_state"

    other = attached(client, customer, PAYS)
    retried = client.v1.payment_intents.confirm(asked.id, params={"payment_method": other.id})
    assert (retried.status, retried.payment_method, retried.last_payment_error) == (
        "succeeded",
        other.id,
        None,
    )


def test_authenticate_needs_the_client_secret(client, customer):
    asked = on_session(client, customer, attached(client, customer, UNLESS_SET_UP).id)

    with pytest.raises(stripe.AuthenticationError):
        client.raw_request(
            "post", f"/v1/payment_intents/{asked.id}/_authenticate?client_secret=nope&success=true"
        )
    assert client.v1.payment_intents.retrieve(asked.id).status == "requires_action"


# --- Declines -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "saved"), [(DECLINED_WHEN_CHARGED, True), (DECLINED, False)])
def test_a_declined_card_is_a_402_with_the_failed_charge_and_the_intent(
    fake_stripe, client, customer, number, saved
):
    pm = attached(client, customer, number) if saved else card(client, number)
    with webhook_receiver(fake_stripe, ["charge.failed", "payment_intent.payment_failed"]) as received:
        with pytest.raises(stripe.CardError) as caught:
            client.v1.payment_intents.create(params=off_session_params(customer, pm.id))
        sent = one_of_each(delivered(received, 2))

    error = error_of(caught)
    assert (caught.value.http_status, error["type"], error["code"], error["decline_code"]) == (
        402,
        "card_error",
        "card_declined",
        "generic_decline",
    )
    assert (error["message"], error["payment_method"]["id"]) == ("Your card was declined.", pm.id)
    intent = error["payment_intent"]
    assert (intent["status"], intent["payment_method"], intent["latest_charge"]) == (
        "requires_payment_method",
        None,
        error["charge"],
    )
    last = intent["last_payment_error"]
    assert (last["code"], last["decline_code"], last["charge"], last["payment_method"]["id"]) == (
        "card_declined",
        "generic_decline",
        error["charge"],
        pm.id,
    )
    charge = client.v1.charges.retrieve(error["charge"])
    assert (charge.status, charge.failure_code, charge.payment_intent, charge.metadata["attempt"]) == (
        "failed",
        "card_declined",
        intent["id"],
        "1",
    )
    assert (sent["charge.failed"].outcome.reason, sent["charge.failed"].outcome.type) == (
        "generic_decline",
        "issuer_declined",
    )
    assert sent["payment_intent.payment_failed"].id == intent["id"]


def test_after_a_decline_the_intent_is_retried_by_confirm_or_by_update_then_confirm(client, customer):
    declined = attached(client, customer, DECLINED_WHEN_CHARGED)
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_intents.create(params=off_session_params(customer, declined.id))
    intent_id = error_of(caught)["payment_intent"]["id"]
    first_charge = error_of(caught)["charge"]

    # Another card given to the intent: it waits for confirmation (localstripe still said
    # requires_payment_method), then pays off-session.
    updated = client.v1.payment_intents.update(
        intent_id, params={"payment_method": attached(client, customer, PAYS).id}
    )
    assert updated.status == "requires_confirmation"
    paid = client.v1.payment_intents.confirm(intent_id, params={"off_session": True})

    assert (paid.status, paid.last_payment_error) == ("succeeded", None)
    assert paid.latest_charge != first_charge
    charges = client.v1.charges.list(params={"payment_intent": intent_id}).data
    assert sorted(c.id for c in charges) == sorted([first_charge, paid.latest_charge])
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.confirm(intent_id)
    assert (caught.value.code, caught.value.json_body["error"]["payment_intent"]["status"]) == (
        "payment_intent_unexpected_state",
        "succeeded",
    )


# --- Confirming an intent created unconfirmed (the browser's part) ----------------------------------------


def test_confirm_with_a_payment_method_and_the_client_secret(client, customer):
    intent = client.v1.payment_intents.create(
        params={"amount": 500, "currency": "eur", "customer": customer.id}
    )
    assert intent.status == "requires_payment_method"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.confirm(intent.id)
    assert caught.value.code == "payment_intent_unexpected_state"  # no payment method yet
    pm = attached(client, customer, PAYS)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.confirm(
            intent.id,
            params={"payment_method": pm.id, "client_secret": "pi_nope_secret_x"},  # type: ignore[typeddict-unknown-key]
        )
    assert caught.value.param == "client_secret"

    confirmed = client.v1.payment_intents.confirm(
        intent.id,
        params={"payment_method": pm.id, "client_secret": intent.client_secret},  # type: ignore[typeddict-unknown-key]
    )

    assert (confirmed.status, confirmed.payment_method, confirmed.amount_received) == (
        "succeeded",
        pm.id,
        500,
    )


def test_the_browser_confirms_with_the_publishable_key_and_the_client_secret(
    fake_stripe, make_client, client, customer
):
    intent = client.v1.payment_intents.create(
        params={"amount": 500, "currency": "eur", "customer": customer.id}
    )
    pm = attached(client, customer, UNLESS_SET_UP)
    browser = make_client("pk_test_fake")

    with pytest.raises(stripe.AuthenticationError):
        browser.v1.payment_intents.confirm(intent.id, params={"payment_method": pm.id})  # no client_secret
    asked = browser.v1.payment_intents.confirm(
        intent.id,
        params={"payment_method": pm.id, "client_secret": intent.client_secret},  # type: ignore[typeddict-unknown-key]
    )
    assert (asked.status, asked.next_action.type) == ("requires_action", "use_stripe_sdk")

    # What stripe.js posts: a form with `key` and `client_secret`, no Authorization header.
    response = requests.post(
        f"{fake_stripe.url}/v1/payment_intents/{intent.id}/confirm",
        data={"key": "pk_test_fake", "client_secret": intent.client_secret, "payment_method": pm.id},
        timeout=10,
    )
    assert (response.status_code, response.json()["status"]) == (200, "requires_action")
    assert authenticate(client, asked, "true").status == "succeeded"


# --- Cancel and lists -----------------------------------------------------------------------------------


def test_cancel_is_announced_and_only_before_success(fake_stripe, client, customer):
    intent = on_session(client, customer, attached(client, customer, UNLESS_SET_UP).id)
    with webhook_receiver(fake_stripe, ["payment_intent.canceled"]) as received:
        canceled = client.v1.payment_intents.cancel(intent.id, params={"cancellation_reason": "abandoned"})
        [event] = delivered(received, 1)

    assert (canceled.status, canceled.cancellation_reason, canceled.next_action) == (
        "canceled",
        "abandoned",
        None,
    )
    assert canceled.canceled_at is not None
    assert (event.data.object.id, event.data.object.status) == (intent.id, "canceled")
    for again in (client.v1.payment_intents.cancel, client.v1.payment_intents.confirm):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            again(intent.id)
        assert (caught.value.http_status, caught.value.code) == (400, "payment_intent_unexpected_state")
    paid = client.v1.payment_intents.create(
        params=off_session_params(customer, attached(client, customer, PAYS).id)
    )
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.cancel(paid.id)
    assert "status of succeeded" in caught.value.user_message
    assert count_events(client, "payment_intent.canceled") == 1


def test_intents_are_listed_by_customer_and_creation_time_newest_first(client, customer):
    other = client.v1.customers.create()
    mine = [
        client.v1.payment_intents.create(
            params={"amount": 100 + i, "currency": "usd", "customer": customer.id}
        )
        for i in range(3)
    ]
    client.v1.payment_intents.create(params={"amount": 100, "currency": "usd", "customer": other.id})

    def listed(**params: Any) -> list[str]:
        return [pi.id for pi in client.v1.payment_intents.list(params=params).data]

    assert listed(customer=customer.id) == [pi.id for pi in reversed(mine)]
    assert listed(customer=customer.id, created={"gte": mine[0].created}) == [pi.id for pi in reversed(mine)]
    assert listed(customer=customer.id, created={"gt": mine[-1].created + 60}) == []
    assert listed(customer=customer.id, created=mine[0].created - 3600) == []
    assert len(listed()) == 4
    assert listed(customer=customer.id, limit=2) == [mine[2].id, mine[1].id]
    with pytest.raises(stripe.InvalidRequestError, match="unknown parameter"):
        client.v1.payment_intents.list(params={"status": "succeeded"})  # type: ignore[typeddict-unknown-key]


# --- Refunds --------------------------------------------------------------------------------------------


def test_refunds_by_charge_and_by_payment_intent_are_announced(fake_stripe, client, customer):
    paid = client.v1.payment_intents.create(
        params=off_session_params(customer, attached(client, customer, PAYS).id)
    )
    with webhook_receiver(fake_stripe, ["refund.created", "charge.refunded"]) as received:
        by_charge = client.v1.refunds.create(params={"charge": paid.latest_charge, "amount": 300})
        by_intent = client.v1.refunds.create(
            params={"payment_intent": paid.id, "reason": "requested_by_customer"}
        )
        sent = delivered(received, 4)

    assert (by_charge.charge, by_charge.payment_intent, by_charge.amount) == (
        paid.latest_charge,
        paid.id,
        300,
    )
    assert (by_intent.charge, by_intent.payment_intent, by_intent.amount) == (
        paid.latest_charge,
        paid.id,
        700,
    )
    charge = client.v1.charges.retrieve(paid.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (1000, True)
    listed = client.v1.refunds.list(params={"charge": paid.latest_charge})
    assert sorted(r.id for r in listed.data) == sorted([by_charge.id, by_intent.id])
    assert sorted(r.id for r in client.v1.refunds.list(params={"payment_intent": paid.id}).data) == sorted(
        [by_charge.id, by_intent.id]
    )
    created = sorted(e.data.object.amount for e in sent if e.type == "refund.created")
    refunded = sorted(
        (e.data.object.amount_refunded, e.data.object.refunded, e.data.previous_attributes.amount_refunded)
        for e in sent
        if e.type == "charge.refunded"
    )
    assert created == [300, 700]
    assert refunded == [(300, False, 0), (1000, True, 300)]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": paid.id})
    assert caught.value.code == "charge_already_refunded"


def test_an_intent_without_a_successful_charge_is_not_refunded(client, customer):
    unconfirmed = client.v1.payment_intents.create(
        params={"amount": 500, "currency": "usd", "customer": customer.id}
    )
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_intents.create(params=off_session_params(customer, card(client, DECLINED).id))
    declined_id = error_of(caught)["payment_intent"]["id"]

    for intent_id in (unconfirmed.id, declined_id):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.refunds.create(params={"payment_intent": intent_id})
        assert refused.value.param == "payment_intent"
    assert client.v1.refunds.list(params={"payment_intent": unconfirmed.id}).data == []
    assert count_events(client, "refund.created") == 0
