"""Saving cards the modern way over GraphQL (issue 19): createStripeSetupIntent, completeStripeSetupIntent,
setDefaultStripePaymentMethod, detachStripePaymentMethod, and the StripePaymentMethod type.

Every request is GraphQL over HTTP against the fake Stripe through the real SDK. What stripe.js does in
the browser (create a PaymentMethod from the card number, confirm the SetupIntent with it, pass or fail
3-D Secure) is done here with direct calls to the fake, not through our server.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import stripe
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core import serializers
from django.test import Client
from django.urls import reverse
from graphql_relay import to_global_id

from aa_stripe.models import StripeCustomer, StripePaymentMethod, StripeSetupIntent
from tests.graphql_helpers import assert_denied, codes, gql, make_viewer, signed_in

pytestmark = pytest.mark.django_db

PLAIN = "4242424242424242"
THREE_D_SECURE = "4000002500003155"

CARD = "card { id brand last4 expMonth expYear country funding }"
PAYMENT_METHOD = f"id stripePaymentMethodId type isDefault created {CARD}"
CUSTOMER = (
    f"id stripeCustomerId isActive paymentMethods {{ {PAYMENT_METHOD} }} "
    "defaultPaymentMethod { id stripePaymentMethodId } sources { id }"
)
ERRORS = "errors { field code message declineCode } clientMutationId"

CREATE = f"""
mutation($input: CreateStripeSetupIntentInput!) {{
  createStripeSetupIntent(input: $input) {{
    setupIntent {{ stripeSetupIntentId status clientSecret }}
    customer {{ {CUSTOMER} }}
    {ERRORS}
  }}
}}
"""
COMPLETE = f"""
mutation($input: CompleteStripeSetupIntentInput!) {{
  completeStripeSetupIntent(input: $input) {{
    customer {{ {CUSTOMER} }}
    paymentMethod {{ {PAYMENT_METHOD} }}
    {ERRORS}
  }}
}}
"""
SET_DEFAULT = f"""
mutation($input: SetDefaultStripePaymentMethodInput!) {{
  setDefaultStripePaymentMethod(input: $input) {{
    customer {{ {CUSTOMER} }}
    paymentMethod {{ {PAYMENT_METHOD} }}
    {ERRORS}
  }}
}}
"""
DETACH = f"""
mutation($input: DetachStripePaymentMethodInput!) {{
  detachStripePaymentMethod(input: $input) {{
    customer {{ {CUSTOMER} }}
    {ERRORS}
  }}
}}
"""


# --- the front-end (stripe.js), done against the fake directly --------------------------------------


@pytest.fixture
def browser(fake_stripe) -> Iterator[stripe.StripeClient]:
    """What stripe.js does, straight at the fake (not through our server nor the fault proxy)."""
    http_client = stripe.RequestsClient(timeout=10)
    yield stripe.StripeClient(
        fake_stripe.api_key, base_addresses={"api": fake_stripe.direct_url}, http_client=http_client
    )
    http_client.close()


def confirm(browser: stripe.StripeClient, setup_intent_id: str, number: str) -> stripe.SetupIntent:
    """stripe.confirmCardSetup(clientSecret, {payment_method: {card}}): a PaymentMethod from the card
    number (the fake takes raw numbers), then the SetupIntent confirmed with it."""
    method = browser.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {
                "number": number,
                "exp_month": 12,
                "exp_year": datetime.date.today().year + 2,
                "cvc": "123",
            },
        }
    )
    return browser.v1.setup_intents.confirm(setup_intent_id, params={"payment_method": method.id})


def authenticate(fake_stripe, setup_intent_id: str, success: bool) -> dict[str, Any]:
    """The customer passes (or fails) 3-D Secure: the fake's test-only endpoint."""
    response = requests.post(
        f"{fake_stripe.direct_url}/v1/setup_intents/{setup_intent_id}/_authenticate",
        params={"success": "true" if success else "false"},
        headers={"Authorization": f"Bearer {fake_stripe.api_key}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


# --- the requests ---------------------------------------------------------------------------------


def create_setup_intent(client: Client, **extra: Any) -> dict[str, Any]:
    return gql(client, CREATE, {"input": {**extra}})


def complete(client: Client, setup_intent_id: str, **extra: Any) -> dict[str, Any]:
    return gql(client, COMPLETE, {"input": {"setupIntent": setup_intent_id, **extra}})


def set_default(client: Client, method: Any, **extra: Any) -> dict[str, Any]:
    return gql(client, SET_DEFAULT, {"input": {"paymentMethod": _gid(method), **extra}})


def detach(client: Client, method: Any, **extra: Any) -> dict[str, Any]:
    return gql(client, DETACH, {"input": {"paymentMethod": _gid(method), **extra}})


def _gid(method: Any) -> str:
    return method if isinstance(method, str) else to_global_id("StripePaymentMethod", method.pk)


def started(client: Client) -> dict[str, Any]:
    """createStripeSetupIntent's payload, checked for success."""
    payload = create_setup_intent(client)["data"]["createStripeSetupIntent"]
    assert payload["errors"] == [], payload
    return payload


def save_card(client: Client, browser: stripe.StripeClient, number: str = PLAIN) -> dict[str, Any]:
    """The whole flow for a card that needs no authentication: completeStripeSetupIntent's payload."""
    intent = started(client)["setupIntent"]
    assert confirm(browser, intent["stripeSetupIntentId"], number).status == "succeeded"
    payload = complete(client, intent["stripeSetupIntentId"])["data"]["completeStripeSetupIntent"]
    assert payload["errors"] == [], payload
    return payload


def stripe_customer(browser: stripe.StripeClient, customer_id: str) -> stripe.Customer:
    return browser.v1.customers.retrieve(customer_id)


# --- 1. a plain card ------------------------------------------------------------------------------


def test_a_plain_card_is_saved_and_becomes_the_default(fake_stripe, browser, user):
    client = signed_in(user)

    first = create_setup_intent(client, clientMutationId="si-1")["data"]["createStripeSetupIntent"]

    assert first["errors"] == [] and first["clientMutationId"] == "si-1"
    customer = StripeCustomer.objects.get()
    assert (customer.user, customer.is_created_at_stripe, customer.stripe_js_response) == (user, True, {})
    [sent] = fake_stripe.proxy.calls("POST", "/v1/customers")
    assert "source" not in sent.params  # created without a token
    intent = first["setupIntent"]
    assert intent["status"] == "requires_payment_method"
    assert intent["stripeSetupIntentId"].startswith("seti_")
    assert intent["clientSecret"].startswith(f"{intent['stripeSetupIntentId']}_secret")
    assert first["customer"]["stripeCustomerId"] == customer.stripe_customer_id
    assert first["customer"]["paymentMethods"] == [] and first["customer"]["defaultPaymentMethod"] is None

    assert confirm(browser, intent["stripeSetupIntentId"], PLAIN).status == "succeeded"
    payload = complete(client, intent["stripeSetupIntentId"])["data"]["completeStripeSetupIntent"]

    assert payload["errors"] == []
    row = StripePaymentMethod.objects.get()
    method = payload["paymentMethod"]
    assert method["id"] == to_global_id("StripePaymentMethod", row.pk)
    assert (method["stripePaymentMethodId"], method["type"], method["isDefault"]) == (
        row.stripe_payment_method_id,
        "card",
        True,
    )
    assert method["card"] == {
        "id": row.stripe_payment_method_id,
        "brand": "visa",
        "last4": "4242",
        "expMonth": 12,
        "expYear": datetime.date.today().year + 2,
        "country": row.card_country or None,
        "funding": row.card_funding,
    }
    assert payload["customer"]["defaultPaymentMethod"] == {
        "id": method["id"],
        "stripePaymentMethodId": row.stripe_payment_method_id,
    }
    assert payload["customer"]["paymentMethods"] == [method]
    customer.refresh_from_db()
    assert customer.default_payment_method == row.stripe_payment_method_id
    at_stripe = stripe_customer(browser, customer.stripe_customer_id)
    assert at_stripe.invoice_settings.default_payment_method == row.stripe_payment_method_id
    assert StripeSetupIntent.objects.get().status == "succeeded"

    second = started(client)

    assert second["customer"]["id"] == first["customer"]["id"]
    assert second["setupIntent"]["stripeSetupIntentId"] != intent["stripeSetupIntentId"]
    assert StripeCustomer.objects.count() == 1
    assert len(fake_stripe.get("/v1/customers")["data"]) == 1


def test_a_second_card_is_not_the_default(fake_stripe, browser, user):
    client = signed_in(user)
    first = save_card(client, browser)

    second = save_card(client, browser, "5555555555554444")

    assert second["paymentMethod"]["isDefault"] is False
    assert second["paymentMethod"]["card"]["brand"] == "mastercard"
    assert second["customer"]["defaultPaymentMethod"]["id"] == first["paymentMethod"]["id"]
    assert [m["isDefault"] for m in second["customer"]["paymentMethods"]] == [True, False]


def test_completing_twice_saves_the_method_once(fake_stripe, browser, user):
    client = signed_in(user)
    saved = save_card(client, browser)
    [intent] = StripeSetupIntent.objects.all()

    again = complete(client, intent.stripe_setup_intent_id)["data"]["completeStripeSetupIntent"]

    assert again["errors"] == [] and again["paymentMethod"] == saved["paymentMethod"]
    assert StripePaymentMethod.objects.count() == 1


# --- 2. and 3. 3-D Secure -------------------------------------------------------------------------


def test_a_3d_secure_card_is_saved_once_authenticated(fake_stripe, browser, user):
    client = signed_in(user)
    intent_id = started(client)["setupIntent"]["stripeSetupIntentId"]
    assert confirm(browser, intent_id, THREE_D_SECURE).status == "requires_action"

    waiting = complete(client, intent_id)["data"]["completeStripeSetupIntent"]

    assert codes(waiting) == [("setupIntent", "INVALID")]
    assert "requires_action" in waiting["errors"][0]["message"]
    assert waiting["customer"] is None and waiting["paymentMethod"] is None
    assert not StripePaymentMethod.objects.exists()
    assert StripeCustomer.objects.get().default_payment_method == ""

    assert authenticate(fake_stripe, intent_id, success=True)["status"] == "succeeded"
    payload = complete(client, intent_id)["data"]["completeStripeSetupIntent"]

    assert payload["errors"] == []
    assert payload["paymentMethod"]["card"]["last4"] == "3155" and payload["paymentMethod"]["isDefault"]
    assert payload["customer"]["defaultPaymentMethod"]["id"] == payload["paymentMethod"]["id"]
    assert (
        StripePaymentMethod.objects.get().stripe_payment_method_id
        == (payload["paymentMethod"]["stripePaymentMethodId"])
    )


def test_a_failed_3d_secure_saves_nothing(fake_stripe, browser, user):
    client = signed_in(user)
    intent_id = started(client)["setupIntent"]["stripeSetupIntentId"]
    assert confirm(browser, intent_id, THREE_D_SECURE).status == "requires_action"
    assert authenticate(fake_stripe, intent_id, success=False)["status"] == "requires_payment_method"

    payload = complete(client, intent_id)["data"]["completeStripeSetupIntent"]

    assert codes(payload) == [("setupIntent", "INVALID")]
    assert "requires_payment_method" in payload["errors"][0]["message"]
    assert payload["customer"] is None and payload["paymentMethod"] is None
    assert not StripePaymentMethod.objects.exists()
    customer = StripeCustomer.objects.get()
    assert customer.default_payment_method == ""
    assert StripeSetupIntent.objects.get().failure_code == "setup_intent_authentication_failure"
    assert browser.v1.customers.payment_methods.list(customer.stripe_customer_id).data == []


# --- 4. the default -------------------------------------------------------------------------------


def test_the_default_switches_between_two_saved_cards(fake_stripe, browser, user):
    client = signed_in(user)
    save_card(client, browser)
    save_card(client, browser, "5555555555554444")
    first, second = StripePaymentMethod.objects.order_by("pk")
    customer = StripeCustomer.objects.get()

    for chosen, other in ((second, first), (first, second)):
        payload = set_default(client, chosen)["data"]["setDefaultStripePaymentMethod"]

        assert payload["errors"] == []
        assert payload["paymentMethod"]["id"] == _gid(chosen) and payload["paymentMethod"]["isDefault"]
        assert payload["customer"]["defaultPaymentMethod"]["id"] == _gid(chosen)
        assert {m["id"]: m["isDefault"] for m in payload["customer"]["paymentMethods"]} == {
            _gid(chosen): True,
            _gid(other): False,
        }
        customer.refresh_from_db()
        assert customer.default_payment_method == chosen.stripe_payment_method_id
        at_stripe = stripe_customer(browser, customer.stripe_customer_id)
        assert at_stripe.invoice_settings.default_payment_method == chosen.stripe_payment_method_id


# --- 5. detaching ---------------------------------------------------------------------------------


def test_detaching_removes_the_method_here_and_at_stripe(fake_stripe, browser, user):
    client = signed_in(user)
    default = save_card(client, browser)["paymentMethod"]
    other = save_card(client, browser, "5555555555554444")["paymentMethod"]

    payload = detach(client, other["id"])["data"]["detachStripePaymentMethod"]

    assert payload["errors"] == []
    assert [m["id"] for m in payload["customer"]["paymentMethods"]] == [default["id"]]
    assert payload["customer"]["defaultPaymentMethod"]["id"] == default["id"]
    assert not StripePaymentMethod.objects.filter(stripe_payment_method_id=other["stripePaymentMethodId"])
    assert browser.v1.payment_methods.retrieve(other["stripePaymentMethodId"]).customer is None

    payload = detach(client, default["id"])["data"]["detachStripePaymentMethod"]

    assert payload["errors"] == []
    assert payload["customer"]["paymentMethods"] == [] and payload["customer"]["defaultPaymentMethod"] is None
    assert not StripePaymentMethod.objects.exists()
    assert StripeCustomer.objects.get().default_payment_method == ""
    assert browser.v1.payment_methods.retrieve(default["stripePaymentMethodId"]).customer is None


# --- 6. bad input ---------------------------------------------------------------------------------


def rows() -> dict[str, list[dict[str, Any]]]:
    """The rows that must not change, as plain values."""
    return {
        model.__name__: list(model.objects.order_by("pk").values())
        for model in (StripeCustomer, StripePaymentMethod, StripeSetupIntent)
    }


def test_another_users_payment_method_is_not_found(fake_stripe, browser, user, other_user):
    save_card(signed_in(other_user), browser)
    theirs = StripePaymentMethod.objects.get()
    mine = signed_in(user)
    before = rows()
    fake_stripe.proxy.reset()

    for payload in (
        set_default(mine, theirs)["data"]["setDefaultStripePaymentMethod"],
        detach(mine, theirs)["data"]["detachStripePaymentMethod"],
    ):
        assert codes(payload) == [("paymentMethod", "NOT_FOUND")]
        assert payload["customer"] is None

    assert rows() == before and fake_stripe.proxy.calls() == []


@pytest.mark.parametrize(
    "unknown",
    ["nonsense", to_global_id("StripePaymentMethod", 999), to_global_id("StripeCustomer", 1)],
    ids=["garbage", "unknown-pk", "another-type"],
)
def test_an_unknown_payment_method_is_not_found(fake_stripe, user, unknown):
    client = signed_in(user)

    assert codes(set_default(client, unknown)["data"]["setDefaultStripePaymentMethod"]) == [
        ("paymentMethod", "NOT_FOUND")
    ]
    assert codes(detach(client, unknown)["data"]["detachStripePaymentMethod"]) == [
        ("paymentMethod", "NOT_FOUND")
    ]
    assert fake_stripe.proxy.calls() == []


def test_staff_who_see_others_payment_methods_do_not_act_on_them(fake_stripe, browser, user):
    save_card(signed_in(user), browser)
    theirs = StripePaymentMethod.objects.get()
    viewer = signed_in(make_viewer("carol"))
    fake_stripe.proxy.reset()

    assert codes(set_default(viewer, theirs)["data"]["setDefaultStripePaymentMethod"]) == [
        ("paymentMethod", "NOT_FOUND")
    ]
    assert codes(detach(viewer, theirs)["data"]["detachStripePaymentMethod"]) == [
        ("paymentMethod", "NOT_FOUND")
    ]
    assert StripePaymentMethod.objects.filter(pk=theirs.pk).exists() and fake_stripe.proxy.calls() == []


def test_another_users_setup_intent_is_not_found(fake_stripe, browser, user, other_user):
    theirs = started(signed_in(other_user))["setupIntent"]["stripeSetupIntentId"]
    assert confirm(browser, theirs, PLAIN).status == "succeeded"
    mine = signed_in(user)
    before = rows()

    for setup_intent in (theirs, "seti_unknown", ""):
        payload = complete(mine, setup_intent)["data"]["completeStripeSetupIntent"]
        assert codes(payload) == [("setupIntent", "NOT_FOUND")]
        assert payload["customer"] is None and payload["paymentMethod"] is None

    assert rows() == before and not StripePaymentMethod.objects.exists()


def test_an_expired_card_cannot_be_the_default(fake_stripe, browser, user):
    client = signed_in(user)
    save_card(client, browser)
    save_card(client, browser, "5555555555554444")
    default, expired = StripePaymentMethod.objects.order_by("pk")
    StripePaymentMethod.objects.filter(pk=expired.pk).update(card_exp_year=2020, card_exp_month=1)
    before = rows()
    fake_stripe.proxy.reset()

    payload = set_default(client, expired)["data"]["setDefaultStripePaymentMethod"]

    assert codes(payload) == [("paymentMethod", "INVALID")]
    assert "expired" in payload["errors"][0]["message"]
    assert rows() == before and fake_stripe.proxy.calls() == []
    customer = StripeCustomer.objects.get()
    assert customer.default_payment_method == default.stripe_payment_method_id


def test_a_method_detached_behind_our_back_cannot_be_the_default_and_goes(fake_stripe, browser, user):
    client = signed_in(user)
    save_card(client, browser)
    save_card(client, browser, "5555555555554444")
    default, gone = StripePaymentMethod.objects.order_by("pk")
    browser.v1.payment_methods.detach(gone.stripe_payment_method_id)

    payload = set_default(client, gone)["data"]["setDefaultStripePaymentMethod"]

    assert codes(payload) == [("paymentMethod", "INVALID")]
    assert payload["customer"] is None and payload["paymentMethod"] is None
    assert not StripePaymentMethod.objects.filter(pk=gone.pk).exists()
    customer = StripeCustomer.objects.get()
    assert customer.default_payment_method == default.stripe_payment_method_id
    at_stripe = stripe_customer(browser, customer.stripe_customer_id)
    assert at_stripe.invoice_settings.default_payment_method == default.stripe_payment_method_id


def test_every_mutation_needs_a_signed_in_user(fake_stripe, browser, user):
    save_card(signed_in(user), browser)
    method = StripePaymentMethod.objects.get()
    intent = StripeSetupIntent.objects.get()
    before = rows()
    fake_stripe.proxy.reset()
    anonymous = Client()

    assert_denied(create_setup_intent(anonymous), "createStripeSetupIntent")
    assert_denied(create_setup_intent(anonymous, idempotencyKey="k-1"), "createStripeSetupIntent")
    assert_denied(complete(anonymous, intent.stripe_setup_intent_id), "completeStripeSetupIntent")
    assert_denied(set_default(anonymous, method), "setDefaultStripePaymentMethod")
    assert_denied(set_default(anonymous, "nonsense"), "setDefaultStripePaymentMethod")
    assert_denied(detach(anonymous, method), "detachStripePaymentMethod")

    assert rows() == before and fake_stripe.proxy.calls() == []


# --- 7. idempotencyKey ----------------------------------------------------------------------------


def test_the_same_idempotency_key_returns_the_same_setup_intent(fake_stripe, browser, user):
    client = signed_in(user)

    first = create_setup_intent(client, idempotencyKey="save-card-1")["data"]["createStripeSetupIntent"]
    again = create_setup_intent(client, idempotencyKey="save-card-1")["data"]["createStripeSetupIntent"]

    assert first["errors"] == [] and again == first
    assert again["setupIntent"]["clientSecret"]  # read from Stripe again: it is not stored
    customer = StripeCustomer.objects.get()
    at_stripe = browser.v1.setup_intents.list(params={"customer": customer.stripe_customer_id}).data
    assert [intent.id for intent in at_stripe] == [first["setupIntent"]["stripeSetupIntentId"]]
    assert StripeSetupIntent.objects.count() == 1

    other = create_setup_intent(client, idempotencyKey="save-card-2")["data"]["createStripeSetupIntent"]

    assert other["setupIntent"]["stripeSetupIntentId"] != first["setupIntent"]["stripeSetupIntentId"]
    assert other["customer"]["id"] == first["customer"]["id"]


def test_the_same_idempotency_key_completes_and_detaches_once(fake_stripe, browser, user):
    client = signed_in(user)
    intent_id = started(client)["setupIntent"]["stripeSetupIntentId"]
    confirm(browser, intent_id, PLAIN)

    first = complete(client, intent_id, idempotencyKey="done-1")["data"]["completeStripeSetupIntent"]
    again = complete(client, intent_id, idempotencyKey="done-1")["data"]["completeStripeSetupIntent"]
    reused = complete(client, "seti_other", idempotencyKey="done-1")["data"]["completeStripeSetupIntent"]

    assert first["errors"] == [] and again == first
    assert codes(reused) == [("idempotencyKey", "IDEMPOTENCY_KEY_REUSED")]
    method = StripePaymentMethod.objects.get()
    fake_stripe.proxy.reset()

    gone = detach(client, method, idempotencyKey="gone-1")["data"]["detachStripePaymentMethod"]
    gone_again = detach(client, method, idempotencyKey="gone-1")["data"]["detachStripePaymentMethod"]

    assert gone["errors"] == [] and gone_again == gone
    assert gone["customer"]["paymentMethods"] == []
    assert fake_stripe.proxy.calls("POST", f"/v1/payment_methods/{method.stripe_payment_method_id}/detach")
    assert len(fake_stripe.proxy.calls("POST")) == 1


# --- 8. the client secret is never stored ---------------------------------------------------------


def test_the_client_secret_is_stored_nowhere(fake_stripe, browser, user):
    client = signed_in(user)
    plain = create_setup_intent(client)["data"]["createStripeSetupIntent"]["setupIntent"]
    keyed = create_setup_intent(client, idempotencyKey="k")["data"]["createStripeSetupIntent"]["setupIntent"]
    secure = started(client)["setupIntent"]
    confirm(browser, plain["stripeSetupIntentId"], PLAIN)
    complete(client, plain["stripeSetupIntentId"])
    confirm(browser, secure["stripeSetupIntentId"], THREE_D_SECURE)
    complete(client, secure["stripeSetupIntentId"])  # requires_action: INVALID, its error body kept
    secrets = [intent["clientSecret"] for intent in (plain, keyed, secure)]
    assert all(secrets)

    dumped = {
        model._meta.label: serializers.serialize("json", model._base_manager.all())
        for model in apps.get_models()
        if model._meta.managed  # django-rq's dashboard model has no table
    }

    for secret in secrets:
        assert [label for label, text in dumped.items() if secret in text] == []
        assert [label for label, text in dumped.items() if "_secret_" in text] == []

    if admin.site.is_registered(StripeSetupIntent):
        superuser = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
        for intent in StripeSetupIntent.objects.all():
            page = signed_in(superuser).get(
                reverse("admin:aa_stripe_stripesetupintent_change", args=[intent.pk])
            )
            assert page.status_code == 200
            assert not any(secret in page.content.decode() for secret in secrets)


# --- reading payment methods ----------------------------------------------------------------------


def test_payment_methods_are_seen_by_their_owner_and_staff_only(fake_stripe, browser, user, other_user):
    save_card(signed_in(user), browser)
    method = StripePaymentMethod.objects.get()
    query = (
        "query($id: ID!) { node(id: $id) { __typename ... on StripePaymentMethod { "
        f"{PAYMENT_METHOD} }} }} }}"
    )

    owner = gql(signed_in(user), query, {"id": _gid(method)})
    other = gql(signed_in(other_user), query, {"id": _gid(method)})
    viewer = gql(signed_in(make_viewer("carol")), query, {"id": _gid(method)})
    anonymous = gql(Client(), query, {"id": _gid(method)})

    assert owner["data"]["node"]["stripePaymentMethodId"] == method.stripe_payment_method_id
    assert owner["data"]["node"]["isDefault"] is True
    assert other == {"data": {"node": None}}
    assert viewer["data"]["node"] == owner["data"]["node"]
    assert_denied(anonymous, "node")
    listed = gql(signed_in(user), f"{{ stripeCustomers {{ edges {{ node {{ {CUSTOMER} }} }} }} }}")
    [edge] = listed["data"]["stripeCustomers"]["edges"]
    assert [m["id"] for m in edge["node"]["paymentMethods"]] == [_gid(method)]
    assert gql(signed_in(other_user), "{ stripeCustomers { totalCount } }")["data"] == {
        "stripeCustomers": {"totalCount": 0}
    }
    assert "stripe_response" not in json.dumps(owner) and "fingerprint" not in json.dumps(owner)


def test_a_legacy_default_source_is_no_default_payment_method(fake_stripe, browser, customer, user):
    """A customer made from a token keeps its card in sources; defaultPaymentMethod stays null."""
    body = gql(signed_in(user), f"{{ stripeCustomers {{ edges {{ node {{ {CUSTOMER} }} }} }} }}")

    [edge] = body["data"]["stripeCustomers"]["edges"]
    assert edge["node"]["defaultPaymentMethod"] is None
    assert [s["id"] for s in edge["node"]["sources"]] == [customer.default_source]
