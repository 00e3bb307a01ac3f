"""The admin: every page renders, search finds rows, and the actions work against the fake Stripe."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import connection
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeInternalError
from aa_stripe.models import (
    StripeCharge,
    StripeCoupon,
    StripeCustomer,
    StripeRefund,
    StripeSubscription,
    StripeSubscriptionPlan,
    StripeWebhook,
)
from tests.conftest import make_customer

pytestmark = pytest.mark.django_db

DECLINED_ON_CHARGE = "4000000000000341"


def changelist_url(model) -> str:
    return reverse(f"admin:aa_stripe_{model._meta.model_name}_changelist")


def change_url(obj) -> str:
    return reverse(f"admin:aa_stripe_{obj._meta.model_name}_change", args=[obj.pk])


def run_action(client, model, action: str, objects, **extra: str) -> list[tuple[int, str]]:
    """Post an admin action (with ``extra`` fields, e.g. a confirmation) and follow the redirect;
    the messages shown there (and thus consumed)."""
    response = client.post(
        changelist_url(model),
        {"action": action, ACTION_CHECKBOX_NAME: [obj.pk for obj in objects], **extra},
        follow=True,
    )
    assert response.redirect_chain == [(changelist_url(model), 302)]
    return [(m.level, m.message) for m in response.context["messages"]]


def failure(obj, doing: str, text: str) -> tuple[int, str]:
    """The error message an action shows for a row that failed."""
    return messages.ERROR, f"Could not {doing} {obj._meta.verbose_name} #{obj.pk} “{obj}”: {text}"


def charged(user, amount: int = 500) -> StripeCharge:
    charge = StripeCharge.objects.create(user=user, amount=amount, description="Order 1")
    charge.charge()
    charge.refresh_from_db()
    return charge


@pytest.fixture
def local_rows(user):
    """One row of every model, none of which needs Stripe."""
    customer = StripeCustomer.objects.create(
        user=user,
        stripe_customer_id="cus_local",
        is_created_at_stripe=True,
        default_source="card_1",
        sources=[{"id": "card_1", "object": "card", "brand": "Visa", "last4": "4242", "exp_month": 1}],
    )
    charge = StripeCharge.objects.create(
        user=user, customer=customer, amount=1050, description="Gift card", stripe_charge_id="ch_local"
    )
    refund = StripeRefund.objects.create(
        charge=charge, amount=50, currency="eur", stripe_refund_id="re_local"
    )
    plan = StripeSubscriptionPlan.objects.create(amount=999, name="Monthly", interval="month")
    subscription = StripeSubscription.objects.create(user=user, plan=plan, customer=customer)
    coupon = StripeCoupon(coupon_id="LOCAL10", duration="once")
    coupon.update_from_stripe_data(
        {"id": "LOCAL10", "amount_off": 1000, "currency": "usd", "duration": "once", "created": 1700000000}
    )
    webhook = StripeWebhook.objects.create(
        id="evt_local", event_type="coupon.created", raw_data={"id": "evt_local", "type": "coupon.created"}
    )
    return [customer, charge, refund, plan, subscription, coupon, webhook]


# --- Pages -----------------------------------------------------------------------------------------


def test_changelists_and_change_pages_render(staff_client, local_rows):
    for obj in local_rows:
        response = staff_client.get(changelist_url(type(obj)))
        assert response.status_code == 200, type(obj)
        assert response.context["cl"].result_count == 1
        assert staff_client.get(change_url(obj)).status_code == 200, type(obj)
    # amounts in major units with the currency, users by name and e-mail, the customer's card
    charges = staff_client.get(changelist_url(StripeCharge)).content.decode()
    assert "10.50 USD" in charges
    assert "alice &lt;alice@example.com&gt;" in charges
    assert "Visa •••• 4242" in staff_client.get(changelist_url(StripeCustomer)).content.decode()
    assert "10.00 USD off" in staff_client.get(changelist_url(StripeCoupon)).content.decode()


@pytest.mark.parametrize(
    "model", [StripeCustomer, StripeCharge, StripeSubscriptionPlan, StripeSubscription, StripeCoupon]
)
def test_add_pages_render(staff_client, model):
    response = staff_client.get(reverse(f"admin:aa_stripe_{model._meta.model_name}_add"))
    assert response.status_code == 200
    assert "stripe_response" not in response.context["adminform"].form.fields


@pytest.mark.parametrize("model", [StripeRefund, StripeWebhook])
def test_refunds_and_webhooks_cannot_be_added_or_changed(staff_client, local_rows, model):
    obj = next(row for row in local_rows if isinstance(row, model))
    assert staff_client.get(reverse(f"admin:aa_stripe_{model._meta.model_name}_add")).status_code == 403
    response = staff_client.get(change_url(obj))
    assert response.status_code == 200
    assert response.context["adminform"].form.fields == {}  # view only
    assert staff_client.post(change_url(obj), {}).status_code == 403


def test_stripe_owned_fields_are_read_only(staff_client, local_rows):
    customer, charge, _refund, plan, subscription, coupon, _webhook = local_rows
    form_fields = {
        type(obj): set(staff_client.get(change_url(obj)).context["adminform"].form.fields)
        for obj in (customer, charge, plan, subscription, coupon)
    }
    assert form_fields[StripeCustomer] == {"is_active"}
    # charged (it has a Stripe id): what was charged is frozen, internal notes are not
    assert form_fields[StripeCharge] == {"is_manual_charge", "comment", "content_type", "object_id"}
    assert "amount" in form_fields[StripeSubscriptionPlan]  # not at Stripe yet
    assert {"plan", "user", "end_date"} <= form_fields[StripeSubscription]
    assert "status" not in form_fields[StripeSubscription]
    assert form_fields[StripeCoupon] == {"metadata"}


def test_changelists_do_not_query_per_row(staff_client, user, other_user, local_rows):
    def count(model) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(changelist_url(model)).status_code == 200
        return len(queries)

    plan = local_rows[3]
    models = [StripeCustomer, StripeCharge, StripeRefund, StripeSubscription]
    before = {model: count(model) for model in models}
    for n in range(3):
        extra_user = get_user_model().objects.create_user(username=f"u{n}", email=f"u{n}@example.com")
        extra_customer = StripeCustomer.objects.create(user=extra_user)
        extra_charge = StripeCharge.objects.create(user=extra_user, amount=100, description="x")
        StripeRefund.objects.create(charge=extra_charge, amount=10, currency="usd", stripe_refund_id=f"r{n}")
        StripeSubscription.objects.create(user=extra_user, plan=plan, customer=extra_customer)
    assert {model: count(model) for model in models} == before


# --- Search and filters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "term", "count"),
    [
        (StripeCharge, "alice@example.com", 1),
        (StripeCharge, "bob", 1),
        (StripeCharge, "ch_local", 1),
        (StripeCharge, "Gift", 1),
        (StripeCharge, "nobody@example.com", 0),
        (StripeCustomer, "cus_local", 1),
        (StripeCustomer, "alice", 1),
        (StripeRefund, "re_local", 1),
        (StripeSubscription, "alice@example.com", 1),
        (StripeSubscriptionPlan, "Monthly", 1),
        (StripeCoupon, "LOCAL10", 1),
        (StripeWebhook, "evt_local", 1),
    ],
)
def test_search(staff_client, local_rows, other_user, model, term, count):
    StripeCharge.objects.create(user=other_user, amount=100, description="Other")
    response = staff_client.get(changelist_url(model), {"q": term})
    assert response.status_code == 200
    assert response.context["cl"].result_count == count


def test_filters(staff_client, local_rows):
    response = staff_client.get(changelist_url(StripeCharge), {"is_charged__exact": "0", "currency": "usd"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
    response = staff_client.get(changelist_url(StripeCharge), {"is_refunded__exact": "1"})
    assert response.context["cl"].result_count == 0


# --- Coupons ---------------------------------------------------------------------------------------


def test_deleted_coupons_are_listed_and_filterable(staff_client, fake_stripe, local_rows):
    live = StripeCoupon.objects.create(coupon_id="LIVE", percent_off=Decimal("12.5"), duration="forever")
    gone = StripeCoupon.objects.create(coupon_id="GONE", percent_off=25, duration="once")
    gone.delete()

    response = staff_client.get(changelist_url(StripeCoupon))
    assert {c.coupon_id for c in response.context["cl"].result_list} == {"LOCAL10", "LIVE", "GONE"}
    assert "12.5% off" in response.content.decode()
    response = staff_client.get(changelist_url(StripeCoupon), {"is_deleted__exact": "1"})
    assert [c.coupon_id for c in response.context["cl"].result_list] == ["GONE"]
    # a deleted coupon can be looked at, not changed
    response = staff_client.get(change_url(gone))
    assert response.status_code == 200
    assert response.context["adminform"].form.fields == {}
    # and cannot be picked for a subscription
    response = staff_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "aa_stripe", "model_name": "stripesubscription", "field_name": "coupon", "term": ""},
    )
    assert {row["text"] for row in response.json()["results"]} == {"LOCAL10", str(live)}


def test_adding_a_coupon_creates_it_at_stripe(staff_client, fake_stripe):
    response = staff_client.post(
        reverse("admin:aa_stripe_stripecoupon_add"),
        {"coupon_id": "SPRING", "amount_off": "5.00", "currency": "usd", "duration": "once"},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    coupon = StripeCoupon.objects.get(coupon_id="SPRING")
    assert coupon.is_created_at_stripe
    assert fake_stripe.get("/v1/coupons/SPRING")["amount_off"] == 500

    # later only the metadata is editable, and an edit is pushed to Stripe
    response = staff_client.post(change_url(coupon), {"metadata": '{"campaign": "spring"}'})
    assert response.status_code == 302
    metadata = fake_stripe.get("/v1/coupons/SPRING")["metadata"]
    assert metadata == {"campaign": "spring", "operation": metadata["operation"]}  # the journal's id


def test_coupon_stripe_refuses_is_a_form_error(staff_client, fake_stripe):
    response = staff_client.post(
        reverse("admin:aa_stripe_stripecoupon_add"),
        {"coupon_id": "BAD", "percent_off": "10", "duration": "repeating", "metadata": "{}"},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert errors and errors[0].startswith("Stripe refused the coupon: "), errors
    assert not StripeCoupon.objects.all_with_deleted().filter(coupon_id="BAD").exists()


def test_deleting_a_coupon_deletes_it_at_stripe(staff_client, fake_stripe):
    coupon = StripeCoupon.objects.create(coupon_id="BYE", percent_off=10, duration="once")
    response = staff_client.post(
        reverse("admin:aa_stripe_stripecoupon_delete", args=[coupon.pk]), {"post": 1}
    )
    assert response.status_code == 302
    coupon = StripeCoupon.objects.all_with_deleted().get(pk=coupon.pk)
    assert coupon.is_deleted
    assert fake_stripe.get("/v1/coupons", limit=100)["data"] == []


def test_a_failed_coupon_delete_is_reported_and_not_logged(staff_client, fake_stripe):
    coupon = StripeCoupon.objects.create(coupon_id="STUCK", percent_off=10, duration="once")
    fake_stripe.proxy.inject("status", method="GET", path_prefix="/v1/coupons/STUCK", status=500)
    response = staff_client.post(
        reverse("admin:aa_stripe_stripecoupon_delete", args=[coupon.pk]), {"post": 1}
    )
    assert response.status_code == 302
    assert response.url == change_url(coupon)
    found = [(m.level, m.message) for m in get_messages(response.wsgi_request)]
    assert found == [(messages.ERROR, "Could not delete coupon “STUCK”: Injected 500 from FaultProxy.")]
    assert not StripeCoupon.objects.all_with_deleted().get(pk=coupon.pk).is_deleted
    assert not LogEntry.objects.exists()


def test_a_coupon_whose_answer_was_lost_is_finished_by_submitting_again(staff_client, fake_stripe):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/coupons")
    form = {"coupon_id": "AGAIN", "percent_off": "10", "duration": "once", "metadata": "{}"}

    response = staff_client.post(reverse("admin:aa_stripe_stripecoupon_add"), form)
    assert response.status_code == 200
    [error] = response.context["adminform"].form.non_field_errors()
    assert error.startswith("Stripe did not answer: the coupon may have been made there.")
    assert not StripeCoupon.objects.exists()

    response = staff_client.post(reverse("admin:aa_stripe_stripecoupon_add"), form)
    assert response.status_code == 302
    first, again = fake_stripe.proxy.calls("POST", "/v1/coupons")
    assert again.idempotency_key == first.idempotency_key and again.replayed
    coupon = StripeCoupon.objects.get()
    assert coupon.coupon_id == "AGAIN" and LogEntry.objects.get().object_id == str(coupon.pk)


def test_bulk_delete_logs_only_the_coupons_stripe_deleted(staff_client, fake_stripe):
    gone = StripeCoupon.objects.create(coupon_id="GONE", percent_off=10, duration="once")
    stuck = StripeCoupon.objects.create(coupon_id="STUCK", percent_off=10, duration="once")
    fake_stripe.proxy.inject("status", method="DELETE", path_prefix="/v1/coupons/STUCK", status=400)

    response = staff_client.post(
        changelist_url(StripeCoupon),
        {"action": "delete_selected", "post": "yes", ACTION_CHECKBOX_NAME: [gone.pk, stuck.pk]},
    )

    assert response.status_code == 302
    assert [entry.object_id for entry in LogEntry.objects.all()] == [str(gone.pk)]
    assert list(StripeCoupon.objects.deleted()) == [gone]


@pytest.mark.django_db(transaction=True)
def test_coupon_views_run_outside_a_hosts_atomic_requests(staff_client, fake_stripe, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    seen = []
    original = stripe_api.call

    def observed(service, method, *ids, **kwargs):
        seen.append((f"{service}.{method}", connection.in_atomic_block))
        return original(service, method, *ids, **kwargs)

    def saved(sender, instance, **kwargs):
        seen.append((f"{sender.__name__} saved", connection.in_atomic_block))

    monkeypatch.setattr(stripe_api, "call", observed)
    post_save.connect(saved, sender=StripeSubscriptionPlan)
    try:
        response = staff_client.post(
            reverse("admin:aa_stripe_stripecoupon_add"),
            {"coupon_id": "HOST", "percent_off": "10", "duration": "once", "metadata": "{}"},
        )
        # The control: the setting is in force, other admin pages stay atomic.
        staff_client.post(
            reverse("admin:aa_stripe_stripesubscriptionplan_add"),
            {"name": "Yearly", "amount": "100", "currency": "usd", "interval": "year", "interval_count": "1"}
            | {"trial_period_days": "0", "metadata": "{}", "source": "{}"},
        )
    finally:
        post_save.disconnect(saved, sender=StripeSubscriptionPlan)
    assert response.status_code == 302
    assert seen == [("coupons.create", False), ("StripeSubscriptionPlan saved", True)]


def test_plans_are_locked_while_their_creation_is_unfinished_and_an_action_finishes_them(
    staff_client, fake_stripe
):
    lost = StripeSubscriptionPlan.objects.create(amount=900, name="Lost", interval="month")
    fresh = StripeSubscriptionPlan.objects.create(amount=800, name="Fresh", interval="month")
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/plans")
    with pytest.raises(StripeInternalError):
        lost.create_at_stripe()
    fields = staff_client.get(change_url(lost)).context["adminform"].form.fields
    assert "amount" not in fields and "source" in fields

    found = run_action(staff_client, StripeSubscriptionPlan, "create_at_stripe", [lost, fresh])

    assert found == [(messages.SUCCESS, "Created at Stripe: 2 stripe subscription plans.")]
    sent = fake_stripe.proxy.calls("POST", "/v1/plans")
    assert [call.replayed for call in sent] == [False, True, False]
    assert {plan["id"] for plan in fake_stripe.get("/v1/plans")["data"]} == {
        plan.stripe_plan_id for plan in StripeSubscriptionPlan.objects.filter(is_created_at_stripe=True)
    }
    fresh.refresh_from_db()
    found = run_action(staff_client, StripeSubscriptionPlan, "create_at_stripe", [fresh])
    assert found == [failure(fresh, "create", "This plan is already created at Stripe.")]


# --- Actions ---------------------------------------------------------------------------------------


def test_refund_action(staff_client, fake_stripe, customer, user):
    first, second = charged(user), charged(user, amount=700)

    found = run_action(staff_client, StripeCharge, "refund_charges", [first, second], confirmed="yes")

    assert found == [(messages.SUCCESS, "Refunded 2 stripe charges.")]
    for charge in (first, second):
        charge.refresh_from_db()
        assert charge.is_refunded
        assert charge.amount_refunded == charge.amount
        refund = StripeRefund.objects.get(charge=charge)
        assert refund.stripe_refund_id == charge.stripe_refund_id
        assert fake_stripe.get(f"/v1/refunds/{refund.stripe_refund_id}")["amount"] == charge.amount
    # the refund shows inline on its charge
    assert first.stripe_refund_id in staff_client.get(change_url(first)).content.decode()


def test_refund_action_reports_each_failure_and_carries_on(staff_client, fake_stripe, customer, user):
    not_charged = StripeCharge.objects.create(user=user, amount=300, description="Never charged")
    good = charged(user)

    found = run_action(staff_client, StripeCharge, "refund_charges", [not_charged, good], confirmed="yes")

    assert found == [
        failure(not_charged, "refund", "Cannot refund not charged transaction."),
        (messages.SUCCESS, "Refunded 1 stripe charge."),
    ]
    good.refresh_from_db()
    assert good.is_refunded
    assert not StripeRefund.objects.filter(charge=not_charged).exists()

    # refunding again: Stripe is not called, the row says why
    found = run_action(staff_client, StripeCharge, "refund_charges", [good], confirmed="yes")
    assert found == [failure(good, "refund", "Already refunded.")]


def test_charge_action(staff_client, fake_stripe, customer, user, other_user):
    make_customer(fake_stripe, other_user, DECLINED_ON_CHARGE)
    good = StripeCharge.objects.create(user=user, amount=500, description="x")
    declined = StripeCharge.objects.create(user=other_user, amount=500, description="y")
    nobody = get_user_model().objects.create_user(username="carol", email="carol@example.com")
    no_customer = StripeCharge.objects.create(user=nobody, amount=500, description="z")

    found = run_action(staff_client, StripeCharge, "charge_now", [good, declined, no_customer])

    declined.refresh_from_db()
    assert found == [
        failure(declined, "charge", "The card was declined (generic_decline): Your card was declined."),
        failure(no_customer, "charge", "The user has no active Stripe customer."),
        (messages.SUCCESS, "Charged 1 stripe charge."),
    ]
    assert declined.charge_attempt_failed
    good.refresh_from_db()
    assert good.is_charged
    assert fake_stripe.get(f"/v1/charges/{good.stripe_charge_id}")["amount"] == 500


@pytest.fixture
def subscription(fake_stripe, customer, plan, user):
    subscription = StripeSubscription.objects.create(user=user, plan=plan)
    subscription.create_at_stripe()
    return subscription


def test_cancel_at_period_end_action(staff_client, fake_stripe, subscription):
    found = run_action(staff_client, StripeSubscription, "cancel_at_period_end", [subscription])

    assert found == [(messages.SUCCESS, "Set to cancel at the period end: 1 stripe subscription.")]
    subscription.refresh_from_db()
    assert subscription.at_period_end
    assert subscription.status == StripeSubscription.STATUS_ACTIVE
    at_stripe = fake_stripe.get(f"/v1/subscriptions/{subscription.stripe_subscription_id}")
    assert at_stripe["cancel_at_period_end"] is True

    found = run_action(staff_client, StripeSubscription, "cancel_at_period_end", [subscription])
    assert found == [
        failure(subscription, "cancel", "The subscription is already set to end at the period end.")
    ]


def test_cancel_now_action(staff_client, fake_stripe, subscription, plan, user):
    not_at_stripe = StripeSubscription.objects.create(user=user, plan=plan)

    found = run_action(staff_client, StripeSubscription, "cancel_now", [subscription, not_at_stripe])

    assert found[1] == (messages.SUCCESS, "Canceled 1 stripe subscription.")
    assert found[0] == failure(not_at_stripe, "cancel", "This subscription is not created at Stripe yet.")
    subscription.refresh_from_db()
    assert subscription.status == StripeSubscription.STATUS_CANCELED
    assert subscription.canceled_at is not None
    at_stripe = fake_stripe.get(f"/v1/subscriptions/{subscription.stripe_subscription_id}")
    assert at_stripe["status"] == "canceled"


def test_refresh_subscriptions_action(staff_client, fake_stripe, subscription):
    StripeSubscription.objects.filter(pk=subscription.pk).update(status="past_due")

    found = run_action(staff_client, StripeSubscription, "refresh_from_stripe", [subscription])

    assert found == [(messages.SUCCESS, "Refreshed 1 stripe subscription.")]
    subscription.refresh_from_db()
    assert subscription.status == StripeSubscription.STATUS_ACTIVE


def test_refresh_customers_action(staff_client, fake_stripe, customer, other_user):
    StripeCustomer.objects.filter(pk=customer.pk).update(sources=[], default_source="")
    missing = StripeCustomer.objects.create(
        user=other_user, stripe_customer_id="cus_missing", is_created_at_stripe=True
    )
    never_created = StripeCustomer.objects.create(user=other_user)

    found = run_action(
        staff_client, StripeCustomer, "refresh_from_stripe", [customer, missing, never_created]
    )

    assert found[2] == (messages.SUCCESS, "Refreshed 1 stripe customer.")
    assert found[0][0] == messages.ERROR
    assert found[0][1].startswith(f"Could not refresh stripe customer #{missing.pk} “cus_missing”: ")
    assert "cus_missing" in found[0][1]  # Stripe's "No such customer" message
    assert found[1] == failure(never_created, "refresh", "This customer is not created at Stripe yet.")
    customer.refresh_from_db()
    assert customer.default_source.startswith("card_")
    assert len(customer.sources) == 1
    missing.refresh_from_db()
    assert not missing.is_active  # Stripe no longer knows it


def test_other_errors_propagate(staff_client, user, monkeypatch):
    charge = StripeCharge.objects.create(user=user, amount=500, description="x")

    def broken(self, *args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(StripeCharge, "refund", broken)
    staff_client.raise_request_exception = True
    with pytest.raises(RuntimeError, match="bug"):
        run_action(staff_client, StripeCharge, "refund_charges", [charge], confirmed="yes")


def test_cleared_json_boxes_save_the_default_not_null(staff_client):
    response = staff_client.post(
        reverse("admin:aa_stripe_stripesubscriptionplan_add"),
        {"name": "Yearly", "amount": "100", "currency": "usd", "interval": "year", "interval_count": "1"}
        | {"trial_period_days": "0", "metadata": "", "source": ""},
    )
    assert response.status_code == 302
    plan = StripeSubscriptionPlan.objects.get(name="Yearly")
    assert (plan.metadata, plan.source, plan.is_created_at_stripe) == ({}, {}, False)


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
