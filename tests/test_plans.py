"""StripeSubscriptionPlan.create_at_stripe() against the fake Stripe server."""

from __future__ import annotations

import pytest

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    StripeInternalError,
    StripeInvalidInput,
    StripeInvalidRequestError,
    StripeMethodNotAllowed,
)
from aa_stripe.models import StripeOperation, StripeSubscriptionPlan

pytestmark = pytest.mark.django_db


def make_plan(**fields) -> StripeSubscriptionPlan:
    values = {"amount": 5000, "name": "gold-basic", "interval": StripeSubscriptionPlan.INTERVAL_MONTH}
    return StripeSubscriptionPlan.objects.create(**{**values, **fields})


def plans_at_fake(fake_stripe) -> list[dict]:
    return fake_stripe.get("/v1/plans")["data"]


def test_create_at_stripe_sends_the_plan_and_its_product(fake_stripe):
    plan = make_plan(
        amount=2500,
        currency="eur",
        name="Silver",
        interval=StripeSubscriptionPlan.INTERVAL_WEEK,
        interval_count=2,
        statement_descriptor="SILVER PLAN",
        trial_period_days=14,
        metadata={"tier": "silver"},
    )

    returned = plan.create_at_stripe()

    at_stripe = stripe_api.call("plans", "retrieve", plan.stripe_plan_id)
    assert returned["id"] == at_stripe["id"] == plan.stripe_plan_id
    assert at_stripe["amount"] == 2500
    assert at_stripe["currency"] == "eur"
    assert at_stripe["interval"] == "week"
    assert at_stripe["interval_count"] == 2
    assert at_stripe["trial_period_days"] == 14
    operation = StripeOperation.objects.get(kind="plan.create")
    assert at_stripe["metadata"] == {"tier": "silver", "operation": str(operation.uuid)}
    product = stripe_api.call("products", "retrieve", at_stripe["product"])
    assert product["name"] == "Silver"
    assert product["statement_descriptor"] == "SILVER PLAN"
    # The current API takes statement_descriptor only inside product, never on the plan itself.
    (sent,) = fake_stripe.proxy.calls("POST", "/v1/plans")
    assert sent.params["product[statement_descriptor]"] == "SILVER PLAN"
    assert sent.params["product[name]"] == "Silver"
    assert "statement_descriptor" not in sent.params
    assert "name" not in sent.params

    plan.refresh_from_db()
    assert plan.is_created_at_stripe is True
    assert plan.stripe_response["id"] == plan.stripe_plan_id
    assert plan.stripe_response["amount"] == 2500


def test_plan_without_trial_or_descriptor_sends_neither(fake_stripe):
    plan = make_plan()

    plan.create_at_stripe()

    (sent,) = fake_stripe.proxy.calls("POST", "/v1/plans")
    assert "trial_period_days" not in sent.params
    assert "product[statement_descriptor]" not in sent.params
    at_stripe = stripe_api.call("plans", "retrieve", plan.stripe_plan_id)
    assert at_stripe["trial_period_days"] is None
    assert stripe_api.call("products", "retrieve", at_stripe["product"])["statement_descriptor"] is None


def test_plan_ids_are_generated_and_distinct(fake_stripe):
    first, second = make_plan(), make_plan(name="gold-plus")

    first.create_at_stripe()
    second.create_at_stripe()

    assert first.stripe_plan_id.startswith("plan_")
    assert second.stripe_plan_id.startswith("plan_")
    assert first.stripe_plan_id != second.stripe_plan_id
    assert sorted(p["id"] for p in plans_at_fake(fake_stripe)) == sorted(
        [first.stripe_plan_id, second.stripe_plan_id]
    )


def test_a_preset_plan_id_is_used_as_is(fake_stripe):
    plan = make_plan(stripe_plan_id="gold-basic-quarterly")

    plan.create_at_stripe()

    plan.refresh_from_db()
    assert plan.stripe_plan_id == "gold-basic-quarterly"
    assert stripe_api.call("plans", "retrieve", "gold-basic-quarterly")["amount"] == 5000
    assert fake_stripe.proxy.calls("POST", "/v1/plans")[0].params["id"] == "gold-basic-quarterly"


def test_second_create_at_stripe_is_refused_without_calling_stripe(fake_stripe):
    plan = make_plan()
    plan.create_at_stripe()
    calls_before = len(fake_stripe.proxy.calls())

    with pytest.raises(StripeMethodNotAllowed):
        plan.create_at_stripe()

    assert len(fake_stripe.proxy.calls()) == calls_before
    assert len(plans_at_fake(fake_stripe)) == 1


