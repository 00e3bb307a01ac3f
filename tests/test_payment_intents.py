"""``StripeCharge.charge()`` on PaymentIntents (``STRIPE_CHARGE_API = "payment_intents"``, the
default), against the fake Stripe through the real SDK: off-session payments, cards that ask for
3-D Secure, declines, the owner paying on-session, lost answers and killed workers, and events
arriving before the API's answer. What stripe.js does in the browser is done with plain requests to
the fake.
"""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.test import TestCase
from django.utils import timezone

from aa_stripe.exceptions import StripeInternalError, StripeMethodNotAllowed
from aa_stripe.models import StripeCharge, StripeCustomer, StripeOperation, StripeSetupIntent
from aa_stripe.signals import (
    stripe_charge_card_exception,
    stripe_charge_requires_action,
    stripe_charge_succeeded,
)
from aa_stripe.testing import make_event, post_webhook
from tests.test_payment_methods import card_payment_method, confirm_setup

pytestmark = pytest.mark.django_db

PLAIN = "4242424242424242"
SET_UP_FOR_OFF_SESSION = "4000002500003155"  # asks when set up, then pays off-session without asking
ALWAYS_ASKS = "4000002760003184"
ASKS_THEN_DECLINES = "4000008260003178"  # insufficient funds after authentication
DECLINES = "4000000000000341"  # attaches, then declines payments


