"""Saved payment methods and SetupIntents through the model API, against the fake Stripe.

What stripe.js does in a browser (create a PaymentMethod from card details, confirm the SetupIntent
with its client secret, pass or fail 3-D Secure) is done here with plain requests to the fake, the
way the front-end's requests would reach Stripe. The fault proxy plays lost answers.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
import requests
from django.core.management import call_command

from aa_stripe.exceptions import (
    StripeInternalError,
    StripeInvalidRequestError,
    StripeMethodNotAllowed,
    StripePaymentMethodExpired,
    StripeSetupIntentNotSucceeded,
)
from aa_stripe.models import (
    StripeCustomer,
    StripeOperation,
    StripePaymentMethod,
    StripeSetupIntent,
    StripeTombstone,
)

pytestmark = pytest.mark.django_db

PLAIN = "4242424242424242"
THREE_D_SECURE = "4000002500003155"  # asks on setup, then pays off-session without asking


# --- what stripe.js does -------------------------------------------------------------------------


def _post(fake_stripe: Any, path: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    response = requests.post(
        f"{fake_stripe.direct_url}{path}",
        data=data or {},
        headers={"Authorization": f"Bearer {fake_stripe.api_key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def card_payment_method(fake_stripe: Any, number: str = PLAIN) -> str:
    made = _post(
        fake_stripe,
        "/v1/payment_methods",
        {
            "type": "card",
            "card[number]": number,
            "card[exp_month]": "12",
            "card[exp_year]": "2030",
            "card[cvc]": "123",
        },
    )
    return made["id"]


def confirm_setup(fake_stripe: Any, intent: StripeSetupIntent, number: str = PLAIN) -> dict[str, Any]:
    """stripe.confirmCardSetup(clientSecret, {payment_method: {card}})"""
    method = card_payment_method(fake_stripe, number)
    return _post(
        fake_stripe,
        f"/v1/setup_intents/{intent.stripe_setup_intent_id}/confirm",
        {"payment_method": method, "client_secret": intent.client_secret_for_owner()},
    )


def authenticate(fake_stripe: Any, intent: StripeSetupIntent, success: bool) -> dict[str, Any]:
    """The customer passing or failing 3-D Secure in stripe.js's dialog."""
    path = f"/v1/setup_intents/{intent.stripe_setup_intent_id}/_authenticate?success={str(success).lower()}"
    return _post(fake_stripe, path)


def saved_card(fake_stripe: Any, customer: StripeCustomer, number: str = PLAIN) -> StripePaymentMethod:
    intent = StripeSetupIntent.create_for_customer(customer)
    confirm_setup(fake_stripe, intent, number)
    return intent.complete()


@pytest.fixture
def cardless(fake_stripe: Any, user: Any) -> StripeCustomer:
    return StripeCustomer.get_or_create_for_user(user)


# --- customers without tokens --------------------------------------------------------------------


def test_a_user_without_a_customer_gets_one_without_a_card_and_keeps_it(fake_stripe, user):
    customer = StripeCustomer.get_or_create_for_user(user)

    assert customer.is_created_at_stripe and customer.stripe_customer_id.startswith("cus_")
    assert (customer.sources, customer.default_payment_method_id) == ([], "")
    assert StripeCustomer.get_or_create_for_user(user) == customer
    [made] = [
        call for call in fake_stripe.proxy.calls("POST", "/v1/customers") if call.path == "/v1/customers"
    ]
    assert "source" not in made.params


def test_a_lost_creation_is_finished_by_asking_again_not_made_twice(fake_stripe, user):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/customers")
    with pytest.raises(StripeInternalError):
        StripeCustomer.get_or_create_for_user(user)

    customer = StripeCustomer.get_or_create_for_user(user)

    [at_stripe] = fake_stripe.get("/v1/customers")["data"]
    assert customer.stripe_customer_id == at_stripe["id"]
    assert StripeCustomer.objects.filter(user=user).count() == 1


def test_a_user_with_a_token_customer_keeps_it(fake_stripe, user, customer):
    assert StripeCustomer.get_or_create_for_user(user) == customer
    assert len(fake_stripe.proxy.calls("POST", "/v1/customers")) == 1


# --- SetupIntents --------------------------------------------------------------------------------


