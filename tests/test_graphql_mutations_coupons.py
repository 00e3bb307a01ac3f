"""GraphQL coupon mutations over HTTP against the fake Stripe: createStripeCoupon,
updateStripeCoupon, deleteStripeCoupon."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from graphql_relay import to_global_id

from aa_stripe import stripe_api
from aa_stripe.models import StripeCoupon, StripeOperation
from tests.graphql_helpers import assert_denied, codes, gql, signed_in, staff

pytestmark = pytest.mark.django_db

COUPON_FIELDS = """
coupon {
  id couponId amountOff percentOff currency duration durationInMonths maxRedemptions redeemBy valid isDeleted
}
errors { field code message }
"""
CREATE = f"""
mutation($input: CreateStripeCouponInput!) {{
  createStripeCoupon(input: $input) {{ clientMutationId {COUPON_FIELDS} }}
}}
"""
UPDATE = f"""
mutation($input: UpdateStripeCouponInput!) {{ updateStripeCoupon(input: $input) {{ {COUPON_FIELDS} }} }}
"""
DELETE = f"""
mutation($input: DeleteStripeCouponInput!) {{ deleteStripeCoupon(input: $input) {{ {COUPON_FIELDS} }} }}
"""


@pytest.fixture
def marketer() -> Client:
    return signed_in(staff("marketer", "add_stripecoupon", "change_stripecoupon", "delete_stripecoupon"))


@pytest.fixture
def coupon(fake_stripe) -> StripeCoupon:
    coupon = StripeCoupon.objects.create(
        coupon_id="SALE10", duration="forever", percent_off=10, metadata={"a": "1"}
    )
    fake_stripe.proxy.reset()  # forget the fixture's calls
    return coupon


def create(client: Client, **values) -> dict:
    return gql(client, CREATE, {"input": {"couponId": "SALE", "duration": "ONCE", **values}})["data"][
        "createStripeCoupon"
    ]


def update(client: Client, coupon, metadata: dict | list) -> dict:
    coupon_id = coupon if isinstance(coupon, str) else to_global_id("StripeCoupon", coupon.pk)
    return gql(client, UPDATE, {"input": {"coupon": coupon_id, "metadata": json.dumps(metadata)}})


def delete(client: Client, coupon) -> dict:
    coupon_id = coupon if isinstance(coupon, str) else to_global_id("StripeCoupon", coupon.pk)
    return gql(client, DELETE, {"input": {"coupon": coupon_id}})


def at_fake(fake_stripe, coupon_id: str) -> dict:
    return fake_stripe.get(f"/v1/coupons/{coupon_id}")


def host_metadata(fake_stripe, coupon_id: str) -> dict:
    """The coupon's metadata at Stripe but the journal's ``operation`` key."""
    metadata = at_fake(fake_stripe, coupon_id)["metadata"]
    return {key: value for key, value in metadata.items() if key != "operation"}


# --- createStripeCoupon -----------------------------------------------------------------------


def test_create_an_amount_off_coupon(fake_stripe, marketer):
    payload = create(
        marketer,
        amountOff="9.99",
        currency="usd",
        metadata=json.dumps({"campaign": "x"}),
        clientMutationId="k",
    )

    assert payload["errors"] == [] and payload["clientMutationId"] == "k"
    row = StripeCoupon.objects.get()
    assert payload["coupon"]["id"] == to_global_id("StripeCoupon", row.pk)
    assert (row.coupon_id, row.amount_off, row.currency, row.metadata) == (
        "SALE",
        Decimal("9.99"),
        "usd",
        {"campaign": "x"},
    )
    assert Decimal(payload["coupon"]["amountOff"]) == Decimal("9.99")
    assert (payload["coupon"]["duration"], payload["coupon"]["valid"], payload["coupon"]["isDeleted"]) == (
        "ONCE",
        True,
        False,
    )
    stripe_coupon = at_fake(fake_stripe, "SALE")
    assert (stripe_coupon["amount_off"], stripe_coupon["currency"], stripe_coupon["duration"]) == (
        999,
        "usd",
        "once",
    )
    operation = StripeOperation.objects.get(kind="coupon.create")  # its id goes to Stripe in metadata
    assert stripe_coupon["metadata"] == {"campaign": "x", "operation": str(operation.uuid)}


def test_create_a_repeating_percent_off_coupon(fake_stripe, marketer):
    redeem_by = (timezone.now() + timedelta(days=30)).replace(microsecond=0)

    payload = create(
        marketer,
        duration="REPEATING",
        percentOff="12.5",
        durationInMonths=3,
        maxRedemptions=10,
        redeemBy=redeem_by.isoformat(),
    )

    assert payload["errors"] == []
    coupon = payload["coupon"]
    assert (Decimal(coupon["percentOff"]), coupon["durationInMonths"], coupon["maxRedemptions"]) == (
        Decimal("12.5"),
        3,
        10,
    )
    assert StripeCoupon.objects.get().redeem_by == redeem_by
    stripe_coupon = at_fake(fake_stripe, "SALE")
    assert (stripe_coupon["percent_off"], stripe_coupon["duration_in_months"]) == (12.5, 3)
    assert (stripe_coupon["max_redemptions"], stripe_coupon["redeem_by"]) == (10, int(redeem_by.timestamp()))


def test_a_redeem_by_without_offset_is_read_in_the_current_time_zone(fake_stripe, marketer):
    local = (timezone.localtime() + timedelta(days=2)).replace(microsecond=0)

    payload = create(marketer, percentOff="5", redeemBy=local.replace(tzinfo=None).isoformat())

    assert payload["errors"] == [] and StripeCoupon.objects.get().redeem_by == local


def test_stripe_chooses_the_id_when_none_is_given(fake_stripe, marketer):
    payload = gql(marketer, CREATE, {"input": {"duration": "FOREVER", "percentOff": "5"}})["data"][
        "createStripeCoupon"
    ]

    assert payload["errors"] == []
    row = StripeCoupon.objects.get()
    assert row.coupon_id and payload["coupon"]["couponId"] == row.coupon_id
    assert at_fake(fake_stripe, row.coupon_id)["percent_off"] == 5


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, ("amountOff", "REQUIRED")),
        ({"amountOff": "5", "currency": "usd", "percentOff": "5"}, ("amountOff", "INVALID")),
        ({"amountOff": "5"}, ("currency", "REQUIRED")),
        ({"amountOff": "5", "currency": "xyz"}, ("currency", "INVALID")),
        ({"amountOff": "0", "currency": "usd"}, ("amountOff", "INVALID")),
        ({"amountOff": "9.999", "currency": "usd"}, ("amountOff", "INVALID")),
        ({"percentOff": "0"}, ("percentOff", "INVALID")),
        ({"percentOff": "100.5"}, ("percentOff", "INVALID")),
        ({"percentOff": "5", "duration": "REPEATING"}, ("durationInMonths", "REQUIRED")),
        ({"percentOff": "5", "durationInMonths": 3}, ("durationInMonths", "INVALID")),
        ({"percentOff": "5", "maxRedemptions": 0}, ("maxRedemptions", "INVALID")),
        ({"percentOff": "5", "redeemBy": "2000-01-01T00:00:00+00:00"}, ("redeemBy", "INVALID")),
        ({"percentOff": "5", "metadata": json.dumps({"a": [1]})}, ("metadata", "INVALID")),
        ({"percentOff": "5", "couponId": "x" * 256}, ("couponId", "INVALID")),
    ],
    ids=[
        "no-discount",
        "both-discounts",
        "amount-without-currency",
        "currency",
        "amount-zero",
        "amount-decimals",
        "percent-zero",
        "percent-above-100",
        "repeating-without-months",
        "months-not-repeating",
        "max-redemptions",
        "redeem-by-past",
        "metadata",
        "coupon-id-length",
    ],
)
def test_invalid_input_saves_and_sends_nothing(fake_stripe, marketer, values, expected):
    payload = create(marketer, **values)

    assert payload["coupon"] is None and codes(payload) == [expected]
    assert not StripeCoupon.objects.all_with_deleted().exists() and fake_stripe.proxy.calls() == []


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"amountOff": "NaN", "currency": "usd"}, "amountOff"),
        ({"amountOff": "sNaN", "currency": "usd"}, "amountOff"),
        ({"amountOff": "Infinity", "currency": "usd"}, "amountOff"),
        ({"amountOff": "-Infinity", "currency": "usd"}, "amountOff"),
        ({"percentOff": "NaN"}, "percentOff"),
        ({"percentOff": "sNaN"}, "percentOff"),
        ({"percentOff": "Infinity"}, "percentOff"),
    ],
)
def test_not_a_finite_number_is_invalid(fake_stripe, marketer, values, field):
    body = gql(marketer, CREATE, {"input": {"couponId": "SALE", "duration": "ONCE", **values}})

    assert "errors" not in body, body
    payload = body["data"]["createStripeCoupon"]
    assert payload["errors"] == [{"field": field, "code": "INVALID", "message": "Must be a finite number."}]
    assert not StripeCoupon.objects.all_with_deleted().exists() and fake_stripe.proxy.calls() == []


def test_an_existing_live_coupon_id_already_exists(fake_stripe, marketer, coupon):
    payload = create(marketer, couponId="SALE10", percentOff="5")

    assert codes(payload) == [("couponId", "ALREADY_EXISTS")]
    assert StripeCoupon.objects.count() == 1 and fake_stripe.proxy.calls() == []


def test_a_coupon_only_stripe_has_already_exists(fake_stripe, marketer):
    stripe_api.call("coupons", "create", params={"id": "THEIRS", "duration": "once", "percent_off": 50})

    payload = create(marketer, couponId="THEIRS", percentOff="5")

    assert codes(payload) == [("couponId", "ALREADY_EXISTS")] and not StripeCoupon.objects.exists()
    [_, refused] = fake_stripe.proxy.calls("POST", "/v1/coupons")
    assert refused.status == 400  # resource_already_exists, as Stripe answers
    assert at_fake(fake_stripe, "THEIRS")["percent_off"] == 50


def test_the_id_of_a_deleted_coupon_can_be_used_again(fake_stripe, marketer, coupon):
    coupon.delete()

    payload = create(marketer, couponId="SALE10", percentOff="15")

    assert payload["errors"] == []
    assert StripeCoupon.objects.all_with_deleted().filter(coupon_id="SALE10").count() == 2
    assert at_fake(fake_stripe, "SALE10")["percent_off"] == 15


def test_unknown_outcome_saves_nothing(fake_stripe, marketer):
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/coupons", status=503)

    payload = create(marketer, percentOff="5")

    assert payload["coupon"] is None and codes(payload) == [(None, "STRIPE_API_ERROR")]
    assert not StripeCoupon.objects.exists()


@pytest.mark.parametrize("who", ["anonymous", "user", "staff-without", "staff-view-change-delete"])
def test_create_coupon_needs_add_stripecoupon(fake_stripe, user, who):
    clients = {
        "anonymous": Client,
        "user": lambda: signed_in(user),
        "staff-without": lambda: signed_in(staff("carol")),
        "staff-view-change-delete": lambda: signed_in(
            staff("dave", "view_stripecoupon", "change_stripecoupon", "delete_stripecoupon")
        ),
    }

    body = gql(clients[who](), CREATE, {"input": {"couponId": "X", "duration": "ONCE", "percentOff": "5"}})

    assert_denied(body, "createStripeCoupon")
    assert not StripeCoupon.objects.exists() and fake_stripe.proxy.calls() == []


def test_staff_with_add_stripecoupon_only_create_coupons(fake_stripe):
    payload = create(signed_in(staff("carol", "add_stripecoupon")), percentOff="5")

    assert payload["errors"] == [] and StripeCoupon.objects.get().coupon_id == "SALE"


# --- updateStripeCoupon -----------------------------------------------------------------------


def test_update_sets_metadata_keys_at_stripe(fake_stripe, coupon):
    client = signed_in(staff("carol", "change_stripecoupon"))  # no view permission: not needed

    payload = update(client, coupon, {"b": "2"})["data"]["updateStripeCoupon"]

    assert payload["errors"] == [] and payload["coupon"]["couponId"] == "SALE10"
    [sent] = fake_stripe.proxy.calls("POST", "/v1/coupons/SALE10")
    operation = StripeOperation.objects.get(kind="coupon.update")
    assert sent.params == {"metadata[b]": "2", "metadata[operation]": str(operation.uuid)}
    coupon.refresh_from_db()
    assert coupon.metadata == {"a": "1", "b": "2"} == host_metadata(fake_stripe, "SALE10")  # Stripe merges


def test_update_refuses_deleted_coupons(fake_stripe, marketer, coupon):
    coupon.delete()
    fake_stripe.proxy.reset()

    payload = update(marketer, coupon, {"b": "2"})["data"]["updateStripeCoupon"]

    assert codes(payload) == [("coupon", "NOT_ALLOWED")] and fake_stripe.proxy.calls() == []


def test_update_of_a_coupon_deleted_at_stripe_says_so(fake_stripe, marketer, coupon):
    stripe_api.call("coupons", "delete", "SALE10")

    payload = update(marketer, coupon, {"b": "2"})["data"]["updateStripeCoupon"]

    assert payload["errors"] == [
        {"field": "coupon", "code": "NOT_ALLOWED", "message": "This coupon was deleted at Stripe."}
    ]
    assert payload["coupon"]["isDeleted"] is True
    coupon.refresh_from_db()
    assert coupon.is_deleted


@pytest.mark.parametrize(
    ("coupon_id", "metadata", "expected"),
    [
        ("nonsense", {}, ("coupon", "NOT_FOUND")),
        (to_global_id("StripeCoupon", 999), {}, ("coupon", "NOT_FOUND")),
        (None, ["a"], ("metadata", "INVALID")),
        (None, {"a": {"b": "c"}}, ("metadata", "INVALID")),
    ],
    ids=["nonsense", "unknown", "not-an-object", "nested"],
)
def test_update_errors(fake_stripe, marketer, coupon, coupon_id, metadata, expected):
    payload = update(marketer, coupon_id or coupon, metadata)["data"]["updateStripeCoupon"]

    assert codes(payload) == [expected] and fake_stripe.proxy.calls() == []
    coupon.refresh_from_db()
    assert coupon.metadata == {"a": "1"}


@pytest.mark.parametrize("who", ["anonymous", "user", "staff-without", "staff-view-add-delete"])
def test_update_needs_change_stripecoupon(fake_stripe, user, coupon, who):
    clients = {
        "anonymous": Client,
        "user": lambda: signed_in(user),
        "staff-without": lambda: signed_in(staff("carol")),
        "staff-view-add-delete": lambda: signed_in(
            staff("dave", "view_stripecoupon", "add_stripecoupon", "delete_stripecoupon")
        ),
    }

    client = clients[who]()
    assert_denied(update(client, coupon, {"b": "2"}), "updateStripeCoupon")
    assert_denied(update(client, "nonsense", {}), "updateStripeCoupon")  # before any lookup
    assert fake_stripe.proxy.calls() == [] and host_metadata(fake_stripe, "SALE10") == {"a": "1"}


# --- deleteStripeCoupon -----------------------------------------------------------------------


def test_delete_at_stripe_keeps_the_row(fake_stripe, coupon):
    client = signed_in(staff("carol", "delete_stripecoupon"))  # no view permission: not needed

    payload = delete(client, coupon)["data"]["deleteStripeCoupon"]

    assert payload["errors"] == [] and payload["coupon"]["isDeleted"] is True
    assert StripeCoupon.objects.all_with_deleted().get(pk=coupon.pk).is_deleted
    assert fake_stripe.get("/v1/coupons")["data"] == []
    [sent] = fake_stripe.proxy.calls("DELETE", "/v1/coupons/SALE10")
    assert sent.status == 200


def test_delete_twice_is_not_allowed(fake_stripe, marketer, coupon):
    delete(marketer, coupon)
    fake_stripe.proxy.reset()

    payload = delete(marketer, coupon)["data"]["deleteStripeCoupon"]

    assert payload["coupon"] is None and codes(payload) == [("coupon", "NOT_ALLOWED")]
    assert fake_stripe.proxy.calls() == []


def test_delete_unknown_coupon_is_not_found(fake_stripe, marketer):
    for coupon_id in ["nonsense", to_global_id("StripeCoupon", 999), to_global_id("StripeCharge", 1)]:
        assert codes(delete(marketer, coupon_id)["data"]["deleteStripeCoupon"]) == [("coupon", "NOT_FOUND")]


def test_a_stripe_failure_keeps_the_coupon_live(fake_stripe, marketer, coupon):
    fake_stripe.proxy.inject("status", method="DELETE", path_prefix="/v1/coupons", status=500)

    payload = delete(marketer, coupon)["data"]["deleteStripeCoupon"]

    assert codes(payload) == [(None, "STRIPE_API_ERROR")] and payload["coupon"]["isDeleted"] is False
    coupon.refresh_from_db()
    assert not coupon.is_deleted


@pytest.mark.parametrize("who", ["anonymous", "user", "staff-without", "staff-view-add-change"])
def test_delete_needs_delete_stripecoupon(fake_stripe, user, coupon, who):
    clients = {
        "anonymous": Client,
        "user": lambda: signed_in(user),
        "staff-without": lambda: signed_in(staff("carol")),
        "staff-view-add-change": lambda: signed_in(
            staff("dave", "view_stripecoupon", "add_stripecoupon", "change_stripecoupon")
        ),
    }

    client = clients[who]()
    assert_denied(delete(client, coupon), "deleteStripeCoupon")
    assert_denied(delete(client, "nonsense"), "deleteStripeCoupon")  # before any lookup
    coupon.refresh_from_db()
    assert not coupon.is_deleted and fake_stripe.proxy.calls() == []