@pytest.fixture
def sent() -> Any:
    counts: dict[str, int] = {"succeeded": 0, "declined": 0, "requires_action": 0}

    def count(name: str) -> Any:
        def receiver(sender: Any, **kwargs: Any) -> None:
            counts[name] += 1

        return receiver

    receivers = {
        stripe_charge_succeeded: count("succeeded"),
        stripe_charge_card_exception: count("declined"),
        stripe_charge_requires_action: count("requires_action"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver, weak=False)
    yield counts
    for signal, receiver in receivers.items():
        signal.disconnect(receiver)


def _post(fake_stripe: Any, path: str, data: dict[str, Any] | None = None) -> requests.Response:
    return requests.post(
        f"{fake_stripe.direct_url}{path}",
        data=data or {},
        headers={"Authorization": f"Bearer {fake_stripe.api_key}"},
        timeout=10,
    )


def attached_card(fake_stripe: Any, customer: StripeCustomer, number: str) -> str:
    """A card attached to the customer and made its default (as the dashboard or an API would)."""
    method = card_payment_method(fake_stripe, number)
    assert _post(
        fake_stripe, f"/v1/payment_methods/{method}/attach", {"customer": customer.stripe_customer_id}
    ).ok
    customer.update_at_stripe({"invoice_settings": {"default_payment_method": method}})
    return method


def set_up_card(fake_stripe: Any, customer: StripeCustomer, number: str) -> str:
    """A card saved through a SetupIntent (3-D Secure passed when asked), the customer's default."""
    intent = StripeSetupIntent.create_for_customer(customer)
    confirmed = confirm_setup(fake_stripe, intent, number)
    if confirmed["status"] == "requires_action":
        path = f"/v1/setup_intents/{intent.stripe_setup_intent_id}/_authenticate?success=true"
        assert _post(fake_stripe, path).ok
    method = intent.complete()
    customer.refresh_from_db()
    if customer.default_payment_method != method.stripe_payment_method_id:
        method.set_as_default()
    return method.stripe_payment_method_id


@pytest.fixture
def cardless(fake_stripe: Any, user: Any) -> StripeCustomer:
    return StripeCustomer.get_or_create_for_user(user)


def new_charge(user: Any, **values: Any) -> StripeCharge:
    return StripeCharge.objects.create(
        user=user,
        amount=values.pop("amount", 1500),
        description=values.pop("description", "Order #7"),
        **values,
    )


def intents_at(fake_stripe: Any) -> list[dict[str, Any]]:
    return fake_stripe.get("/v1/payment_intents")["data"]


def creations(fake_stripe: Any) -> list[Any]:
    return [
        call
        for call in fake_stripe.proxy.calls("POST", "/v1/payment_intents")
        if call.path == "/v1/payment_intents"
    ]


# --- paying off-session ---------------------------------------------------------------------------


def test_a_saved_card_is_charged_off_session_through_a_payment_intent(fake_stripe, user, cardless, sent):
    method = set_up_card(fake_stripe, cardless, PLAIN)
    charge = new_charge(user, statement_descriptor="ORDER 7")

    charge.charge()

    charge.refresh_from_db()
    [intent] = intents_at(fake_stripe)
    assert (charge.is_charged, charge.status, charge.payment_intent_id) == (True, "succeeded", intent["id"])
    assert charge.stripe_charge_id == intent["latest_charge"] and charge.stripe_charge_id.startswith("ch_")
    assert charge.payment_method == method
    [request] = creations(fake_stripe)
    assert request.idempotency_key == f"payment_intent:{charge.uuid}:1"
    params = request.params
    assert (params["off_session"], params["confirm"], params["payment_method"]) == ("true", "true", method)
    assert params["statement_descriptor_suffix"] == "ORDER 7" and "statement_descriptor" not in params
    assert params["description"] == "Order #7" and params["customer"] == cardless.stripe_customer_id
    assert params["metadata[charge_uuid]"] == str(charge.uuid) and params["metadata[attempt]"] == "1"
    assert params["metadata[operation]"] == str(StripeOperation.objects.get(kind="payment_intent").uuid)
    assert sent == {"succeeded": 1, "declined": 0, "requires_action": 0}
    assert not fake_stripe.proxy.calls("POST", "/v1/charges")


def test_a_customer_saved_by_aa_stripe_with_a_card_source_is_charged_through_a_payment_intent(
    fake_stripe, user, customer, sent
):
    """aa-stripe 0.13 saved customers from tokens: a card source, no PaymentMethod. No migration."""
    charge = new_charge(user)

    charge.charge()

    charge.refresh_from_db()
    assert charge.is_charged and charge.payment_method == customer.default_source
    assert creations(fake_stripe)[0].params["payment_method"].startswith("card_")
    assert sent["succeeded"] == 1


def test_a_card_set_up_for_off_session_pays_without_asking(fake_stripe, user, cardless, sent):
    set_up_card(fake_stripe, cardless, SET_UP_FOR_OFF_SESSION)
    charge = new_charge(user)

    charge.charge()

    charge.refresh_from_db()
    assert charge.is_charged and sent == {"succeeded": 1, "declined": 0, "requires_action": 0}


def test_a_declined_card_marks_the_attempt_failed_and_a_retry_confirms_the_same_intent(
    fake_stripe, user, cardless, sent
):
    attached_card(fake_stripe, cardless, DECLINES)
    charge = new_charge(user)

    assert charge.charge() is None

    charge.refresh_from_db()
    assert (charge.charge_attempt_failed, charge.status, charge.failure_code) == (
        True,
        "failed",
        "card_declined",
    )
    assert charge.decline_code and charge.payment_intent_id.startswith("pi_")
    assert sent == {"succeeded": 0, "declined": 1, "requires_action": 0}

    assert charge.charge() is None  # deliberately again: attempt 2, a key of its own, the same intent

    charge.refresh_from_db()
    assert charge.attempt == 2 and len(intents_at(fake_stripe)) == 1
    assert [c.idempotency_key for c in creations(fake_stripe)] == [f"payment_intent:{charge.uuid}:1"]
    [confirm] = fake_stripe.proxy.calls("POST", f"/v1/payment_intents/{charge.payment_intent_id}/confirm")
    assert confirm.idempotency_key == f"payment_intent:{charge.uuid}:2"
    assert confirm.params["off_session"] == "true" and "metadata[operation]" not in confirm.params
    assert sent["declined"] == 2


def test_a_retry_after_the_customer_paid_on_session_records_one_payment(fake_stripe, user, cardless, sent):
    """Declined off-session; the customer pays the same intent on-session with another card while
    the shop retries: one intent, paid once, recorded once."""
    attached_card(fake_stripe, cardless, DECLINES)
    charge = new_charge(user)
    charge.charge()
    charge.refresh_from_db()
    secret = charge.pay_on_session().client_secret_for_owner()
    good = card_payment_method(fake_stripe, PLAIN)
    assert _post(
        fake_stripe, f"/v1/payment_methods/{good}/attach", {"customer": cardless.stripe_customer_id}
    ).ok
    paid = _post(
        fake_stripe,
        f"/v1/payment_intents/{charge.payment_intent_id}/confirm",
        {"payment_method": good, "client_secret": secret},
    )
    assert paid.ok and paid.json()["status"] == "succeeded", paid.text

    result = charge.charge()  # the shop's retry, not knowing yet

    charge.refresh_from_db()
    assert charge.is_charged and result is not None
    assert (
        len(intents_at(fake_stripe)) == 1 and len(fake_stripe.get("/v1/charges")["data"]) == 2
    )  # 1 declined
    assert sent == {"succeeded": 1, "declined": 1, "requires_action": 0}


# --- Strong Customer Authentication -----------------------------------------------------------------


def test_a_card_that_asks_every_time_leaves_the_charge_waiting_for_the_customer(
    fake_stripe, user, cardless, sent
):
    attached_card(fake_stripe, cardless, ALWAYS_ASKS)
    charge = new_charge(user)

    assert charge.charge() is None

    charge.refresh_from_db()
    assert not charge.is_charged and not charge.charge_attempt_failed
    assert (charge.status, charge.failure_code) == ("requires_payment_method", "authentication_required")
    assert charge.payment_method and charge.payment_intent_id.startswith("pi_")
    assert sent == {"succeeded": 0, "declined": 0, "requires_action": 1}
    with pytest.raises(StripeMethodNotAllowed, match="waits for the customer"):
        charge.charge()

    out = StringIO()
    call_command("charge_stripe", stdout=out, stderr=out)

    assert len(creations(fake_stripe)) == 1  # never retried off-session
    assert sent["requires_action"] == 1


def test_the_owner_pays_on_session_and_it_is_recorded_once(client, fake_stripe, user, cardless, sent):
    attached_card(fake_stripe, cardless, ALWAYS_ASKS)
    charge = new_charge(user)
    charge.charge()
    charge.refresh_from_db()

    charge = charge.pay_on_session()
    secret = charge.client_secret_for_owner()
    assert secret and secret.startswith(f"{charge.payment_intent_id}_secret_")
    # stripe.js: confirmCardPayment(secret, {payment_method}) -> 3-D Secure dialog -> passed
    confirmed = _post(
        fake_stripe,
        f"/v1/payment_intents/{charge.payment_intent_id}/confirm",
        {"payment_method": charge.payment_method, "client_secret": secret},
    )
    assert confirmed.ok and confirmed.json()["status"] == "requires_action", confirmed.text
    passed = _post(
        fake_stripe,
        f"/v1/payment_intents/{charge.payment_intent_id}/_authenticate",
        {"client_secret": secret, "success": "true"},
    )
    assert passed.ok and passed.json()["status"] == "succeeded", passed.text

    charge.refresh_from_stripe()
    charge.refresh_from_stripe()  # twice: recorded once
    deliver_intent(client, fake_stripe, charge, "payment_intent.succeeded")  # and the event after it

    charge.refresh_from_db()
    assert (charge.is_charged, charge.status) == (True, "succeeded")
    assert charge.stripe_charge_id.startswith("ch_") and charge.client_secret_for_owner() is None
    assert sent == {"succeeded": 1, "declined": 0, "requires_action": 1}


@pytest.mark.parametrize(
    ("number", "decline_code"),
    [(ASKS_THEN_DECLINES, "insufficient_funds"), ("4000008400001629", "generic_decline")],
)
def test_an_on_session_attempt_the_bank_declines_ends_failed_with_its_decline_code(
    fake_stripe, user, cardless, sent, number, decline_code
):
    attached_card(fake_stripe, cardless, number)
    charge = new_charge(user)
    charge.charge()
    charge.refresh_from_db()
    secret = charge.pay_on_session().client_secret_for_owner()

    _post(
        fake_stripe,
        f"/v1/payment_intents/{charge.payment_intent_id}/confirm",
        {"payment_method": charge.payment_method, "client_secret": secret},
    )
    _post(
        fake_stripe,
        f"/v1/payment_intents/{charge.payment_intent_id}/_authenticate",
        {"client_secret": secret, "success": "true"},
    )
    charge.refresh_from_stripe()

    charge.refresh_from_db()
    assert (charge.is_charged, charge.status, charge.charge_attempt_failed) == (False, "failed", True)
    assert charge.decline_code == decline_code
    assert sent["declined"] == 1


def test_a_paid_or_canceled_charge_cannot_be_paid_on_session(fake_stripe, user, cardless):
    set_up_card(fake_stripe, cardless, PLAIN)
    paid = new_charge(user)
    paid.charge()
    paid.refresh_from_db()

    with pytest.raises(StripeMethodNotAllowed, match="Already paid"):
        paid.pay_on_session()
    canceled = new_charge(user, status=StripeCharge.CANCELED, payment_intent_id="pi_gone")
    with pytest.raises(StripeMethodNotAllowed, match="canceled"):
        canceled.pay_on_session()


# --- faults: lost answers, stored 5xx, killed workers -----------------------------------------------


def test_a_lost_answer_is_finished_by_asking_again_never_a_second_payment(fake_stripe, user, cardless, sent):
    set_up_card(fake_stripe, cardless, PLAIN)
    charge = new_charge(user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/payment_intents")
    with pytest.raises(StripeInternalError):
        charge.charge()
    charge.refresh_from_db()
    assert charge.outcome_unknown and charge.status == "pending"

    charge.charge()

    charge.refresh_from_db()
    [intent] = intents_at(fake_stripe)
    assert charge.is_charged and charge.payment_intent_id == intent["id"]
    assert {c.idempotency_key for c in creations(fake_stripe)} == {f"payment_intent:{charge.uuid}:1"}
    assert sent["succeeded"] == 1


def test_a_stored_5xx_is_looked_up_and_the_payment_found_not_made_again(fake_stripe, user, cardless, sent):
    set_up_card(fake_stripe, cardless, PLAIN)
    charge = new_charge(user)
    fake_stripe.proxy.inject("status_after", method="POST", path_prefix="/v1/payment_intents", status=500)
    with pytest.raises(StripeInternalError):
        charge.charge()

    out = StringIO()
    call_command("reconcile_stripe_operations", stdout=out, stderr=out)

    charge.refresh_from_db()
    assert charge.is_charged and len(intents_at(fake_stripe)) == 1 and len(creations(fake_stripe)) == 1
    assert fake_stripe.proxy.calls("GET", "/v1/payment_intents")
    assert sent["succeeded"] == 1


def test_a_killed_worker_is_taken_over_after_its_lease_and_pays_once(fake_stripe, user, cardless, sent):
    """The worker died after Stripe acted: its operation stays "sending" until the lease ends."""
    set_up_card(fake_stripe, cardless, PLAIN)
    charge = new_charge(user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/payment_intents")
    with pytest.raises(StripeInternalError):
        charge.charge()
    operation = StripeOperation.objects.get(kind="payment_intent")
    StripeOperation.objects.filter(pk=operation.pk).update(  # as a killed worker leaves it
        state=StripeOperation.SENDING, lease_until=timezone.now() + timedelta(minutes=5)
    )
    with pytest.raises(StripeMethodNotAllowed):  # in progress elsewhere: not sent again
        charge.charge()
    StripeOperation.objects.filter(pk=operation.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    out = StringIO()
    call_command("reconcile_stripe_operations", stdout=out, stderr=out)

    charge.refresh_from_db()
    assert charge.is_charged and len(intents_at(fake_stripe)) == 1 and sent["succeeded"] == 1


# --- events -----------------------------------------------------------------------------------------


def deliver_intent(client: Any, fake_stripe: Any, charge: StripeCharge, event_type: str) -> None:
    intent = fake_stripe.get(f"/v1/payment_intents/{charge.payment_intent_id}")
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = post_webhook(client, make_event(event_type, intent))
    assert response.status_code == 200, response.content


def test_the_event_before_the_lost_answer_records_the_payment_once(client, fake_stripe, user, cardless, sent):
    set_up_card(fake_stripe, cardless, PLAIN)
    charge = new_charge(user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/payment_intents")
    with pytest.raises(StripeInternalError):
        charge.charge()
    [intent] = intents_at(fake_stripe)
    with TestCase.captureOnCommitCallbacks(execute=True):
        post_webhook(client, make_event("payment_intent.succeeded", intent))

    charge.refresh_from_db()
    assert charge.is_charged and sent["succeeded"] == 1
    assert StripeOperation.objects.get(kind="payment_intent").state == StripeOperation.SUCCEEDED
    out = StringIO()
    call_command("reconcile_stripe_operations", stdout=out, stderr=out)
    assert sent["succeeded"] == 1 and len(creations(fake_stripe)) == 1


def test_an_intent_stripe_cancels_ends_the_charge(client, fake_stripe, user, cardless, sent):
    attached_card(fake_stripe, cardless, ALWAYS_ASKS)
    charge = new_charge(user)
    charge.charge()
    charge.refresh_from_db()
    assert _post(fake_stripe, f"/v1/payment_intents/{charge.payment_intent_id}/cancel").ok

    deliver_intent(client, fake_stripe, charge, "payment_intent.canceled")

    charge.refresh_from_db()
    assert (charge.status, charge.is_charged) == ("canceled", False)
    with pytest.raises(StripeMethodNotAllowed):
        charge.pay_on_session()


def test_an_event_for_an_intent_we_never_created_is_stored_and_ignored(
    client, fake_stripe, user, cardless, sent
):
    attached_card(fake_stripe, cardless, ALWAYS_ASKS)
    charge = new_charge(user)
    charge.charge()  # ours waits for the customer
    charge.refresh_from_db()
    before = StripeCharge.objects.filter(pk=charge.pk).values().get()
    foreign = {
        "id": "pi_made_elsewhere",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 1500,
        "customer": cardless.stripe_customer_id,  # the same customer, made by another integration
        "metadata": {"charge_uuid": "not-a-uuid", "attempt": "1"},
        "latest_charge": "ch_elsewhere",
    }
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = post_webhook(client, make_event("payment_intent.succeeded", foreign))

    assert response.status_code == 200 and response.json()["status"] == "parsed"
    assert StripeCharge.objects.filter(pk=charge.pk).values().get() == before
    assert sent["succeeded"] == 0


# --- refunds ----------------------------------------------------------------------------------------


def test_a_payment_intent_charge_is_refunded(fake_stripe, user, cardless):
    set_up_card(fake_stripe, cardless, PLAIN)
    charge = new_charge(user)
    charge.charge()
    charge.refresh_from_db()

    charge.refund(500)

    charge.refresh_from_db()
    assert charge.amount_refunded == 500 and charge.refunds.get().status == "succeeded"


def test_the_statement_descriptor_is_checked_against_the_accounts_prefix(
    fake_stripe, user, cardless, settings
):
    from aa_stripe.exceptions import StripeInvalidInput

    set_up_card(fake_stripe, cardless, PLAIN)
    settings.STRIPE_STATEMENT_DESCRIPTOR_PREFIX = "ACME SHOP"  # 9 + "* " + 12 = 23 > 22
    charge = new_charge(user, statement_descriptor="ORDER 123456")

    with pytest.raises(StripeInvalidInput) as refused:
        charge.charge()

    assert refused.value.field == "statement_descriptor" and not creations(fake_stripe)
    charge.statement_descriptor = "ORDER 12345"  # 22: fits
    charge.save()
    charge.charge()
    assert creations(fake_stripe)[0].params["statement_descriptor_suffix"] == "ORDER 12345"


def test_after_25_hours_a_lost_payment_is_found_not_made_again(fake_stripe, user, cardless, sent):
    import time_machine

    set_up_card(fake_stripe, cardless, PLAIN)
    charge = new_charge(user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/payment_intents")
    with pytest.raises(StripeInternalError):
        charge.charge()
    fake_stripe.proxy.forget_keys()  # Stripe keeps keys 24 hours

    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        charge.charge()

    charge.refresh_from_db()
    assert charge.is_charged and len(intents_at(fake_stripe)) == 1 and len(creations(fake_stripe)) == 1
    assert sent["succeeded"] == 1


def test_a_lost_decline_found_by_lookup_is_recorded_as_declined_once(fake_stripe, user, cardless, sent):
    attached_card(fake_stripe, cardless, DECLINES)
    charge = new_charge(user)
    fake_stripe.proxy.inject("status_after", method="POST", path_prefix="/v1/payment_intents", status=500)
    with pytest.raises(StripeInternalError):
        charge.charge()

    out = StringIO()
    call_command("reconcile_stripe_operations", stdout=out, stderr=out)

    charge.refresh_from_db()
    assert (charge.charge_attempt_failed, charge.status, charge.failure_code) == (
        True,
        "failed",
        "card_declined",
    )
    assert len(creations(fake_stripe)) == 1 and sent == {"succeeded": 0, "declined": 1, "requires_action": 0}


def test_an_attempt_planned_on_the_charges_api_before_the_upgrade_finishes_there(
    fake_stripe, user, customer, settings, sent
):
    settings.STRIPE_CHARGE_API = "charges"
    charge = new_charge(user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")
    with pytest.raises(StripeInternalError):
        charge.charge()
    settings.STRIPE_CHARGE_API = "payment_intents"  # the upgrade

    charge.charge()

    charge.refresh_from_db()
    assert charge.is_charged and charge.stripe_charge_id.startswith("ch_") and not creations(fake_stripe)
    assert [c.idempotency_key for c in fake_stripe.proxy.calls("POST", "/v1/charges")] == [
        f"charge:{charge.uuid}:1",
        f"charge:{charge.uuid}:1",
    ]
    assert sent["succeeded"] == 1


def _paid(fake_stripe: Any, user: Any, cardless: StripeCustomer) -> StripeCharge:
    set_up_card(fake_stripe, cardless, PLAIN)
    charge = new_charge(user, amount=1000)
    charge.charge()
    charge.refresh_from_db()
    return charge


def _deliver(client: Any, event_type: str, data: dict[str, Any], created: int) -> None:
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = post_webhook(client, make_event(event_type, data, created=created))
    assert response.status_code == 200 and response.json()["status"] == "parsed", response.content


def test_a_dashboard_refund_told_by_charge_refunded_then_refund_created_counts_once(
    client, fake_stripe, user, cardless
):
    from aa_stripe.signals import stripe_charge_refunded

    charge = _paid(fake_stripe, user, cardless)
    refunded: list[Any] = []
    stripe_charge_refunded.connect(receiver := lambda sender, **kw: refunded.append(kw), weak=False)
    now = int(timezone.now().timestamp())
    stripe_charge = {
        "id": charge.stripe_charge_id,
        "object": "charge",
        "status": "succeeded",
        "amount": 1000,
        "amount_refunded": 300,
        "refunded": False,
        "payment_intent": charge.payment_intent_id,
    }
    refund = {
        "id": "re_dashboard",
        "object": "refund",
        "amount": 300,
        "status": "succeeded",
        "charge": charge.stripe_charge_id,
        "payment_intent": charge.payment_intent_id,
        "currency": "usd",
    }
    try:
        _deliver(client, "charge.refunded", stripe_charge, now)
        _deliver(client, "refund.created", refund, now + 1)
    finally:
        stripe_charge_refunded.disconnect(receiver)

    charge.refresh_from_db()
    assert charge.amount_refunded == 300 and len(refunded) == 1
    assert list(charge.refunds.values_list("stripe_refund_id", "status")) == [("re_dashboard", "succeeded")]


def test_a_refund_that_failed_is_not_brought_back_by_an_older_charge_event(
    client, fake_stripe, user, cardless
):
    charge = _paid(fake_stripe, user, cardless)
    now = int(timezone.now().timestamp())
    refund = {
        "id": "re_later_fails",
        "object": "refund",
        "amount": 500,
        "status": "succeeded",
        "charge": charge.stripe_charge_id,
        "currency": "usd",
    }
    older_charge = {
        "id": charge.stripe_charge_id,
        "object": "charge",
        "status": "succeeded",
        "amount": 1000,
        "amount_refunded": 500,
        "refunded": False,
        "payment_intent": charge.payment_intent_id,
    }
    _deliver(client, "refund.created", refund, now)
    _deliver(
        client,
        "refund.failed",
        {**refund, "status": "failed", "failure_reason": "expired_or_canceled_card"},
        now + 5,
    )
    _deliver(client, "charge.refunded", older_charge, now + 1)  # delayed: from before the failure

    charge.refresh_from_db()
    assert (charge.amount_refunded, charge.is_refunded) == (0, False)
    assert charge.refunds.get().failure_code == "expired_or_canceled_card"
    charge.refund(1000)  # the customer is still owed it: refunding is allowed again


def test_no_client_secret_reaches_signal_receivers_or_closed_operations(fake_stripe, user, cardless):
    from aa_stripe.models import payment_intent_operations

    attached_card(fake_stripe, cardless, DECLINES)
    charge = new_charge(user)
    bodies: list[Any] = []
    stripe_charge_card_exception.connect(
        receiver := lambda sender, exception, **kw: bodies.append(exception.json_body), weak=False
    )
    try:
        charge.charge()
    finally:
        stripe_charge_card_exception.disconnect(receiver)
    charge.refresh_from_db()
    intent = fake_stripe.get(f"/v1/payment_intents/{charge.payment_intent_id}")
    secret = intent["client_secret"]

    assert bodies and secret not in str(bodies)
    # An operation closed by an event or a refresh (a queryset update, past the model's save):
    operation = StripeOperation.objects.get(kind="payment_intent")
    StripeOperation.objects.filter(pk=operation.pk).update(state=StripeOperation.UNKNOWN)
    payment_intent_operations.close_operations(charge, intent)
    operation.refresh_from_db()
    assert operation.state == StripeOperation.REFUSED and secret not in str(operation.result)


def test_charge_stripe_reports_paid_waiting_and_declined_rows(fake_stripe, user, other_user, cardless):
    set_up_card(fake_stripe, cardless, PLAIN)
    paid = new_charge(user)
    asks = StripeCustomer.get_or_create_for_user(other_user)
    attached_card(fake_stripe, asks, ALWAYS_ASKS)
    waiting = new_charge(other_user)
    out = StringIO()

    call_command("charge_stripe", "--verbosity", "2", stdout=out, stderr=out)

    paid.refresh_from_db()
    waiting.refresh_from_db()
    text = out.getvalue()
    assert f"charged {paid.stripe_charge_id}" in text
    assert "waits for the customer (requires_payment_method, authentication_required)" in text
    assert (
        "charge_stripe: 1 charged, 0 declined, 0 left for retry, 0 errors, 1 waiting for the customer" in text
    )
    assert (paid.is_charged, waiting.is_charged, waiting.charge_attempt_failed) == (True, False, False)


def test_reconcile_reads_a_waiting_charge_the_customer_paid_without_us_hearing(
    fake_stripe, user, cardless, sent
):
    """The customer paid on-session, and both the webhook and the front-end's refresh were lost."""
    attached_card(fake_stripe, cardless, ALWAYS_ASKS)
    charge = new_charge(user)
    charge.charge()
    charge.refresh_from_db()
    secret = charge.pay_on_session().client_secret_for_owner()
    _post(
        fake_stripe,
        f"/v1/payment_intents/{charge.payment_intent_id}/confirm",
        {"payment_method": charge.payment_method, "client_secret": secret},
    )
    _post(
        fake_stripe,
        f"/v1/payment_intents/{charge.payment_intent_id}/_authenticate",
        {"client_secret": secret, "success": "true"},
    )
    out = StringIO()
    call_command("reconcile_stripe_operations", stdout=out, stderr=out)
    charge.refresh_from_db()
    assert not charge.is_charged  # read at most once an hour: it changed just now

    StripeCharge.objects.filter(pk=charge.pk).update(updated=timezone.now() - timedelta(hours=2))
    call_command("reconcile_stripe_operations", stdout=out, stderr=out)

    charge.refresh_from_db()
    assert charge.is_charged and sent["succeeded"] == 1
    assert "1 charges waiting at Stripe read again, 1 found paid" in out.getvalue()


def test_a_late_failure_event_of_an_earlier_attempt_changes_nothing(
    client, fake_stripe, user, cardless, sent
):
    attached_card(fake_stripe, cardless, DECLINES)
    charge = new_charge(user)
    charge.charge()  # attempt 1 declined: recorded from the API's answer
    charge.refresh_from_db()
    first_failure = fake_stripe.get(f"/v1/payment_intents/{charge.payment_intent_id}")
    # Attempt 2 now waits for the customer (as a card asking for authentication would leave it).
    StripeCharge.objects.filter(pk=charge.pk).update(
        attempt=2, status=StripeCharge.REQUIRES_ACTION, charge_attempt_failed=False
    )

    with TestCase.captureOnCommitCallbacks(execute=True):
        post_webhook(client, make_event("payment_intent.payment_failed", first_failure))

    charge.refresh_from_db()
    assert (charge.status, charge.charge_attempt_failed) == ("requires_action", False)
    assert sent["declined"] == 1  # the API answer's, not the event's again


@pytest.mark.parametrize(
    "order",
    [
        ("requires_action", "succeeded"),
        ("succeeded", "requires_action"),
        ("payment_failed", "succeeded"),
        ("succeeded", "payment_failed"),
        ("succeeded", "succeeded"),
    ],
)
def test_intent_events_in_any_order_end_as_stripe_ended(client, fake_stripe, user, cardless, sent, order):
    """The intent asked for authentication (or was declined), then the customer paid: its events
    arrive in any order, the API answer first; the row ends paid, each signal sent once."""
    attached_card(fake_stripe, cardless, ALWAYS_ASKS)
    charge = new_charge(user)
    charge.charge()
    charge.refresh_from_db()
    waiting = fake_stripe.get(f"/v1/payment_intents/{charge.payment_intent_id}")
    now = int(timezone.now().timestamp())
    states = {
        "requires_action": (now + 1, {**waiting, "status": "requires_action", "last_payment_error": None}),
        "payment_failed": (now + 1, waiting),
        "succeeded": (
            now + 2,
            {
                **waiting,
                "status": "succeeded",
                "last_payment_error": None,
                "latest_charge": "ch_paid_on_session",
            },
        ),
    }

    for name in order:
        created, intent = states[name]
        event_type = "payment_intent.succeeded" if name == "succeeded" else f"payment_intent.{name}"
        with TestCase.captureOnCommitCallbacks(execute=True):
            response = post_webhook(client, make_event(event_type, intent, created=created))
        assert response.status_code == 200 and response.json()["status"] == "parsed", response.content

    charge.refresh_from_db()
    assert (charge.is_charged, charge.status, charge.stripe_charge_id) == (
        True,
        "succeeded",
        "ch_paid_on_session",
    )
    assert sent == {"succeeded": 1, "declined": 0, "requires_action": 1}
