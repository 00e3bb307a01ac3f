"""The operations journal for plans and coupons: GraphQL, model methods, admin views, reconcile.

Holes 3 and 4 of the issue "every other Stripe write through the journal": coupon creation sent no
idempotency key and, like plan creation, called Stripe inside ``transaction.atomic``; a retry of a
plan whose creation had an unknown outcome made a second row (and a second plan); the admin's
change and delete views called Stripe inside Django's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeInternalError, StripeMethodNotAllowed, StripeOperationInProgress
from aa_stripe.guard import StripeWriteInTransaction, library_atomic
from aa_stripe.models import StripeCoupon, StripeOperation, StripeSubscriptionPlan
from tests.graphql_helpers import codes, gql, signed_in, staff

pytestmark = pytest.mark.django_db

CREATE_COUPON = """
mutation($input: CreateStripeCouponInput!) {
  createStripeCoupon(input: $input) { coupon { id couponId } errors { field code message } }
}
"""
CREATE_PLAN = """
mutation($input: CreateStripeSubscriptionPlanInput!) {
  createStripeSubscriptionPlan(input: $input) {
    plan { id stripePlanId isCreatedAtStripe } errors { field code message }
  }
}
"""


@pytest.fixture
def stripe_writes(monkeypatch) -> Iterator[list[tuple[str, bool]]]:
    """Each write to Stripe as it is made: ``("coupons.create", transaction_open)``.

    Observes only (the request still goes to the fake). In a transactional test Django's
    ``in_atomic_block`` is True exactly while some transaction is open on the connection."""
    seen: list[tuple[str, bool]] = []
    original = stripe_api.call

    def observed(service, method, *ids, params=None, idempotency_key=None):
        if method not in stripe_api.READ_METHODS:
            seen.append((f"{service}.{method}", connection.in_atomic_block))
        return original(service, method, *ids, params=params, idempotency_key=idempotency_key)

    monkeypatch.setattr(stripe_api, "call", observed)
    return seen


def reconcile() -> str:
    out = StringIO()
    call_command("reconcile_stripe_operations", stdout=out, stderr=out)
    return out.getvalue()


def create_coupon(client, **values) -> dict:
    variables = {"input": {"duration": "ONCE", "percentOff": "5", **values}}
    return gql(client, CREATE_COUPON, variables)["data"]["createStripeCoupon"]


def create_plan(client, **values) -> dict:
    variables = {"input": {"name": "Silver", "amount": 2500, "interval": "WEEK", **values}}
    return gql(client, CREATE_PLAN, variables)["data"]["createStripeSubscriptionPlan"]


@pytest.fixture
def marketer():
    return signed_in(staff("marketer", "add_stripecoupon", "change_stripecoupon", "delete_stripecoupon"))


@pytest.fixture
def planner():
    return signed_in(staff("planner", "add_stripesubscriptionplan"))


def coupons_at_fake(fake_stripe) -> list[dict]:
    return fake_stripe.get("/v1/coupons", limit=100)["data"]


def plans_at_fake(fake_stripe) -> list[dict]:
    return fake_stripe.get("/v1/plans", limit=100)["data"]


# --- hole 3: coupon creation without an idempotency key ----------------------------------------------


def test_a_lost_coupon_creation_is_finished_by_asking_again(fake_stripe, marketer):
    """Hole 3: no idempotency key was sent, so asking again after a lost answer made a second coupon
    (Stripe chooses the id, so nothing told the two apart)."""
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/coupons")

    lost = create_coupon(marketer)
    again = create_coupon(marketer)

    assert lost["coupon"] is None and codes(lost) == [(None, "STRIPE_API_ERROR")]
    assert again["errors"] == []
    [made] = coupons_at_fake(fake_stripe)
    assert again["coupon"]["couponId"] == made["id"] == StripeCoupon.objects.get().coupon_id
    first, retry = fake_stripe.proxy.calls("POST", "/v1/coupons")
    assert first.idempotency_key and retry.idempotency_key == first.idempotency_key and retry.replayed


# --- hole 3: a retry of a plan made a second row --------------------------------------------------------


def test_a_lost_plan_creation_is_finished_on_the_same_row_by_asking_again(fake_stripe, planner):
    """Hole 3: the retry made a second row, with a second plan id, and a second plan at Stripe."""
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/plans")

    lost = create_plan(planner, metadata=json.dumps({"tier": "silver"}))
    again = create_plan(planner, metadata=json.dumps({"tier": "silver"}))

    assert codes(lost) == [(None, "STRIPE_API_ERROR")] and not lost["plan"]["isCreatedAtStripe"]
    assert again["errors"] == [] and again["plan"]["isCreatedAtStripe"]
    assert again["plan"]["id"] == lost["plan"]["id"]
    row = StripeSubscriptionPlan.objects.get()
    assert [plan["id"] for plan in plans_at_fake(fake_stripe)] == [row.stripe_plan_id]
    first, retry = fake_stripe.proxy.calls("POST", "/v1/plans")
    assert retry.idempotency_key == first.idempotency_key and retry.replayed


def test_reconcile_finishes_a_plan_whose_creation_had_an_unknown_outcome(fake_stripe, planner):
    """Hole 3: nothing but a person calling create_at_stripe() again finished such a plan."""
    fake_stripe.proxy.inject("status_after", method="POST", path_prefix="/v1/plans", status=500)
    assert codes(create_plan(planner)) == [(None, "STRIPE_API_ERROR")]

    assert "1 succeeded, 0 refused, 0 still unresolved" in reconcile()

    row = StripeSubscriptionPlan.objects.get()
    assert row.is_created_at_stripe and row.stripe_response["id"] == row.stripe_plan_id
    assert [plan["id"] for plan in plans_at_fake(fake_stripe)] == [row.stripe_plan_id]
    assert len(fake_stripe.proxy.calls("POST", "/v1/plans")) == 1  # looked up, not sent again


# --- holes 3 and 4: no transaction is open while Stripe is written ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_graphql_creates_coupons_and_plans_outside_any_transaction(fake_stripe, stripe_writes):
    """Hole 3: the mutations wrapped the call to Stripe in transaction.atomic()."""
    marketer = signed_in(staff("marketer", "add_stripecoupon"))
    planner = signed_in(staff("planner", "add_stripesubscriptionplan"))

    assert create_coupon(marketer, couponId="SPRING")["errors"] == []
    assert create_plan(planner)["errors"] == []

    assert stripe_writes == [("coupons.create", False), ("plans.create", False)]


@pytest.mark.django_db(transaction=True)
def test_the_coupon_admin_writes_to_stripe_outside_any_transaction(fake_stripe, staff_client, stripe_writes):
    """Hole 4: the admin's add, change and delete views run in transaction.atomic(); the coupon's
    save() and delete() called Stripe inside it."""
    response = staff_client.post(
        reverse("admin:aa_stripe_stripecoupon_add"),
        {"coupon_id": "SPRING", "percent_off": "10", "duration": "once", "metadata": "{}"},
    )
    assert response.status_code == 302
    coupon = StripeCoupon.objects.get(coupon_id="SPRING")
    change = reverse("admin:aa_stripe_stripecoupon_change", args=[coupon.pk])
    assert staff_client.post(change, {"metadata": '{"campaign": "spring"}'}).status_code == 302
    delete = reverse("admin:aa_stripe_stripecoupon_delete", args=[coupon.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 302

    assert stripe_writes == [("coupons.create", False), ("coupons.update", False), ("coupons.delete", False)]
    coupon = StripeCoupon.objects.all_with_deleted().get()
    assert coupon.is_deleted and coupon.metadata == {"campaign": "spring"}
    assert coupons_at_fake(fake_stripe) == []


# --- plans: the frozen request, ids taken at Stripe, the guard ----------------------------------------


def make_plan(**fields) -> StripeSubscriptionPlan:
    values = {"amount": 5000, "name": "Gold", "interval": StripeSubscriptionPlan.INTERVAL_MONTH}
    return StripeSubscriptionPlan.objects.create(**{**values, **fields})


def test_a_retry_sends_the_frozen_plan_and_the_row_says_what_stripe_has(fake_stripe):
    plan = make_plan(metadata={"tier": "gold"})
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/plans")
    with pytest.raises(StripeInternalError):
        plan.create_at_stripe()
    assert plan.creation_unfinished and not plan.is_created_at_stripe
    StripeSubscriptionPlan.objects.filter(pk=plan.pk).update(amount=9900, name="Platinum")

    plan.refresh_from_db()
    returned = plan.create_at_stripe()

    first, retry = fake_stripe.proxy.calls("POST", "/v1/plans")
    assert retry.params == first.params and retry.replayed
    plan.refresh_from_db()
    assert (plan.amount, plan.name, plan.metadata) == (5000, "Gold", {"tier": "gold"})
    assert plan.is_created_at_stripe and not plan.creation_unfinished
    assert returned["amount"] == 5000 == plan.stripe_response["amount"]


def test_a_plan_whose_key_stripe_forgot_is_found_not_made_again(fake_stripe):
    plan = make_plan()
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/plans")
    with pytest.raises(StripeInternalError):
        plan.create_at_stripe()
    fake_stripe.proxy.forget_keys()

    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        plan.create_at_stripe()

    assert len(fake_stripe.proxy.calls("POST", "/v1/plans")) == 1
    assert len(fake_stripe.proxy.calls("GET", f"/v1/plans/{plan.stripe_plan_id}")) == 1
    assert plan.is_created_at_stripe and [p["id"] for p in plans_at_fake(fake_stripe)] == [
        plan.stripe_plan_id
    ]


def test_a_different_plan_with_our_id_at_stripe_is_refused_and_a_matching_old_one_adopted(fake_stripe):
    params = {"amount": 700, "currency": "usd", "interval": "month", "product": {"name": "Theirs"}}
    stripe_api.call("plans", "create", params={**params, "id": "theirs"})
    stripe_api.call("plans", "create", params={**params, "id": "made-before-the-journal"})
    theirs = make_plan(stripe_plan_id="theirs")
    ours = make_plan(stripe_plan_id="made-before-the-journal", amount=700)

    with pytest.raises(StripeMethodNotAllowed, match="A different plan with id 'theirs'"):
        theirs.create_at_stripe()
    adopted = ours.create_at_stripe()

    assert not theirs.is_created_at_stripe and not theirs.creation_unfinished
    assert StripeOperation.objects.get(object_id=str(theirs.pk)).state == StripeOperation.REFUSED
    assert ours.is_created_at_stripe and adopted["id"] == "made-before-the-journal"
    assert len(plans_at_fake(fake_stripe)) == 2


def test_asking_for_another_plan_makes_another_row(fake_stripe, planner):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/plans")
    lost = create_plan(planner)

    other = create_plan(planner, amount=2600)

    assert other["errors"] == [] and other["plan"]["id"] != lost["plan"]["id"]
    assert StripeSubscriptionPlan.objects.count() == 2


def test_creating_a_plan_inside_a_library_transaction_trips_the_guard(fake_stripe):
    plan = make_plan()
    with pytest.raises(StripeWriteInTransaction), library_atomic():
        plan.create_at_stripe()
    assert fake_stripe.proxy.calls("POST") == []


# --- coupons: lookups, a webhook first, updates and deletes ---------------------------------------------


def sale(**fields) -> StripeCoupon:
    values = {"coupon_id": "SALE", "duration": StripeCoupon.DURATION_ONCE, "percent_off": 10}
    return StripeCoupon.objects.create(**{**values, **fields})


def test_a_coupon_whose_id_stripe_chose_is_found_by_its_operation_after_25_hours(fake_stripe):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/coupons")
    with pytest.raises(StripeInternalError):
        sale(coupon_id="")
    assert not StripeCoupon.objects.exists()  # no row until Stripe's answer is known
    fake_stripe.proxy.forget_keys()

    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        assert "1 succeeded, 0 refused, 0 still unresolved" in reconcile()

    [made] = coupons_at_fake(fake_stripe)
    coupon = StripeCoupon.objects.get()
    assert coupon.coupon_id == made["id"] and coupon.is_created_at_stripe
    assert len(fake_stripe.proxy.calls("POST", "/v1/coupons")) == 1  # found, not made again
    [listed] = fake_stripe.proxy.calls("GET", "/v1/coupons")
    assert listed.query["created[gt]"]
    operation = StripeOperation.objects.get(kind="coupon.create")
    assert (operation.state, operation.target, operation.stripe_id) == ("succeeded", coupon, made["id"])


def test_a_coupon_with_our_id_and_a_replayed_5xx_is_retrieved(fake_stripe):
    fake_stripe.proxy.inject("status_after", method="POST", path_prefix="/v1/coupons", status=500)
    with pytest.raises(StripeInternalError):
        sale()

    sale()  # the same coupon again: finishes the first request

    assert len(fake_stripe.proxy.calls("POST", "/v1/coupons")) == 1
    assert len(fake_stripe.proxy.calls("GET", "/v1/coupons/SALE")) == 1
    assert StripeCoupon.objects.get().coupon_id == "SALE"
    assert StripeOperation.objects.get().state == StripeOperation.SUCCEEDED


def test_a_lost_coupon_a_webhook_mirrored_first_is_finished_on_that_row(fake_stripe):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/coupons")
    with pytest.raises(StripeInternalError):
        sale(coupon_id="")
    [made] = coupons_at_fake(fake_stripe)
    mirrored = StripeCoupon(coupon_id=made["id"])
    mirrored.update_from_stripe_data(made)  # what the coupon.created webhook does

    again = StripeCoupon(duration=StripeCoupon.DURATION_ONCE, percent_off=10)
    again.save()

    assert again.pk == mirrored.pk and StripeCoupon.objects.get().coupon_id == made["id"]
    assert len(coupons_at_fake(fake_stripe)) == 1


def test_another_coupon_of_a_code_being_created_waits(fake_stripe):
    fake_stripe.proxy.inject("drop_before", method="POST", path_prefix="/v1/coupons")
    with pytest.raises(StripeInternalError):
        sale()

    with pytest.raises(StripeOperationInProgress, match="SALE"):
        sale(percent_off=20)

    assert len(fake_stripe.proxy.calls("POST", "/v1/coupons")) == 1


def test_a_lost_metadata_update_is_retried_with_its_key_and_others_wait(fake_stripe):
    coupon = sale(metadata={"a": "1"})
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/coupons/SALE")
    coupon.metadata = {"a": "2"}
    with pytest.raises(StripeInternalError):
        coupon.save()

    other = StripeCoupon.objects.get(pk=coupon.pk)
    other.metadata = {"a": "3"}
    with pytest.raises(StripeOperationInProgress):
        other.save()
    coupon.metadata = {"a": "2"}
    coupon.save()

    first, retry = fake_stripe.proxy.calls("POST", "/v1/coupons/SALE")
    assert retry.idempotency_key == first.idempotency_key == f"coupon:{coupon.pk}:update:1" and retry.replayed
    coupon.refresh_from_db()
    assert coupon.metadata == {"a": "2"}


def test_reconcile_finishes_a_lost_delete(fake_stripe):
    coupon = sale()
    fake_stripe.proxy.inject("drop_after", method="DELETE", path_prefix="/v1/coupons/SALE")
    with pytest.raises(StripeInternalError):
        coupon.delete()
    assert not coupon.is_deleted and StripeCoupon.objects.filter(pk=coupon.pk).exists()

    assert "0 succeeded, 1 refused, 0 still unresolved" in reconcile()  # Stripe: no such coupon (any more)

    assert list(StripeCoupon.objects.deleted()) == [coupon] and coupons_at_fake(fake_stripe) == []


def test_a_lost_delete_never_deletes_a_coupon_made_since_under_the_same_code(fake_stripe):
    coupon = sale()
    fake_stripe.proxy.inject("status_after", method="DELETE", path_prefix="/v1/coupons/SALE", status=500)
    with pytest.raises(StripeInternalError):
        coupon.delete()
    stripe_api.call("coupons", "create", params={"id": "SALE", "duration": "once", "percent_off": 50})
    # Stripe's creation times have one-second resolution: ours is made older than the namesake.
    StripeCoupon.objects.filter(pk=coupon.pk).update(created=coupon.created - timedelta(days=1))

    assert "1 succeeded" in reconcile()  # looked up: our coupon is gone

    assert len(fake_stripe.proxy.calls("DELETE", "/v1/coupons/SALE")) == 1
    assert fake_stripe.get("/v1/coupons/SALE")["percent_off"] == 50
    assert StripeCoupon.objects.all_with_deleted().get().is_deleted


@pytest.mark.parametrize("write", ["update", "delete"])
def test_a_coupon_write_inside_a_library_transaction_trips_the_guard(fake_stripe, write):
    coupon = sale()
    coupon.metadata = {"b": "2"}
    with pytest.raises(StripeWriteInTransaction), library_atomic():
        coupon.save() if write == "update" else coupon.delete()
    assert fake_stripe.proxy.calls("POST", "/v1/coupons/SALE") == []
    assert fake_stripe.proxy.calls("DELETE") == []
