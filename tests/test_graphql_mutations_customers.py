"""GraphQL customer mutations over HTTP against the fake Stripe: createStripeCustomer,
addStripeCustomerSource; CSRF and clientMutationId."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.test import Client
from graphql_relay import to_global_id

from aa_stripe import exceptions
from aa_stripe.models import StripeCustomer
from aa_stripe_graphql.errors import error_from_exception
from tests.conftest import make_customer
from tests.graphql_helpers import GRAPHQL_URL, assert_denied, gql, signed_in, staff

pytestmark = pytest.mark.django_db

CREATE = """
mutation($input: CreateStripeCustomerInput!) {
  createStripeCustomer(input: $input) {
    clientMutationId
    customer { id stripeCustomerId isActive isCreatedAtStripe defaultSourceCard { last4 } }
    errors { field code message declineCode }
  }
}
"""
ADD_SOURCE = """
mutation($input: AddStripeCustomerSourceInput!) {
  addStripeCustomerSource(input: $input) {
    customer { id defaultSourceCard { id last4 } sources { last4 } }
    errors { field code message }
  }
}
"""


def create(client: Client, token, **extra) -> dict:
    value = token if isinstance(token, str) else json.dumps(token)
    return gql(client, CREATE, {"input": {"stripeJsResponse": value, **extra}})


def add_source(client: Client, customer, token) -> dict:
    customer_id = customer if isinstance(customer, str) else to_global_id("StripeCustomer", customer.pk)
    return gql(
        client, ADD_SOURCE, {"input": {"customer": customer_id, "stripeJsResponse": json.dumps(token)}}
    )


# --- createStripeCustomer ---------------------------------------------------------------------


def test_create_customer_from_a_token(fake_stripe, user):
    token = fake_stripe.card_token()
    body = create(signed_in(user), token, clientMutationId="req-1")

    payload = body["data"]["createStripeCustomer"]
    assert payload["errors"] == [] and payload["clientMutationId"] == "req-1"
    customer = StripeCustomer.objects.get()
    assert customer.user == user and customer.is_created_at_stripe
    assert payload["customer"] == {
        "id": to_global_id("StripeCustomer", customer.pk),
        "stripeCustomerId": customer.stripe_customer_id,
        "isActive": True,
        "isCreatedAtStripe": True,
        "defaultSourceCard": {"last4": "4242"},
    }
    [at_fake] = fake_stripe.get("/v1/customers")["data"]
    assert at_fake["id"] == customer.stripe_customer_id
    [sent] = fake_stripe.proxy.calls("POST", "/v1/customers")
    assert sent.params["source"] == token["id"]


def test_client_mutation_id_round_trips_also_with_errors(fake_stripe, user):
    body = create(signed_in(user), "[1]", clientMutationId="abc-42")

    payload = body["data"]["createStripeCustomer"]
    assert payload["clientMutationId"] == "abc-42"
    assert payload["errors"] == [
        {
            "field": "stripeJsResponse",
            "code": "INVALID",
            "message": "Must be a JSON object.",
            "declineCode": None,
        }
    ]


def test_declined_card_leaves_no_customer(fake_stripe, user):
    body = create(signed_in(user), fake_stripe.card_token("4000000000000002"))

    payload = body["data"]["createStripeCustomer"]
    assert payload["customer"] is None
    [error] = payload["errors"]
    assert error["code"] == "CARD_DECLINED" and error["declineCode"]
    assert not StripeCustomer.objects.exists()
    assert fake_stripe.get("/v1/customers")["data"] == []


@pytest.mark.parametrize(
    "token",
    [
        pytest.param('"tok_1"', id="not-an-object"),
        pytest.param(json.dumps({"id": "card_1"}), id="not-a-token"),
    ],
)
def test_create_customer_refuses_what_is_not_a_token(fake_stripe, user, token):
    payload = create(signed_in(user), token)["data"]["createStripeCustomer"]

    assert [(e["field"], e["code"]) for e in payload["errors"]] == [("stripeJsResponse", "INVALID")]
    if "card_1" in token:
        assert payload["errors"][0]["message"] == (
            "Not a stripe.js token: it needs an id starting with tok_ or src_."
        )
    assert fake_stripe.proxy.calls() == [] and not StripeCustomer.objects.exists()


def test_create_customer_unknown_outcome_is_a_stripe_api_error_and_the_same_token_finishes_it(
    fake_stripe, user
):
    """The row is kept out of use for the operation (Stripe may have made the customer); asking
    again with the same token finishes that row: one customer, at Stripe and here."""
    client, token = signed_in(user), fake_stripe.card_token()
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/customers", status=500)

    payload = create(client, token)["data"]["createStripeCustomer"]

    assert payload["customer"] is None
    assert [e["code"] for e in payload["errors"]] == ["STRIPE_API_ERROR"]
    [pending] = StripeCustomer.objects.all()
    assert not pending.is_created_at_stripe
    assert StripeCustomer.get_latest_active_customer_for_user(user) is None

    again = create(client, token)["data"]["createStripeCustomer"]

    assert again["errors"] == [] and again["customer"]["id"] == to_global_id("StripeCustomer", pending.pk)
    [at_fake] = fake_stripe.get("/v1/customers")["data"]
    assert again["customer"]["stripeCustomerId"] == at_fake["id"] and StripeCustomer.objects.count() == 1


def test_the_same_token_twice_is_the_same_customer(fake_stripe, user):
    """A double submit whose first answer reached Stripe and us, but not the browser."""
    client, token = signed_in(user), fake_stripe.card_token()
    first = create(client, token)["data"]["createStripeCustomer"]

    second = create(client, token)["data"]["createStripeCustomer"]

    assert second["errors"] == [] and second["customer"] == first["customer"]
    assert StripeCustomer.objects.count() == 1 and len(fake_stripe.get("/v1/customers")["data"]) == 1
    assert len(fake_stripe.proxy.calls("POST", "/v1/customers")) == 1


def test_another_users_token_is_not_allowed(fake_stripe, user, other_user):
    token = fake_stripe.card_token()
    create(signed_in(user), token)

    payload = create(signed_in(other_user), token)["data"]["createStripeCustomer"]

    assert payload["customer"] is None
    assert [(e["field"], e["code"]) for e in payload["errors"]] == [(None, "NOT_ALLOWED")]
    assert not StripeCustomer.objects.filter(user=other_user).exists()
    assert len(fake_stripe.proxy.calls("POST", "/v1/customers")) == 1


@pytest.mark.parametrize(
    ("fault", "options", "message", "hidden"),
    [
        pytest.param(
            "drop_before",
            {"times": 10},
            "Stripe could not be reached; nothing was done twice. Please try again.",
            "Network error",
            id="network",
        ),
        pytest.param(
            "status",
            {"status": 401, "message": "Invalid API Key provided: sk_test_****abcd", "times": 10},
            "Payment service error.",
            "sk_test_****abcd",
            id="api-key",
        ),
        pytest.param(
            "status",
            {"status": 500, "message": "Injected 500 with internals", "times": 10},
            "Stripe could not be reached; nothing was done twice. Please try again.",
            "internals",
            id="server-error",
        ),
    ],
)
def test_stripe_failures_show_a_fixed_message_and_log_the_detail(
    fake_stripe, user, caplog, fault, options, message, hidden
):
    fake_stripe.proxy.inject(fault, method="POST", path_prefix="/v1/customers", **options)

    with caplog.at_level("WARNING", logger="aa_stripe_graphql"):
        body = create(signed_in(user), fake_stripe.card_token())

    payload = body["data"]["createStripeCustomer"]
    assert payload["errors"] == [
        {"field": None, "code": "STRIPE_API_ERROR", "message": message, "declineCode": None}
    ]
    assert hidden not in json.dumps(body)
    logged = [r for r in caplog.records if r.name == "aa_stripe_graphql"]
    assert logged and hidden in logged[0].getMessage()


def test_a_declined_card_keeps_stripes_message_for_the_customer(fake_stripe, user):
    payload = create(signed_in(user), fake_stripe.card_token("4000000000000002"))["data"][
        "createStripeCustomer"
    ]
    [error] = payload["errors"]
    assert error["code"] == "CARD_DECLINED" and error["message"] == "Your card was declined."


def test_create_customer_needs_a_signed_in_user(fake_stripe):
    assert_denied(create(Client(), fake_stripe.card_token()), "createStripeCustomer")
    assert fake_stripe.proxy.calls() == [] and not StripeCustomer.objects.exists()


@pytest.mark.parametrize("codenames", [(), ("add_stripecustomer",)], ids=["staff-without", "staff-with"])
def test_staff_create_their_own_customer(fake_stripe, codenames):
    member = staff("carol", *codenames)

    payload = create(signed_in(member), fake_stripe.card_token())["data"]["createStripeCustomer"]

    assert payload["errors"] == []
    assert StripeCustomer.objects.get().user == member


# --- addStripeCustomerSource ------------------------------------------------------------------


def test_owner_adds_a_card_that_becomes_the_default(fake_stripe, user, customer):
    token = fake_stripe.card_token("5555555555554444")

    payload = add_source(signed_in(user), customer, token)["data"]["addStripeCustomerSource"]

    assert payload["errors"] == []
    assert payload["customer"]["defaultSourceCard"]["last4"] == "4444"
    assert [card["last4"] for card in payload["customer"]["sources"]] == ["4444"]  # Stripe replaces it
    customer.refresh_from_db()
    at_fake = fake_stripe.get(f"/v1/customers/{customer.stripe_customer_id}")
    assert (
        at_fake["default_source"] == customer.default_source == payload["customer"]["defaultSourceCard"]["id"]
    )


def test_another_users_customer_is_not_found(fake_stripe, customer, other_user):
    fake_stripe.proxy.reset()  # forget the fixture's calls
    payload = add_source(signed_in(other_user), customer, fake_stripe.card_token())["data"][
        "addStripeCustomerSource"
    ]

    assert payload["customer"] is None
    assert [(e["field"], e["code"]) for e in payload["errors"]] == [("customer", "NOT_FOUND")]
    assert fake_stripe.proxy.calls() == []


@pytest.mark.parametrize(
    "codenames",
    [(), ("view_stripecustomer", "change_stripecustomer")],
    ids=["staff-without", "staff-with"],
)
def test_staff_cannot_add_cards_to_others_customers(fake_stripe, customer, codenames):
    fake_stripe.proxy.reset()
    payload = add_source(signed_in(staff("carol", *codenames)), customer, fake_stripe.card_token())

    errors = payload["data"]["addStripeCustomerSource"]["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [("customer", "NOT_FOUND")]
    assert fake_stripe.proxy.calls() == []


def test_unknown_customer_id_is_not_found(fake_stripe, user):
    for unknown in ["nonsense", to_global_id("StripeCustomer", 999), to_global_id("StripeCharge", 1)]:
        payload = add_source(signed_in(user), unknown, fake_stripe.card_token())["data"][
            "addStripeCustomerSource"
        ]
        assert [(e["field"], e["code"]) for e in payload["errors"]] == [("customer", "NOT_FOUND")]


def test_a_card_whose_answer_was_lost_is_added_once_by_sending_it_again(fake_stripe, user, customer):
    token = fake_stripe.card_token("5555555555554444")
    client = signed_in(user)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/customers/")

    lost = add_source(client, customer, token)["data"]["addStripeCustomerSource"]
    again = add_source(client, customer, token)["data"]["addStripeCustomerSource"]

    assert [e["code"] for e in lost["errors"]] == ["STRIPE_API_ERROR"]
    assert again["errors"] == [] and again["customer"]["defaultSourceCard"]["last4"] == "4444"
    first, retry = fake_stripe.proxy.calls("POST", f"/v1/customers/{customer.stripe_customer_id}")
    assert retry.idempotency_key == first.idempotency_key and retry.replayed


def test_adding_a_declined_card_keeps_the_old_default(fake_stripe, user, customer):
    default = customer.default_source

    payload = add_source(signed_in(user), customer, fake_stripe.card_token("4000000000000002"))

    [error] = payload["data"]["addStripeCustomerSource"]["errors"]
    assert error["code"] == "CARD_DECLINED"
    customer.refresh_from_db()
    assert customer.default_source == default and len(customer.sources) == 1


def test_add_source_is_refused_to_anonymous_callers_before_any_lookup(fake_stripe, customer):
    fake_stripe.proxy.reset()
    assert_denied(add_source(Client(), "nonsense", {"id": "tok_x"}), "addStripeCustomerSource")
    assert_denied(add_source(Client(), customer, fake_stripe.card_token()), "addStripeCustomerSource")
    assert fake_stripe.proxy.calls() == []


# --- CSRF -------------------------------------------------------------------------------------


def test_mutations_need_the_csrf_token(fake_stripe, user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    data = json.dumps(
        {"query": CREATE, "variables": {"input": {"stripeJsResponse": json.dumps(fake_stripe.card_token())}}}
    )

    refused = client.post(GRAPHQL_URL, data=data, content_type="application/json")

    assert refused.status_code == 403
    assert not StripeCustomer.objects.exists() and fake_stripe.proxy.calls() == []

    token = get_token(HttpRequest())
    client.cookies["csrftoken"] = token
    accepted = client.post(GRAPHQL_URL, data=data, content_type="application/json", HTTP_X_CSRFTOKEN=token)

    assert accepted.status_code == 200
    assert json.loads(accepted.content)["data"]["createStripeCustomer"]["errors"] == []
    assert StripeCustomer.objects.get().user == user


def test_a_second_customer_of_the_same_user_is_allowed(fake_stripe, user):
    make_customer(fake_stripe, user)

    payload = create(signed_in(user), fake_stripe.card_token())["data"]["createStripeCustomer"]

    assert payload["errors"] == [] and StripeCustomer.objects.filter(user=user).count() == 2


def no_stripe_user(request) -> None:
    """A STRIPE_GRAPHQL_GET_STRIPE_USER getter for requests that have no Stripe user."""
    return None


def stripe_user_bob(request):
    return get_user_model().objects.get(username="bob")


def test_a_request_without_a_stripe_user_is_refused(fake_stripe, user, settings):
    settings.STRIPE_GRAPHQL_GET_STRIPE_USER = f"{__name__}.no_stripe_user"

    assert_denied(create(signed_in(user), fake_stripe.card_token()), "createStripeCustomer")
    assert not StripeCustomer.objects.exists() and fake_stripe.proxy.calls() == []


def test_the_customer_belongs_to_the_stripe_user_of_the_request(fake_stripe, user, other_user, settings):
    settings.STRIPE_GRAPHQL_GET_STRIPE_USER = f"{__name__}.stripe_user_bob"

    payload = create(signed_in(user), fake_stripe.card_token())["data"]["createStripeCustomer"]

    assert payload["errors"] == [] and StripeCustomer.objects.get().user == other_user


@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(
            exceptions.StripeInternalError("(Network error: ConnectionError: ...)"),
            "Stripe could not be reached; nothing was done twice. Please try again.",
            id="internal",
        ),
        pytest.param(
            exceptions.StripeAuthenticationError("Invalid API Key provided: sk_test_****abcd"),
            "Payment service error.",
            id="authentication",
        ),
        pytest.param(
            exceptions.StripeIdempotencyError("Keys for idempotent requests can only be used ..."),
            "Payment service error.",
            id="idempotency",
        ),
        pytest.param(exceptions.StripeAPIError("HTTP 418 teapot"), "Payment service error.", id="other"),
        pytest.param(
            exceptions.StripeCardError("Your card has insufficient funds.", decline_code="funds"),
            "Your card has insufficient funds.",
            id="card-keeps-its-message",
        ),
        pytest.param(
            exceptions.StripeInvalidRequestError("No such customer: 'cus_x'", code="resource_missing"),
            "No such customer: 'cus_x'",
            id="invalid-request-keeps-its-message",
        ),
    ],
)
def test_payload_messages_of_each_stripe_error(error, message, caplog):
    with caplog.at_level("WARNING", logger="aa_stripe_graphql"):
        assert error_from_exception(error)["message"] == message
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "aa_stripe_graphql")
    assert (error.message in logged) == (message != error.message)
