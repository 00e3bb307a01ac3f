"""StripeCharge.refund(): never more than charged, partial refunds add up, a lost answer replays."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aa_stripe.exceptions import StripeInternalError, StripeInvalidInput, StripeMethodNotAllowed
from aa_stripe.models import StripeCharge, StripeRefund
from aa_stripe.signals import stripe_charge_refunded

pytestmark = pytest.mark.django_db


@pytest.fixture
def refunded_signals():
    received = []

    def on_refund(sender, instance, **kwargs):
        received.append((instance.pk, instance.amount_refunded))

    stripe_charge_refunded.connect(on_refund, sender=StripeCharge)
    yield received
    stripe_charge_refunded.disconnect(on_refund, sender=StripeCharge)


def refunds_at_fake(fake_stripe, charge) -> int:
    return fake_stripe.get(f"/v1/charges/{charge.stripe_charge_id}")["amount_refunded"]


def test_full_refund(fake_stripe, charged, refunded_signals):
    result = charged.refund()

    charged.refresh_from_db()
    assert charged.is_refunded and charged.amount_refunded == 1000
    assert charged.stripe_refund_id == result["id"]
    [refund] = charged.refunds.all()
    assert (refund.amount, refund.currency, refund.stripe_refund_id) == (1000, "usd", result["id"])
    assert refunds_at_fake(fake_stripe, charged) == 1000
    assert refunded_signals == [(charged.pk, 1000)]


def test_partial_refunds_add_up_and_never_exceed_the_charge(fake_stripe, charged, refunded_signals):
    charged.refund(300)
    charged.refund(amount=300)  # the same amount again is a new refund, not a replay

    with pytest.raises(StripeMethodNotAllowed, match="exceed"):
        charged.refund(401)

    charged.refund()  # the rest
    charged.refresh_from_db()
    assert charged.amount_refunded == 1000 and charged.is_refunded
    assert list(charged.refunds.values_list("amount", flat=True)) == [300, 300, 400]
    assert refunds_at_fake(fake_stripe, charged) == 1000
    keys = [c.idempotency_key for c in fake_stripe.proxy.calls("POST", "/v1/refunds")]
    assert keys == [
        f"refund:{charged.uuid}:0:300",
        f"refund:{charged.uuid}:300:300",
        f"refund:{charged.uuid}:600:400",
    ]
    assert refunded_signals == [(charged.pk, 300), (charged.pk, 600), (charged.pk, 1000)]
    with pytest.raises(StripeMethodNotAllowed, match="Already refunded"):
        charged.refund()


@pytest.mark.parametrize("amount", [0, -100])
def test_non_positive_amounts_are_refused(fake_stripe, charged, amount):
    with pytest.raises(StripeInvalidInput, match="positive"):
        charged.refund(amount)
    assert fake_stripe.proxy.calls("POST", "/v1/refunds") == []


def test_a_charge_that_was_not_charged_cannot_be_refunded(fake_stripe, customer, user):
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Not yet")
    with pytest.raises(StripeMethodNotAllowed, match="not charged"):
        charge.refund()
    assert not StripeRefund.objects.exists()


def test_conflicting_amount_arguments_are_refused(fake_stripe, charged):
    with pytest.raises(ValueError, match="either"):
        charged.refund(100, amount=200)


def test_lost_answer_replays_and_never_refunds_twice(fake_stripe, charged, refunded_signals):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/refunds")

    with pytest.raises(StripeInternalError):
        charged.refund(400)

    charged.refresh_from_db()
    assert charged.amount_refunded == 0 and not StripeRefund.objects.exists()
    assert refunds_at_fake(fake_stripe, charged) == 400  # Stripe did refund
    assert refunded_signals == []

    charged.refund(400)

    charged.refresh_from_db()
    assert charged.amount_refunded == 400
    assert refunds_at_fake(fake_stripe, charged) == 400  # replayed, not refunded twice
    first, retry = fake_stripe.proxy.calls("POST", "/v1/refunds")
    assert first.idempotency_key == retry.idempotency_key and retry.replayed
    assert StripeRefund.objects.count() == 1
    assert refunded_signals == [(charged.pk, 400)]


def test_stale_in_memory_copy_cannot_over_refund(fake_stripe, charged):
    stale = StripeCharge.objects.get(pk=charged.pk)
    charged.refund(800)

    with pytest.raises(StripeMethodNotAllowed, match="exceed"):
        stale.refund(800)  # the row lock reloads amount_refunded first

    assert refunds_at_fake(fake_stripe, charged) == 800


# --- input limits: refused before Stripe ----------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        (1.5, "invalid_amount"),  # refused, never truncated to 1
        (0.5, "invalid_amount"),
        (True, "invalid_amount"),
        ("100", "invalid_amount"),
        (-1, "min_value"),
        (100_000_000, "max_value"),
    ],
)
def test_invalid_refund_amounts_are_refused_before_stripe(
    fake_stripe, charged, refunded_signals, amount, code
):
    fake_stripe.proxy.reset()

    with pytest.raises(StripeInvalidInput) as excinfo:
        charged.refund(amount)

    assert (excinfo.value.field, excinfo.value.code) == ("amount", code)
    assert fake_stripe.proxy.calls() == []
    charged.refresh_from_db()
    assert (charged.amount_refunded, charged.pending_refund_amount, charged.is_refunded) == (0, None, False)
    assert not StripeRefund.objects.exists() and refunded_signals == []


def test_refund_of_one_and_a_half_cents_is_refused_by_keyword_too(fake_stripe, charged):
    with pytest.raises(StripeInvalidInput, match=r"1\.5"):
        charged.refund(amount=1.5)
    assert fake_stripe.proxy.calls("POST", "/v1/refunds") == []


def test_a_whole_decimal_amount_is_refunded_as_an_integer(fake_stripe, charged):
    charged.refund(Decimal("300"))

    [sent] = fake_stripe.proxy.calls("POST", "/v1/refunds")
    assert sent.params["amount"] == "300"
    charged.refresh_from_db()
    assert charged.amount_refunded == 300
    assert type(charged.refunds.get().amount) is int


def test_refunds_follow_the_currencys_step(fake_stripe, customer, user):
    charge = StripeCharge.objects.create(user=user, amount=10_000, currency="isk", description="ISK 100")
    charge.charge()

    with pytest.raises(StripeInvalidInput, match="multiples of 100"):
        charge.refund(150)  # 1.50 kr: Stripe takes whole krónur only
    assert fake_stripe.proxy.calls("POST", "/v1/refunds") == []

    charge.refund(200)
    charge.refresh_from_db()
    assert charge.amount_refunded == 200


def test_more_than_what_is_left_is_still_not_allowed(fake_stripe, charged):
    with pytest.raises(StripeMethodNotAllowed, match="exceed"):
        charged.refund(1001)
    assert fake_stripe.proxy.calls("POST", "/v1/refunds") == []


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""


def test_refunding_the_rest_while_another_refund_is_being_sent_is_told_to_wait(fake_stripe, charged):
    """Another request planned a partial refund and is about to send it: "refund the rest" must not
    take that refund over and answer as if the rest were refunded (the PostgreSQL race test found
    a row ending at two partial refunds while every "refund the rest" had been answered done)."""
    from aa_stripe.exceptions import StripeOperationInProgress
    from aa_stripe.operations import journal

    in_flight = charged._plan_refund(300)  # the other request, between its plan and its send

    with pytest.raises(StripeOperationInProgress):
        charged.refund()

    journal.execute(in_flight, target=charged)  # the other request sends it
    charged.refresh_from_db()
    charged.refund()  # asked again: the rest

    charged.refresh_from_db()
    assert sorted(charged.refunds.values_list("amount", flat=True)) == [300, charged.amount - 300]
    assert charged.amount_refunded == charged.amount
