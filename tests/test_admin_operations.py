"""The admin's view of the operations journal, and "Refund selected" with its confirmation page."""

from __future__ import annotations

import pytest
from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from aa_stripe.models import StripeCharge, StripeOperation
from aa_stripe.operations import journal

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:aa_stripe_stripecharge_changelist")


def charged_row(user, amount: int = 1000) -> StripeCharge:
    charge = StripeCharge.objects.create(user=user, amount=amount, description="Order")
    charge.charge()
    return charge


def test_refund_selected_asks_first_showing_each_charge_and_its_amount(
    staff_client, fake_stripe, customer, user
):
    first, second = charged_row(user), charged_row(user, amount=700)
    first.refund(200)
    fake_stripe.proxy.reset()

    page = staff_client.post(
        CHANGELIST, {"action": "refund_charges", ACTION_CHECKBOX_NAME: [first.pk, second.pk]}
    )

    assert page.status_code == 200 and "Yes, refund" in page.content.decode()
    text = page.content.decode()
    assert "<strong>8.00 USD</strong>" in text and "<strong>7.00 USD</strong>" in text  # 1000 - 200, and 700
    assert fake_stripe.proxy.calls("POST", "/v1/refunds") == []  # nothing done yet

    done = staff_client.post(
        CHANGELIST,
        {"action": "refund_charges", "confirmed": "yes", ACTION_CHECKBOX_NAME: [first.pk, second.pk]},
        follow=True,
    )

    assert [(m.level, m.message) for m in done.context["messages"]] == [
        (messages.SUCCESS, "Refunded 2 stripe charges.")
    ]
    assert len(fake_stripe.proxy.calls("POST", "/v1/refunds")) == 2
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.is_refunded and second.is_refunded


def test_a_refund_in_progress_is_reported_for_its_row_and_the_others_go_on(
    staff_client, fake_stripe, customer, user
):
    busy, free = charged_row(user), charged_row(user, amount=500)
    operation = journal.plan(
        busy, kind="refund", service="refunds", method="create", params={}, key=f"refund:{busy.uuid}:0:1000"
    )
    StripeCharge.objects.filter(pk=busy.pk).update(pending_refund_amount=1000)
    journal.claim(operation)  # another worker is sending it

    done = staff_client.post(
        CHANGELIST,
        {"action": "refund_charges", "confirmed": "yes", ACTION_CHECKBOX_NAME: [busy.pk, free.pk]},
        follow=True,
    )

    found = [(m.level, m.message) for m in done.context["messages"]]
    assert any(level == messages.ERROR and "in progress" in text for level, text in found), found
    assert (messages.SUCCESS, "Refunded 1 stripe charge.") in found
    free.refresh_from_db()
    assert free.is_refunded


def test_the_charge_page_links_to_its_operations_and_the_list_filters_on_them(
    staff_client, fake_stripe, customer, user
):
    charge = charged_row(user)
    other = charged_row(user, amount=500)
    charge.refund(100)

    page = staff_client.get(reverse("admin:aa_stripe_stripecharge_change", args=[charge.pk])).content.decode()

    assert "2 operations" in page
    url = reverse("admin:aa_stripe_stripeoperation_changelist")
    listed = staff_client.get(
        url,
        {
            "object_id__exact": str(charge.pk),
            # (object ids repeat across models: the customer's operations may share this one)
            "content_type__id__exact": str(ContentType.objects.get_for_model(StripeCharge).pk),
        },
    )
    assert listed.status_code == 200
    keys = {op.key for op in listed.context["cl"].result_list}
    assert keys == set(
        StripeOperation.objects.filter(
            object_id=str(charge.pk), kind__in=["payment_intent", "refund"]
        ).values_list("key", flat=True)
    )
    assert other.idempotency_key not in keys
    searched = staff_client.get(url, {"q": charge.payment_intent_id})  # what the operation made
    assert [op.key for op in searched.context["cl"].result_list] == [charge.idempotency_key]
    assert staff_client.get(reverse("admin:aa_stripe_stripeoperation_add")).status_code == 403


def test_subscription_coupon_and_plan_pages_link_to_their_operations(
    staff_client, fake_stripe, customer, user, plan
):
    from aa_stripe.models import StripeCoupon, StripeSubscription

    subscription = StripeSubscription.objects.create(user=user, plan=plan)
    subscription.create_at_stripe()
    coupon = StripeCoupon.objects.create(coupon_id="LINKED", duration="once", percent_off=5)

    for name, obj in (
        ("stripesubscription", subscription),
        ("stripecoupon", coupon),
        ("stripesubscriptionplan", plan),
    ):
        page = staff_client.get(reverse(f"admin:aa_stripe_{name}_change", args=[obj.pk])).content.decode()
        assert "1 operation<" in page and "stripeoperation/?content_type__id__exact=" in page, name