def test_lost_answer_then_retry_creates_one_plan(fake_stripe):
    plan = make_plan()
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/plans")

    with pytest.raises(StripeInternalError):
        plan.create_at_stripe()

    # Stripe made the plan; we did not hear it. The chosen id is kept for the retry.
    plan.refresh_from_db()
    assert plan.is_created_at_stripe is False
    assert plan.stripe_plan_id
    assert [p["id"] for p in plans_at_fake(fake_stripe)] == [plan.stripe_plan_id]

    returned = plan.create_at_stripe()

    assert returned["id"] == plan.stripe_plan_id
    assert [p["id"] for p in plans_at_fake(fake_stripe)] == [plan.stripe_plan_id]
    first, retry = fake_stripe.proxy.calls("POST", "/v1/plans")
    assert first.idempotency_key == retry.idempotency_key == f"plan:{plan.stripe_plan_id}:1"
    assert (first.fault, retry.replayed) == ("drop_after", True)
    assert StripeSubscriptionPlan.objects.get() == plan
    plan.refresh_from_db()
    assert plan.is_created_at_stripe is True


def test_currency_defaults_to_the_setting(fake_stripe, settings):
    settings.STRIPE_DEFAULT_CURRENCY = "EUR"

    plan = make_plan()
    plan.create_at_stripe()

    assert plan.currency == "eur"
    assert stripe_api.call("plans", "retrieve", plan.stripe_plan_id)["currency"] == "eur"


def test_currency_default_is_usd(fake_stripe):
    plan = make_plan()
    plan.create_at_stripe()

    assert plan.currency == "usd"
    assert stripe_api.call("plans", "retrieve", plan.stripe_plan_id)["currency"] == "usd"


def test_jpy_amount_is_sent_unchanged_in_minor_units(fake_stripe):
    plan = make_plan(amount=500, currency="jpy")

    plan.create_at_stripe()

    assert fake_stripe.proxy.calls("POST", "/v1/plans")[0].params["amount"] == "500"
    at_stripe = stripe_api.call("plans", "retrieve", plan.stripe_plan_id)
    assert (at_stripe["amount"], at_stripe["currency"]) == (500, "jpy")


def test_plan_refused_by_stripe_is_not_marked_created(fake_stripe):
    # (an amount such as -1 no longer reaches Stripe: see test_invalid_input_is_refused_before_stripe)
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/plans", status=400)
    plan = make_plan()

    with pytest.raises(StripeInvalidRequestError) as excinfo:
        plan.create_at_stripe()

    assert excinfo.value.http_status == 400
    plan.refresh_from_db()
    assert plan.is_created_at_stripe is False
    assert plans_at_fake(fake_stripe) == []


# --- input limits: refused before Stripe ----------------------------------------------------------


def unsaved_plan(**fields) -> StripeSubscriptionPlan:
    values = {"amount": 5000, "name": "gold-basic", "interval": StripeSubscriptionPlan.INTERVAL_MONTH}
    return StripeSubscriptionPlan(**{**values, **fields})


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [
        ({"amount": -1}, "amount", "min_value"),
        ({"amount": 1.5}, "amount", "invalid_amount"),
        ({"amount": "5000"}, "amount", "invalid_amount"),
        ({"amount": 100_000_000}, "amount", "max_value"),
        ({"amount": 150, "currency": "isk"}, "amount", "amount_multiple"),
        ({"currency": "xyz"}, "currency", "invalid_currency"),
        ({"statement_descriptor": "abcd"}, "statement_descriptor", "min_length"),
        ({"statement_descriptor": "12345"}, "statement_descriptor", "no_letter"),
        ({"statement_descriptor": 'say "hi"'}, "statement_descriptor", "forbidden_characters"),
        ({"statement_descriptor": "a*b cd"}, "statement_descriptor", "forbidden_characters"),
    ],
)
def test_invalid_input_is_refused_before_stripe(fake_stripe, fields, field, code):
    plan = unsaved_plan(**fields)

    with pytest.raises(StripeInvalidInput) as excinfo:
        plan.create_at_stripe()

    assert (excinfo.value.field, excinfo.value.code) == (field, code)
    assert fake_stripe.proxy.calls() == []
    assert plan.pk is None and not plan.stripe_plan_id  # nothing saved, no plan id chosen
    assert not StripeSubscriptionPlan.objects.exists()


def test_a_saved_invalid_plan_is_left_as_it_was(fake_stripe):
    plan = make_plan(amount=100_000_000)

    with pytest.raises(StripeInvalidInput, match="at most 99999999"):
        plan.create_at_stripe()

    plan.refresh_from_db()
    assert (plan.stripe_plan_id, plan.is_created_at_stripe, plan.stripe_response) == ("", False, {})
    assert fake_stripe.proxy.calls() == []


def test_a_free_plan_and_the_largest_amount_are_allowed(fake_stripe):
    free, dear = make_plan(amount=0, name="free"), make_plan(amount=99_999_999, name="dear")

    free.create_at_stripe()
    dear.create_at_stripe()

    sent = [call.params["amount"] for call in fake_stripe.proxy.calls("POST", "/v1/plans")]
    assert sent == ["0", "99999999"]
    assert free.is_created_at_stripe and dear.is_created_at_stripe
