"""GraphQL createStripeSubscriptionPlan over HTTP against the fake Stripe."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from graphql_relay import to_global_id

from aa_stripe.models import StripeOperation, StripeSubscriptionPlan
from tests.graphql_helpers import codes, gql, signed_in, staff

pytestmark = pytest.mark.django_db

CREATE = """
mutation($input: CreateStripeSubscriptionPlanInput!) {
  createStripeSubscriptionPlan(input: $input) {
    clientMutationId
    plan { id stripePlanId name amount currency interval intervalCount trialPeriodDays isCreatedAtStripe }
    errors { field code message }
  }
}
"""


@pytest.fixture
def planner() -> Client:
    return signed_in(staff("planner", "add_stripesubscriptionplan"))


def create(client: Client, **extra) -> dict:
    values = {"name": "Silver", "amount": 2500, "interval": "WEEK", **extra}
    return gql(client, CREATE, {"input": values})


def plans_at_fake(fake_stripe) -> list[dict]:
    return fake_stripe.get("/v1/plans")["data"]


def test_staff_create_a_plan_at_stripe(fake_stripe, planner):
    body = create(
        planner,
        currency="eur",
        intervalCount=2,
        trialPeriodDays=14,
        statementDescriptor="SILVER PLAN",
        metadata=json.dumps({"tier": "silver"}),
        clientMutationId="p",
    )

    payload = body["data"]["createStripeSubscriptionPlan"]
    assert payload["errors"] == [] and payload["clientMutationId"] == "p"
    row = StripeSubscriptionPlan.objects.get()
    assert payload["plan"] == {
        "id": to_global_id("StripeSubscriptionPlan", row.pk),
        "stripePlanId": row.stripe_plan_id,
        "name": "Silver",
        "amount": 2500,
        "currency": "eur",
        "interval": "WEEK",
        "intervalCount": 2,
        "trialPeriodDays": 14,
        "isCreatedAtStripe": True,
    }
    assert row.metadata == {"tier": "silver"} and row.statement_descriptor == "SILVER PLAN"
    [at_fake] = plans_at_fake(fake_stripe)
    assert at_fake["id"] == row.stripe_plan_id
    assert (at_fake["amount"], at_fake["currency"], at_fake["interval"], at_fake["interval_count"]) == (
        2500,
        "eur",
        "week",
        2,
    )
    operation = StripeOperation.objects.get(kind="plan.create")  # its id goes to Stripe in metadata
    assert at_fake["trial_period_days"] == 14
    assert at_fake["metadata"] == {"tier": "silver", "operation": str(operation.uuid)}
    assert fake_stripe.get(f"/v1/products/{at_fake['product']}")["name"] == "Silver"


def test_defaults(fake_stripe, planner):
    payload = create(planner)["data"]["createStripeSubscriptionPlan"]

    assert payload["errors"] == []
    assert (payload["plan"]["intervalCount"], payload["plan"]["trialPeriodDays"]) == (1, 0)
    assert payload["plan"]["currency"] == StripeSubscriptionPlan.objects.get().currency == "usd"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"amount": -1}, ("amount", "INVALID")),
        ({"intervalCount": 0}, ("intervalCount", "INVALID")),
        ({"trialPeriodDays": -1}, ("trialPeriodDays", "INVALID")),
        ({"currency": "xyz"}, ("currency", "INVALID")),
        ({"name": ""}, ("name", "REQUIRED")),
        ({"statementDescriptor": "x" * 23}, ("statementDescriptor", "INVALID")),
        ({"metadata": json.dumps(["a"])}, ("metadata", "INVALID")),
    ],
    ids=["amount", "interval-count", "trial", "currency", "name", "statement-descriptor", "metadata"],
)
def test_invalid_input_saves_and_sends_nothing(fake_stripe, planner, extra, expected):
    payload = create(planner, **extra)["data"]["createStripeSubscriptionPlan"]

    assert payload["plan"] is None and codes(payload) == [expected]
    assert not StripeSubscriptionPlan.objects.exists() and fake_stripe.proxy.calls() == []


def test_a_refusal_at_stripe_leaves_no_row(fake_stripe, planner):
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/plans", status=400)

    payload = create(planner)["data"]["createStripeSubscriptionPlan"]

    assert payload["plan"] is None and [e["code"] for e in payload["errors"]] == ["INVALID"]
    assert not StripeSubscriptionPlan.objects.exists()


def test_unknown_outcome_keeps_the_row_for_a_safe_retry(fake_stripe, planner):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/plans")

    payload = create(planner)["data"]["createStripeSubscriptionPlan"]

    assert codes(payload) == [(None, "STRIPE_API_ERROR")]
    assert payload["plan"]["isCreatedAtStripe"] is False
    row = StripeSubscriptionPlan.objects.get()
    assert payload["plan"]["stripePlanId"] == row.stripe_plan_id and not row.is_created_at_stripe
    row.create_at_stripe()  # e.g. from the admin: finds the plan Stripe made
    assert [plan["id"] for plan in plans_at_fake(fake_stripe)] == [row.stripe_plan_id]


@pytest.mark.parametrize(
    "who", ["anonymous", "user", "staff-without", "staff-view-only", "staff-change-only"]
)
def test_create_plan_needs_add_stripesubscriptionplan(fake_stripe, user, who):
    clients = {
        "anonymous": Client,
        "user": lambda: signed_in(user),
        "staff-without": lambda: signed_in(staff("carol")),
        "staff-view-only": lambda: signed_in(staff("dave", "view_stripesubscriptionplan")),
        "staff-change-only": lambda: signed_in(staff("erin", "change_stripesubscriptionplan")),
    }

    body = create(clients[who]())

    assert body["data"] == {"createStripeSubscriptionPlan": None}
    assert [error["extensions"]["code"] for error in body["errors"]] == ["PERMISSION_DENIED"]
    assert not StripeSubscriptionPlan.objects.exists() and fake_stripe.proxy.calls() == []


# --- input limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"amount": 100_000_000}, "amount", "at most 99999999"),
        ({"amount": 150, "currency": "isk"}, "amount", "multiples of 100"),
        ({"amount": 2501, "currency": "BHD"}, "amount", "multiples of 10"),
        ({"currency": "EU"}, "currency", "'eu'"),
        ({"statementDescriptor": "abcd"}, "statementDescriptor", "at least 5"),
        ({"statementDescriptor": "12345"}, "statementDescriptor", "letter"),
        ({"statementDescriptor": "Shop <3"}, "statementDescriptor", "<"),
        ({"statementDescriptor": 'say "hi"'}, "statementDescriptor", '"'),
        ({"statementDescriptor": "a*b cd"}, "statementDescriptor", "*"),
        ({"statementDescriptor": "Żabka plan"}, "statementDescriptor", "ASCII"),
    ],
)
def test_stripes_limits_are_payload_errors(fake_stripe, planner, extra, field, words):
    payload = create(planner, **extra)["data"]["createStripeSubscriptionPlan"]

    assert payload["plan"] is None and codes(payload) == [(field, "INVALID")]
    assert words in payload["errors"][0]["message"]
    assert not StripeSubscriptionPlan.objects.exists() and fake_stripe.proxy.calls() == []


@pytest.mark.parametrize("amount", [0, 99_999_999])
def test_a_free_plan_and_the_largest_amount_are_created(fake_stripe, planner, amount):
    body = create(planner, amount=amount, statementDescriptor="a" * 22)

    payload = body["data"]["createStripeSubscriptionPlan"]
    assert payload["errors"] == [] and payload["plan"]["amount"] == amount
    [sent] = fake_stripe.proxy.calls("POST", "/v1/plans")
    assert sent.params["amount"] == str(amount)
