"""payment_method.*, setup_intent.* and customer.updated events keep saved payment methods true, in
any order and any number of times. Events are Stripe's canonical objects, signed and POSTed to the
webhook URL (the fake sends only some of them)."""

from __future__ import annotations

from typing import Any

import pytest

from aa_stripe.models import (
    StripeCustomer,
    StripePaymentMethod,
    StripeSetupIntent,
    StripeTombstone,
    StripeWebhook,
)
from aa_stripe.testing import make_event
from tests.stripe_fixtures import stripe_object
from tests.test_webhook_handlers import deliver, deliver_again, now

pytestmark = pytest.mark.django_db


@pytest.fixture
def known(user: Any) -> StripeCustomer:
    return StripeCustomer.objects.create(user=user, stripe_customer_id="cus_known", is_created_at_stripe=True)


def method(**overrides: Any) -> dict[str, Any]:
    return stripe_object("payment_method", **{"id": "pm_one", "customer": "cus_known", **overrides})


def event(event_type: str, data: dict[str, Any], at: int, **extra: Any) -> dict[str, Any]:
    made = make_event(event_type, data, created=at)
    made["data"].update(extra)
    return made


def test_attached_mirrors_the_card(client, known):
    deliver(client, event("payment_method.attached", method(), now()))

    row = StripePaymentMethod.objects.get()
    assert (row.customer, row.stripe_payment_method_id, row.type) == (known, "pm_one", "card")
    assert (row.card_brand, row.card_last4, row.card_exp_month, row.card_exp_year) == (
        "visa",
        "4242",
        8,
        2030,
    )
    assert (row.card_country, row.card_funding) == ("US", "credit")
    assert not row.is_default


def test_attached_to_a_customer_we_do_not_know_creates_nothing(client, known):
    webhook = deliver(client, event("payment_method.attached", method(customer="cus_stranger"), now()))

    assert webhook.is_parsed and not StripePaymentMethod.objects.exists()


def test_an_update_older_than_the_applied_one_is_skipped(client, known):
    t = now()
    deliver(client, event("payment_method.updated", method(card={**method()["card"], "exp_year": 2031}), t))
    deliver(client, event("payment_method.attached", method(), t - 5))

    assert StripePaymentMethod.objects.get().card_exp_year == 2031


def test_detached_removes_the_row_and_a_late_attached_cannot_bring_it_back(client, known):
    t = now()
    deliver(client, event("payment_method.attached", method(), t - 10))
    known.default_payment_method = "pm_one"
    known.save()

    deliver(
        client,
        event(
            "payment_method.detached", method(customer=None), t, previous_attributes={"customer": "cus_known"}
        ),
    )
    deliver(client, event("payment_method.attached", method(), t - 10))
    deliver(client, event("payment_method.updated", method(), t + 5))

    assert not StripePaymentMethod.objects.exists()
    known.refresh_from_db()
    assert known.default_payment_method == ""
    assert StripeTombstone.objects.filter(object_type="payment_method", stripe_id="pm_one").exists()


def test_detached_before_attached_arrives_leaves_nothing(client, known):
    t = now()
    deliver(
        client,
        event(
            "payment_method.detached", method(customer=None), t, previous_attributes={"customer": "cus_known"}
        ),
    )
    deliver(client, event("payment_method.attached", method(), t - 1))

    assert not StripePaymentMethod.objects.exists()


def test_the_same_event_twice_changes_nothing_more(client, fake_stripe, user):
    from tests.test_payment_methods import _post, card_payment_method

    customer = StripeCustomer.get_or_create_for_user(user)
    pm = card_payment_method(fake_stripe)
    attached = _post(
        fake_stripe, f"/v1/payment_methods/{pm}/attach", {"customer": customer.stripe_customer_id}
    )
    delivered = event("payment_method.attached", attached, now())
    deliver(client, delivered)
    first = StripePaymentMethod.objects.get()

    deliver_again(client, delivered)  # a tie: the current method is read from Stripe

    again = StripePaymentMethod.objects.get()
    assert (again.pk, again.card_last4, again.customer) == (first.pk, "4242", customer)