def test_a_plain_card_is_saved_and_becomes_the_default(fake_stripe, cardless):
    intent = StripeSetupIntent.create_for_customer(cardless)
    assert intent.status == StripeSetupIntent.REQUIRES_PAYMENT_METHOD
    assert intent.client_secret_for_owner().startswith(f"{intent.stripe_setup_intent_id}_secret_")
    [sent] = fake_stripe.proxy.calls("POST", "/v1/setup_intents")
    assert sent.params["usage"] == "off_session" and sent.params["customer"] == cardless.stripe_customer_id

    confirm_setup(fake_stripe, intent)
    method = intent.complete()

    assert (method.type, method.card_brand, method.card_last4) == ("card", "visa", "4242")
    assert (method.card_exp_month, method.card_exp_year) == (12, 2030)
    assert method.is_default
    cardless.refresh_from_db()
    assert cardless.default_payment_method == method.stripe_payment_method_id
    at_stripe = fake_stripe.get(f"/v1/customers/{cardless.stripe_customer_id}")
    assert at_stripe["invoice_settings"]["default_payment_method"] == method.stripe_payment_method_id
    intent.refresh_from_db()
    assert (intent.status, intent.payment_method) == ("succeeded", method.stripe_payment_method_id)


def test_a_second_card_is_saved_without_taking_the_default(fake_stripe, cardless):
    first = saved_card(fake_stripe, cardless)
    second = saved_card(fake_stripe, cardless, "5555555555554444")

    first.refresh_from_db()
    assert first.is_default and not second.is_default
    assert second.card_brand == "mastercard"


def test_a_3ds_card_is_saved_only_after_the_customer_passes(fake_stripe, cardless):
    intent = StripeSetupIntent.create_for_customer(cardless)
    confirm_setup(fake_stripe, intent, THREE_D_SECURE)

    with pytest.raises(StripeSetupIntentNotSucceeded) as waiting:
        intent.complete()
    assert waiting.value.status == "requires_action"
    assert not StripePaymentMethod.objects.exists()
    assert intent.client_secret_for_owner()  # stripe.js still needs it

    authenticate(fake_stripe, intent, success=True)
    method = intent.complete()

    assert method.card_last4 == "3155" and method.is_default
    assert intent.client_secret_for_owner() is None  # nothing left to do for the customer


def test_a_3ds_card_that_fails_authentication_is_not_saved(fake_stripe, cardless):
    intent = StripeSetupIntent.create_for_customer(cardless)
    confirm_setup(fake_stripe, intent, THREE_D_SECURE)
    authenticate(fake_stripe, intent, success=False)

    with pytest.raises(StripeSetupIntentNotSucceeded) as failed:
        intent.complete()

    assert failed.value.status == "requires_payment_method"
    intent.refresh_from_db()
    assert intent.failure_code == "setup_intent_authentication_failure"
    assert not StripePaymentMethod.objects.exists()
    cardless.refresh_from_db()
    assert cardless.default_payment_method == ""


def test_a_lost_setup_intent_creation_is_finished_not_made_twice(fake_stripe, cardless):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/setup_intents")
    with pytest.raises(StripeInternalError):
        StripeSetupIntent.create_for_customer(cardless)

    intent = StripeSetupIntent.create_for_customer(cardless)

    [at_stripe] = fake_stripe.get("/v1/setup_intents")["data"]
    assert intent.stripe_setup_intent_id == at_stripe["id"]
    assert intent.client_secret_for_owner() == at_stripe["client_secret"]
    assert StripeSetupIntent.objects.count() == 1


def test_a_setup_intent_behind_a_stored_5xx_is_found_by_reconcile(fake_stripe, cardless):
    """Stripe made the SetupIntent, then stored a 500 for the key: it is looked up, not made again."""
    fake_stripe.proxy.inject("status_after", method="POST", path_prefix="/v1/setup_intents", status=500)
    with pytest.raises(StripeInternalError):
        StripeSetupIntent.create_for_customer(cardless)

    out = StringIO()
    call_command("reconcile_stripe_operations", stdout=out, stderr=out)

    [at_stripe] = fake_stripe.get("/v1/setup_intents")["data"]
    intent = StripeSetupIntent.objects.get()
    assert intent.stripe_setup_intent_id == at_stripe["id"]
    assert len(fake_stripe.proxy.calls("POST", "/v1/setup_intents")) == 1
    [lookup] = fake_stripe.proxy.calls("GET", "/v1/setup_intents")
    assert lookup.query["customer"] == cardless.stripe_customer_id


