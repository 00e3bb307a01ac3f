"""The admin shows saved payment methods and SetupIntents read-only, and never a client secret."""

from __future__ import annotations

import pytest
from django.urls import reverse

from aa_stripe.models import StripeCustomer, StripePaymentMethod, StripeSetupIntent
from tests.test_payment_methods import confirm_setup

pytestmark = pytest.mark.django_db


@pytest.fixture
def saved(fake_stripe, user) -> tuple[StripeSetupIntent, str]:
    customer = StripeCustomer.get_or_create_for_user(user)
    intent = StripeSetupIntent.create_for_customer(customer)
    secret = intent.client_secret_for_owner()
    confirm_setup(fake_stripe, intent)
    intent.complete()
    return intent, secret


def test_customer_page_lists_the_saved_card_and_the_default(staff_client, saved):
    intent, _secret = saved
    response = staff_client.get(reverse("admin:aa_stripe_stripecustomer_change", args=[intent.customer_id]))

    assert response.status_code == 200
    method = StripePaymentMethod.objects.get()
    assert method.stripe_payment_method_id in response.content.decode()
    listed = staff_client.get(reverse("admin:aa_stripe_stripecustomer_changelist")).content.decode()
    assert "visa •••• 4242" in listed


def test_payment_method_and_setup_intent_pages_are_read_only_and_hold_no_secret(staff_client, saved):
    intent, secret = saved
    method = StripePaymentMethod.objects.get()
    pages = [
        reverse("admin:aa_stripe_stripepaymentmethod_changelist"),
        reverse("admin:aa_stripe_stripepaymentmethod_change", args=[method.pk]),
        reverse("admin:aa_stripe_stripesetupintent_changelist"),
        reverse("admin:aa_stripe_stripesetupintent_change", args=[intent.pk]),
        reverse("admin:aa_stripe_stripeoperation_changelist"),
    ]
    for page in pages:
        response = staff_client.get(page)
        assert response.status_code == 200, page
        assert secret not in response.content.decode(), page
    change = staff_client.get(pages[1]).content.decode()
    assert "12/2030" in change or "2030" in change
    assert staff_client.get(reverse("admin:aa_stripe_stripepaymentmethod_add")).status_code == 403


def test_refresh_action_removes_a_method_detached_at_stripe(staff_client, saved, fake_stripe):
    from tests.test_payment_methods import _post

    method = StripePaymentMethod.objects.get()
    _post(fake_stripe, f"/v1/payment_methods/{method.stripe_payment_method_id}/detach")

    response = staff_client.post(
        reverse("admin:aa_stripe_stripepaymentmethod_changelist"),
        {"action": "refresh_from_stripe", "_selected_action": [method.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert not StripePaymentMethod.objects.exists()