def test_a_tie_after_a_detach_at_stripe_removes_the_row(client, known, fake_stripe):
    delivered = event("payment_method.attached", method(), now())
    deliver(client, delivered)

    deliver_again(client, delivered)  # Stripe (the fake) has no pm_one: gone

    assert not StripePaymentMethod.objects.exists()


def test_customer_updated_sets_the_default_payment_method(client, known):
    deliver(client, event("payment_method.attached", method(), now() - 5))
    customer = stripe_object(
        "customer", id="cus_known", invoice_settings={"default_payment_method": "pm_one"}, default_source=None
    )

    deliver(client, event("customer.updated", customer, now()))

    known.refresh_from_db()
    assert known.default_payment_method == "pm_one"
    assert StripePaymentMethod.objects.get().is_default


def test_setup_intent_events_follow_the_row_and_a_success_mirrors_the_method(client, known, fake_stripe):
    intent = StripeSetupIntent.objects.create(
        customer=known, stripe_setup_intent_id="seti_one", status="requires_payment_method"
    )
    t = now()
    expanded = method()
    succeeded = stripe_object(
        "setup_intent",
        id="seti_one",
        customer="cus_known",
        status="succeeded",
        payment_method=expanded,
        client_secret="seti_one_secret_abc",
    )
    waiting = {**succeeded, "status": "requires_action", "payment_method": "pm_one"}

    deliver(client, event("setup_intent.succeeded", succeeded, t))
    deliver(client, event("setup_intent.requires_action", waiting, t - 3))

    intent.refresh_from_db()
    assert (intent.status, intent.payment_method) == ("succeeded", "pm_one")
    assert StripePaymentMethod.objects.get().customer == known
    assert "seti_one_secret_abc" not in str(StripeWebhook.objects.values_list("raw_data", flat=True))


def test_setup_failed_records_the_reason_and_saves_nothing(client, known):
    intent = StripeSetupIntent.objects.create(
        customer=known, stripe_setup_intent_id="seti_one", status="requires_action"
    )
    failed = stripe_object(
        "setup_intent",
        id="seti_one",
        customer="cus_known",
        status="requires_payment_method",
        payment_method=None,
        last_setup_error={
            "code": "setup_intent_authentication_failure",
            "message": "failed",
            "type": "card_error",
        },
    )

    deliver(client, event("setup_intent.setup_failed", failed, now()))

    intent.refresh_from_db()
    assert (intent.status, intent.failure_code) == (
        "requires_payment_method",
        "setup_intent_authentication_failure",
    )
    assert not StripePaymentMethod.objects.exists()


def test_a_succeeded_setup_intent_whose_method_stripe_does_not_have_creates_nothing(
    client, known, fake_stripe
):
    succeeded = stripe_object(
        "setup_intent", id="seti_other", customer="cus_known", status="succeeded", payment_method="pm_missing"
    )

    webhook = deliver(client, event("setup_intent.succeeded", succeeded, now()))

    assert webhook.is_parsed and not StripePaymentMethod.objects.exists()


def test_a_late_customer_event_older_than_our_write_cannot_undo_the_default(client, fake_stripe, user):
    # Found by the demo's browser test: a card saved and made the default, then customer.created
    # (made by Stripe a second before, with no default yet) arrived and cleared the default here; the
    # next saved card then became the default at Stripe. An event that may predate a write of ours to
    # the same object is read from Stripe instead of applied.
    from tests.test_payment_methods import _post, card_payment_method

    customer = StripeCustomer.get_or_create_for_user(user)
    created_event = event(
        "customer.created", fake_stripe.get(f"/v1/customers/{customer.stripe_customer_id}"), now() - 1
    )
    pm = card_payment_method(fake_stripe)
    _post(fake_stripe, f"/v1/payment_methods/{pm}/attach", {"customer": customer.stripe_customer_id})
    deliver(client, event("payment_method.attached", fake_stripe.get(f"/v1/payment_methods/{pm}"), now() - 1))
    StripePaymentMethod.objects.get(stripe_payment_method_id=pm).set_as_default()

    deliver(client, created_event)  # Stripe's event of the creation, delivered late

    customer.refresh_from_db()
    assert customer.default_payment_method == pm
    assert StripePaymentMethod.objects.get().is_default