def test_the_client_secret_is_stored_nowhere(fake_stripe, cardless):
    intent = StripeSetupIntent.create_for_customer(cardless)
    secret = intent.client_secret_for_owner()
    confirm_setup(fake_stripe, intent)
    intent.complete()

    operation = StripeOperation.objects.get(kind="setup_intent.create")
    assert secret not in str(operation.result)
    intent.refresh_from_db()
    assert secret not in str(intent.stripe_response)
    assert StripeSetupIntent.objects.get(pk=intent.pk).client_secret_for_owner() is None


# --- default and detaching -----------------------------------------------------------------------


def test_the_default_is_switched_at_stripe(fake_stripe, cardless):
    first = saved_card(fake_stripe, cardless)
    second = saved_card(fake_stripe, cardless, "5555555555554444")

    customer = second.set_as_default()

    assert customer.default_payment_method == second.stripe_payment_method_id
    first.refresh_from_db()
    assert not first.is_default
    at_stripe = fake_stripe.get(f"/v1/customers/{cardless.stripe_customer_id}")
    assert at_stripe["invoice_settings"]["default_payment_method"] == second.stripe_payment_method_id


def test_an_expired_card_is_not_made_the_default(fake_stripe, cardless):
    first = saved_card(fake_stripe, cardless)
    second = saved_card(fake_stripe, cardless)
    StripePaymentMethod.objects.filter(pk=second.pk).update(card_exp_year=2020)
    second.refresh_from_db()
    posts = len(fake_stripe.proxy.calls("POST"))

    with pytest.raises(StripePaymentMethodExpired, match="expired"):
        second.set_as_default()

    assert len(fake_stripe.proxy.calls("POST")) == posts
    first.refresh_from_db()
    assert first.is_default


def test_detaching_removes_the_row_and_the_default(fake_stripe, cardless):
    method = saved_card(fake_stripe, cardless)

    customer = method.detach()

    assert customer.default_payment_method == ""
    assert not StripePaymentMethod.objects.exists()
    assert fake_stripe.get(f"/v1/payment_methods/{method.stripe_payment_method_id}")["customer"] is None
    [sent] = fake_stripe.proxy.calls("POST", "/v1/payment_methods/")
    assert (
        sent.params == {}
        and sent.idempotency_key == f"payment_method:detach:{method.stripe_payment_method_id}"
    )


def test_a_lost_detach_is_found_detached_by_reconcile(fake_stripe, cardless):
    method = saved_card(fake_stripe, cardless)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/payment_methods/")
    with pytest.raises(StripeInternalError):
        method.detach()
    assert StripePaymentMethod.objects.filter(pk=method.pk).exists()

    out = StringIO()
    call_command("reconcile_stripe_operations", stdout=out, stderr=out)

    assert not StripePaymentMethod.objects.exists()
    assert StripeOperation.objects.get(kind="payment_method.detach").state == StripeOperation.SUCCEEDED


def test_a_method_detached_behind_our_back_is_not_made_the_default_and_its_row_goes(fake_stripe, cardless):
    first = saved_card(fake_stripe, cardless)
    second = saved_card(fake_stripe, cardless)
    _post(fake_stripe, f"/v1/payment_methods/{second.stripe_payment_method_id}/detach")

    with pytest.raises(StripeInvalidRequestError) as refused:
        second.set_as_default()

    assert refused.value.kind == "not_found"  # resource_missing on invoice_settings[default_payment_method]
    assert list(StripePaymentMethod.objects.all()) == [first]
    first.refresh_from_db()
    assert first.is_default


def test_detaching_a_method_already_detached_at_stripe_just_removes_the_row(fake_stripe, cardless):
    method = saved_card(fake_stripe, cardless)
    _post(fake_stripe, f"/v1/payment_methods/{method.stripe_payment_method_id}/detach")

    method.detach()

    assert not StripePaymentMethod.objects.exists()


# --- refreshing ----------------------------------------------------------------------------------


