"""StripeCoupon against the fake Stripe server: create, update metadata, delete, adopt, apply data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest.mock import ANY

import pytest
from django.utils import timezone

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    StripeCouponAlreadyExists,
    StripeInvalidRequestError,
    StripeMethodNotAllowed,
)
from aa_stripe.models import StripeCoupon, StripeOperation, StripeSubscription

pytestmark = pytest.mark.django_db


def sale10(**fields) -> StripeCoupon:
    values = {"coupon_id": "SALE10", "duration": StripeCoupon.DURATION_FOREVER, "currency": "usd"}
    if "percent_off" not in fields:
        values["amount_off"] = 10
    return StripeCoupon.objects.create(**{**values, **fields})


def at_fake(coupon_id: str) -> dict:
    return stripe_api.call("coupons", "retrieve", coupon_id)


def assert_gone_at_fake(coupon_id: str) -> None:
    with pytest.raises(StripeInvalidRequestError) as excinfo:
        at_fake(coupon_id)
    assert excinfo.value.http_status == 404


# --- create -----------------------------------------------------------------------------------


def test_create_sends_amount_off_in_minor_units(fake_stripe):
    coupon = sale10()

    stripe_coupon = at_fake("SALE10")
    assert (stripe_coupon["amount_off"], stripe_coupon["currency"]) == (1000, "usd")
    assert stripe_coupon["duration"] == "forever"
    assert stripe_coupon["percent_off"] is None
    (sent,) = fake_stripe.proxy.calls("POST", "/v1/coupons")
    assert sent.params["amount_off"] == "1000"
    assert "percent_off" not in sent.params

    coupon.refresh_from_db()
    assert coupon.is_created_at_stripe is True
    assert coupon.is_deleted is False
    assert coupon.amount_off == Decimal("10")
    assert coupon.valid is True
    assert coupon.created == datetime.fromtimestamp(stripe_coupon["created"], tz=UTC)
    assert coupon.stripe_response["id"] == "SALE10"


def test_jpy_amount_off_is_not_multiplied(fake_stripe):
    coupon = sale10(coupon_id="YEN500", currency="jpy", amount_off=500)

    assert at_fake("YEN500")["amount_off"] == 500
    coupon.refresh_from_db()
    assert coupon.amount_off == Decimal("500")


def test_amount_off_with_cents(fake_stripe):
    sale10(coupon_id="CENTS", amount_off=Decimal("9.99"))

    assert at_fake("CENTS")["amount_off"] == 999


def test_amount_off_with_more_decimals_than_the_currency_is_refused(fake_stripe):
    with pytest.raises(ValueError, match="decimals"):
        sale10(amount_off=Decimal("9.995"))

    assert fake_stripe.proxy.calls("POST", "/v1/coupons") == []
    assert StripeCoupon.objects.all_with_deleted().count() == 0


def test_percent_off(fake_stripe):
    coupon = sale10(coupon_id="PCT", currency=None, percent_off=Decimal("12.5"))

    stripe_coupon = at_fake("PCT")
    assert stripe_coupon["percent_off"] == 12.5
    assert stripe_coupon["amount_off"] is None
    assert fake_stripe.proxy.calls("POST", "/v1/coupons")[0].params["percent_off"] == "12.5"
    coupon.refresh_from_db()
    assert coupon.percent_off == Decimal("12.5")
    assert coupon.amount_off is None


def test_repeating_duration_with_months(fake_stripe):
    coupon = sale10(coupon_id="THREEMONTHS", duration=StripeCoupon.DURATION_REPEATING, duration_in_months=3)

    stripe_coupon = at_fake("THREEMONTHS")
    assert (stripe_coupon["duration"], stripe_coupon["duration_in_months"]) == ("repeating", 3)
    coupon.refresh_from_db()
    assert coupon.duration_in_months == 3


def test_max_redemptions_and_redeem_by(fake_stripe):
    redeem_by = (timezone.now() + timedelta(days=30)).replace(microsecond=0)

    coupon = sale10(coupon_id="LIMITED", max_redemptions=5, redeem_by=redeem_by)

    stripe_coupon = at_fake("LIMITED")
    assert stripe_coupon["max_redemptions"] == 5
    assert stripe_coupon["redeem_by"] == int(redeem_by.timestamp())
    assert stripe_coupon["valid"] is True
    coupon.refresh_from_db()
    assert (coupon.max_redemptions, coupon.redeem_by) == (5, redeem_by)


def test_stripe_generates_the_id_when_none_is_given(fake_stripe):
    coupon = sale10(coupon_id="")

    assert coupon.coupon_id
    assert "id" not in fake_stripe.proxy.calls("POST", "/v1/coupons")[0].params
    assert at_fake(coupon.coupon_id)["amount_off"] == 1000


def test_a_duplicate_live_coupon_id_is_refused(fake_stripe):
    sale10()

    with pytest.raises(StripeCouponAlreadyExists):
        sale10(amount_off=20)

    assert len(fake_stripe.proxy.calls("POST", "/v1/coupons")) == 1
    assert StripeCoupon.objects.all_with_deleted().count() == 1
    assert at_fake("SALE10")["amount_off"] == 1000


def test_a_deleted_coupon_id_can_be_used_again(fake_stripe):
    old = sale10()
    old.delete()

    new = sale10(amount_off=20)

    assert at_fake("SALE10")["amount_off"] == 2000
    assert list(StripeCoupon.objects.all()) == [new]
    assert list(StripeCoupon.objects.deleted()) == [old]


def test_coupon_refused_by_stripe_leaves_no_row(fake_stripe):
    # repeating needs duration_in_months
    with pytest.raises(StripeInvalidRequestError):
        sale10(duration=StripeCoupon.DURATION_REPEATING)

    assert StripeCoupon.objects.all_with_deleted().count() == 0


# --- later saves ------------------------------------------------------------------------------


def test_metadata_change_is_pushed_to_stripe(fake_stripe):
    coupon = sale10(metadata={"campaign": "spring"})
    coupon.metadata = {"campaign": "summer", "owner": "marketing"}

    coupon.save()

    [update] = fake_stripe.proxy.calls("POST", "/v1/coupons/SALE10")
    operation = StripeOperation.objects.get(kind="coupon.update")
    sent = {"metadata[campaign]": "summer", "metadata[owner]": "marketing"}
    assert update.params == {**sent, "metadata[operation]": str(operation.uuid)}
    assert update.idempotency_key == operation.key == f"coupon:{coupon.pk}:update:1"
    # The journal's key is kept at Stripe, not in the row: the row's metadata is the host's.
    assert at_fake("SALE10")["metadata"] == {"campaign": "summer", "owner": "marketing", "operation": ANY}
    coupon.refresh_from_db()
    assert coupon.metadata == {"campaign": "summer", "owner": "marketing"}
    assert coupon.stripe_response["metadata"]["campaign"] == "summer"


def test_save_without_changes_calls_nothing(fake_stripe):
    coupon = sale10()
    calls_before = len(fake_stripe.proxy.calls())

    coupon.save()
    StripeCoupon.objects.get(pk=coupon.pk).save()

    assert len(fake_stripe.proxy.calls()) == calls_before


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount_off", Decimal("20")), ("currency", "eur"), ("duration", "once"), ("max_redemptions", 3)],
)
def test_changing_what_stripe_cannot_change_is_refused(fake_stripe, field, value):
    coupon = sale10()
    setattr(coupon, field, value)

    with pytest.raises(StripeMethodNotAllowed, match=field):
        coupon.save()

    assert fake_stripe.proxy.calls("POST", "/v1/coupons/SALE10") == []
    assert at_fake("SALE10")["amount_off"] == 1000
    assert StripeCoupon.objects.get(pk=coupon.pk).amount_off == Decimal("10")


def test_changing_amount_off_of_a_reloaded_coupon_is_refused(fake_stripe):
    sale10()
    coupon = StripeCoupon.objects.get(coupon_id="SALE10")
    coupon.amount_off = 15

    with pytest.raises(StripeMethodNotAllowed):
        coupon.save()

    assert at_fake("SALE10")["amount_off"] == 1000


# --- delete -----------------------------------------------------------------------------------


def test_delete_deletes_at_stripe_and_keeps_the_row(fake_stripe):
    coupon = sale10()

    coupon.delete()

    assert_gone_at_fake("SALE10")
    assert len(fake_stripe.proxy.calls("DELETE", "/v1/coupons/SALE10")) == 1
    assert coupon.is_deleted is True
    coupon.refresh_from_db()
    assert coupon.is_deleted is True
    assert not StripeCoupon.objects.filter(pk=coupon.pk).exists()
    assert list(StripeCoupon.objects.all_with_deleted()) == [coupon]
    assert list(StripeCoupon.objects.deleted()) == [coupon]


def test_delete_twice_calls_stripe_once(fake_stripe):
    coupon = sale10()
    coupon.delete()

    coupon.delete()

    assert len(fake_stripe.proxy.calls("DELETE", "/v1/coupons/SALE10")) == 1


def test_setting_is_deleted_and_saving_deletes_at_stripe(fake_stripe):
    coupon = sale10()
    coupon.is_deleted = True

    coupon.save()

    assert_gone_at_fake("SALE10")
    assert list(StripeCoupon.objects.deleted()) == [coupon]


def test_delete_leaves_a_coupon_recreated_at_stripe_alone(fake_stripe):
    coupon = sale10()
    # Our row's coupon is an older SALE10 than the one Stripe holds now (deleted and re-created there).
    StripeCoupon.objects.filter(pk=coupon.pk).update(created=datetime(2020, 1, 1, tzinfo=UTC))
    coupon.refresh_from_db()

    coupon.delete()

    assert fake_stripe.proxy.calls("DELETE", "/v1/coupons") == []
    assert at_fake("SALE10")["amount_off"] == 1000
    assert list(StripeCoupon.objects.deleted()) == [coupon]


def test_queryset_delete_deletes_each_at_stripe(fake_stripe):
    first, second, kept = sale10(coupon_id="A"), sale10(coupon_id="B"), sale10(coupon_id="C")

    result = StripeCoupon.objects.filter(coupon_id__in=["A", "B"]).delete()

    assert result == (2, {"aa_stripe.StripeCoupon": 2})
    assert_gone_at_fake("A")
    assert_gone_at_fake("B")
    assert at_fake("C")["amount_off"] == 1000
    assert list(StripeCoupon.objects.all()) == [kept]
    assert list(StripeCoupon.objects.deleted()) == [first, second]
    assert StripeCoupon.objects.all_with_deleted().count() == 3


# --- data from Stripe -------------------------------------------------------------------------


def stripe_coupon_data(**fields) -> dict:
    """A coupon object as Stripe (a webhook or the API) sends it."""
    return {
        "id": "WEBHOOK",
        "object": "coupon",
        "amount_off": 2550,
        "currency": "usd",
        "duration": "repeating",
        "duration_in_months": 6,
        "livemode": False,
        "max_redemptions": 100,
        "metadata": {"source": "dashboard"},
        "percent_off": None,
        "redeem_by": 1924992000,  # 2031-01-01
        "times_redeemed": 7,
        "valid": True,
        "created": 1767225600,  # 2026-01-01
        **fields,
    }


def test_update_from_stripe_data_applies_data_without_calling_stripe(fake_stripe):
    coupon = StripeCoupon(coupon_id="WEBHOOK")

    coupon.update_from_stripe_data(stripe_coupon_data())

    assert fake_stripe.proxy.calls() == []
    coupon = StripeCoupon.objects.get(coupon_id="WEBHOOK")
    assert coupon.amount_off == Decimal("25.50")
    assert (coupon.currency, coupon.duration, coupon.duration_in_months) == ("usd", "repeating", 6)
    assert (coupon.max_redemptions, coupon.times_redeemed, coupon.valid) == (100, 7, True)
    assert coupon.metadata == {"source": "dashboard"}
    assert coupon.redeem_by == datetime(2031, 1, 1, tzinfo=UTC)
    assert coupon.created == datetime(2026, 1, 1, tzinfo=UTC)
    assert coupon.is_created_at_stripe is True
    assert coupon.stripe_response["times_redeemed"] == 7


def test_update_from_stripe_data_of_a_live_coupon_is_not_pushed_back(fake_stripe):
    coupon = sale10()
    data = {**at_fake("SALE10"), "metadata": {"changed": "at stripe"}, "times_redeemed": 3}
    fake_stripe.proxy.reset()

    coupon.update_from_stripe_data(data)
    coupon.save()  # nothing changed since Stripe's data was applied

    assert fake_stripe.proxy.calls() == []
    coupon.refresh_from_db()
    assert coupon.metadata == {"changed": "at stripe"}
    assert coupon.times_redeemed == 3


def test_update_from_stripe_data_exclude_fields_and_commit_false(fake_stripe):
    coupon = StripeCoupon(coupon_id="WEBHOOK")
    coupon.update_from_stripe_data(stripe_coupon_data())

    coupon.update_from_stripe_data(
        stripe_coupon_data(metadata={"new": "1"}, times_redeemed=8), exclude_fields=["metadata"]
    )
    coupon.refresh_from_db()
    assert (coupon.metadata, coupon.times_redeemed) == ({"source": "dashboard"}, 8)

    coupon.update_from_stripe_data(stripe_coupon_data(times_redeemed=9), commit=False)
    assert coupon.times_redeemed == 9
    coupon.refresh_from_db()
    assert coupon.times_redeemed == 8
    assert fake_stripe.proxy.calls() == []


def test_update_from_stripe_data_of_a_deleted_coupon_marks_it_deleted(fake_stripe):
    coupon = StripeCoupon(coupon_id="WEBHOOK")
    coupon.update_from_stripe_data(stripe_coupon_data())

    coupon.update_from_stripe_data(stripe_coupon_data(deleted=True, valid=False))

    assert fake_stripe.proxy.calls() == []
    assert list(StripeCoupon.objects.deleted()) == [coupon]
    assert not StripeCoupon.objects.exists()


def test_update_from_stripe_data_of_a_deleted_stub_keeps_the_other_fields(fake_stripe):
    coupon = StripeCoupon(coupon_id="WEBHOOK")
    coupon.update_from_stripe_data(stripe_coupon_data())

    # What Stripe answers to DELETE /v1/coupons/WEBHOOK.
    coupon.update_from_stripe_data({"id": "WEBHOOK", "object": "coupon", "deleted": True})

    coupon.refresh_from_db()
    assert coupon.is_deleted is True
    assert (coupon.amount_off, coupon.duration) == (Decimal("25.50"), "repeating")


def test_force_retrieve_adopts_a_coupon_made_at_stripe(fake_stripe):
    made = stripe_api.call(
        "coupons",
        "create",
        params={
            "id": "DASH5",
            "duration": "once",
            "amount_off": 500,
            "currency": "usd",
            "metadata": {"from": "dashboard"},
        },
    )

    coupon = StripeCoupon(coupon_id="DASH5")
    coupon.save(force_retrieve=True)

    assert len(fake_stripe.proxy.calls("POST", "/v1/coupons")) == 1  # only the setup above
    assert len(fake_stripe.proxy.calls("GET", "/v1/coupons/DASH5")) == 1
    coupon.refresh_from_db()
    assert coupon.amount_off == Decimal("5")
    assert (coupon.currency, coupon.duration, coupon.metadata) == ("usd", "once", {"from": "dashboard"})
    assert coupon.created == datetime.fromtimestamp(made["created"], tz=UTC)
    assert coupon.is_created_at_stripe is True

    with pytest.raises(StripeCouponAlreadyExists):
        StripeCoupon(coupon_id="DASH5").save(force_retrieve=True)
    assert StripeCoupon.objects.all_with_deleted().count() == 1


def test_force_retrieve_retires_an_older_row_with_the_same_id(fake_stripe):
    old = sale10()
    StripeCoupon.objects.filter(pk=old.pk).update(created=datetime(2020, 1, 1, tzinfo=UTC))

    new = StripeCoupon(coupon_id="SALE10")
    new.save(force_retrieve=True)

    old.refresh_from_db()
    assert old.is_deleted is True
    assert list(StripeCoupon.objects.all()) == [new]
    assert fake_stripe.proxy.calls("DELETE", "/v1/coupons") == []  # retired locally only


def test_subscription_keeps_its_deleted_coupon(fake_stripe, customer, plan):
    coupon = sale10(coupon_id="SUBCOUPON")
    subscription = StripeSubscription.objects.create(user=customer.user, plan=plan, coupon=coupon)
    subscription.create_at_stripe()

    coupon.delete()

    subscription = StripeSubscription.objects.get(pk=subscription.pk)
    assert subscription.coupon == coupon
    assert subscription.coupon.is_deleted is True
    assert StripeSubscription.objects.select_related("coupon").get().coupon == coupon
    assert StripeSubscription.objects.filter(coupon__coupon_id="SUBCOUPON").count() == 1