def test_refresh_mirrors_methods_attached_and_detached_elsewhere(fake_stripe, cardless):
    kept = saved_card(fake_stripe, cardless)
    gone = saved_card(fake_stripe, cardless)
    _post(fake_stripe, f"/v1/payment_methods/{gone.stripe_payment_method_id}/detach")
    elsewhere = card_payment_method(fake_stripe, "5555555555554444")
    _post(fake_stripe, f"/v1/payment_methods/{elsewhere}/attach", {"customer": cardless.stripe_customer_id})
    StripePaymentMethod.objects.update(updated="2000-01-01T00:00:00Z")

    cardless.refresh_from_stripe()

    ids = set(StripePaymentMethod.objects.values_list("stripe_payment_method_id", flat=True))
    assert ids == {kept.stripe_payment_method_id, elsewhere}


def test_refresh_customers_with_payment_methods(fake_stripe, cardless):
    method = saved_card(fake_stripe, cardless)
    StripePaymentMethod.objects.all().delete()
    out = StringIO()

    call_command("refresh_customers", "--payment-methods", stdout=out)

    assert "payment methods of 1 customers refreshed" in out.getvalue()
    assert StripePaymentMethod.objects.get().stripe_payment_method_id == method.stripe_payment_method_id


# --- what the review found ------------------------------------------------------------------------


def test_a_declined_card_is_not_saved_and_the_setup_intent_takes_another(fake_stripe, cardless):
    intent = StripeSetupIntent.create_for_customer(cardless)
    declined = requests.post(
        f"{fake_stripe.direct_url}/v1/setup_intents/{intent.stripe_setup_intent_id}/confirm",
        data={"payment_method": card_payment_method(fake_stripe, "4000000000000002")},
        headers={"Authorization": f"Bearer {fake_stripe.api_key}"},
        timeout=10,
    )
    assert declined.status_code == 402 and declined.json()["error"]["code"] == "card_declined"

    with pytest.raises(StripeSetupIntentNotSucceeded) as failed:
        intent.complete()

    assert failed.value.status == "requires_payment_method"
    intent.refresh_from_db()
    assert intent.failure_code == "generic_decline"
    assert not StripePaymentMethod.objects.exists()
    confirm_setup(fake_stripe, intent)  # the same SetupIntent, another card
    assert intent.complete().card_last4 == "4242"


def test_a_detached_method_is_not_brought_back_by_an_older_list(fake_stripe, cardless):
    method = saved_card(fake_stripe, cardless)
    listed_before = fake_stripe.get("/v1/payment_methods", customer=cardless.stripe_customer_id)["data"]
    method.detach()

    assert StripePaymentMethod.mirror(cardless, listed_before[0]) is None

    assert not StripePaymentMethod.objects.exists()
    assert StripeTombstone.objects.filter(stripe_id=method.stripe_payment_method_id).exists()


def test_legacy_cards_stay_sources_not_payment_methods(fake_stripe, customer):
    """Stripe lists a customer's legacy cards among its payment methods too (``card_...`` ids)."""
    card = customer.sources[0]

    assert StripePaymentMethod.mirror(customer, {**card, "customer": customer.stripe_customer_id}) is None
    customer.refresh_from_stripe()

    assert not StripePaymentMethod.objects.exists()
    assert customer.default_payment_method_id == card["id"]  # the legacy default still counts


def test_a_customer_deleted_at_stripe_is_replaced_on_the_next_request(fake_stripe, user, cardless):
    _delete = requests.delete(
        f"{fake_stripe.direct_url}/v1/customers/{cardless.stripe_customer_id}",
        headers={"Authorization": f"Bearer {fake_stripe.api_key}"},
        timeout=10,
    )
    assert _delete.status_code == 200

    with pytest.raises(StripeInvalidRequestError):
        StripeSetupIntent.create_for_customer(cardless)

    cardless.refresh_from_db()
    assert not cardless.is_active and not StripeSetupIntent.objects.exists()
    fresh = StripeCustomer.get_or_create_for_user(user)
    assert fresh.pk != cardless.pk and fresh.stripe_customer_id != cardless.stripe_customer_id


def test_a_stripe_js_error_is_not_taken_for_a_customer_without_a_card(fake_stripe, user):
    failed_tokenization = StripeCustomer(
        user=user, stripe_js_response={"error": {"message": "Your card number is incorrect."}}
    )

    with pytest.raises(StripeMethodNotAllowed, match="token"):
        failed_tokenization.create_at_stripe()

    assert fake_stripe.proxy.calls("POST", "/v1/customers") == []
