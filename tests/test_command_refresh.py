"""``refresh_coupons`` and ``refresh_customers`` with a few hundred objects at the fake Stripe server.

Each test checks the local rows, the number of list requests (ceil(N / 100), never N) and that the
SQL queries are bounded per page of 100, not per object.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aa_stripe.management.commands import refresh_customers
from aa_stripe.models import StripeCoupon, StripeCustomer
from aa_stripe.models.base import timestamp_to_datetime
from tests.stripe_fixtures import stripe_object

pytestmark = pytest.mark.django_db

# Queries per page of 100: SAVEPOINT, SELECT ... FOR UPDATE of the page's local rows, at most three
# bulk writes (coupons: namesakes marked deleted, changed rows, missing rows; customers: one), RELEASE.
PER_PAGE = 6
# Queries once per run: the scan for local rows Stripe did not list, and one UPDATE per 500 of them.
PER_RUN = 2


def query_bound(objects_at_stripe: int) -> int:
    return math.ceil(objects_at_stripe / 100) * PER_PAGE + PER_RUN


class Direct:
    """Setup straight at localstripe (not through the recording proxy)."""

    def __init__(self, fake_stripe: Any) -> None:
        self.fake = fake_stripe
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {fake_stripe.api_key}"

    def post(self, path: str, **data: Any) -> dict[str, Any]:
        response = self.session.post(f"{self.fake.direct_url}{path}", data=data, timeout=10)
        response.raise_for_status()
        return response.json()

    def delete(self, path: str) -> None:
        self.session.delete(f"{self.fake.direct_url}{path}", timeout=10).raise_for_status()

    def list(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        params = {"limit": 100, **params}
        while True:
            page = self.fake.get(path, **params)
            yield from page["data"]
            if not page["has_more"]:
                return
            params["starting_after"] = page["data"][-1]["id"]


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def writes(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("UPDATE", "INSERT"))]


# --- refresh_coupons ---------------------------------------------------------------------------------


def local_coupon(data: dict[str, Any], **changes: Any) -> StripeCoupon:
    values = {**StripeCoupon.values_from_stripe(data), **changes}
    return StripeCoupon(**values, stripe_response=data, is_created_at_stripe=True)


@pytest.fixture
def coupons_at_stripe(fake_stripe) -> list[dict[str, Any]]:
    """250 coupons at the fake: percent-off and amount-off ones."""
    direct = Direct(fake_stripe)
    for i in range(250):
        off = {"percent_off": 5 + i % 50} if i % 2 else {"amount_off": 100 * i + 100, "currency": "usd"}
        direct.post("/v1/coupons", id=f"c{i:03d}", duration="once", **off)
    return list(direct.list("/v1/coupons"))


def test_refresh_coupons_creates_updates_and_marks_deleted_in_bulk(
    fake_stripe, coupons_at_stripe, django_assert_max_num_queries
):
    stripe = {c["id"]: c for c in coupons_at_stripe}
    current, stale, resurrected = (
        coupons_at_stripe[:100],
        coupons_at_stripe[100:140],
        coupons_at_stripe[140:150],
    )
    namesake = coupons_at_stripe[150]  # local row of an older coupon with the same id
    long_ago = timezone.now() - timedelta(days=400)
    StripeCoupon.objects.bulk_create(
        [local_coupon(c) for c in current]
        + [local_coupon(c, times_redeemed=7, metadata={"old": "1"}) for c in stale]
        + [local_coupon(c, is_deleted=True) for c in resurrected]
        + [local_coupon(namesake, created=long_ago)]
        + [local_coupon(stripe_object("coupon", id=f"gone{i}", created=1_600_000_000)) for i in range(30)]
    )
    # A row written after the run began (e.g. a coupon created meanwhile, newer than the listing).
    StripeCoupon.objects.bulk_create([local_coupon(stripe_object("coupon", id="meanwhile"))])
    StripeCoupon.objects.filter(coupon_id="meanwhile").update(updated=timezone.now() + timedelta(minutes=1))

    with django_assert_max_num_queries(query_bound(250)):
        out = run("refresh_coupons", "-v", "2")

    assert "refresh_coupons: 250 at Stripe; 100 created, 50 updated, 100 unchanged, 30 marked deleted" in out
    assert "250 coupons read from Stripe" in out
    assert len(fake_stripe.proxy.calls("GET", "/v1/coupons")) == math.ceil(250 / 100)
    live = {c.coupon_id: c for c in StripeCoupon.objects.exclude(coupon_id="meanwhile")}
    assert set(live) == set(stripe)
    for coupon_id, coupon in live.items():
        assert coupon.created == timestamp_to_datetime(stripe[coupon_id]["created"])
        assert coupon.times_redeemed == 0 and coupon.metadata == {}
        assert coupon.stripe_response["id"] == coupon_id
    assert StripeCoupon.objects.deleted().filter(coupon_id__startswith="gone").count() == 30
    assert StripeCoupon.objects.deleted().get(coupon_id=namesake["id"]).created == long_ago
    # Left for the next run to judge.
    assert StripeCoupon.objects.filter(coupon_id="meanwhile").exists()


def test_refresh_coupons_twice_changes_nothing(fake_stripe, coupons_at_stripe):
    run("refresh_coupons")
    fake_stripe.proxy.reset()

    with CaptureQueriesContext(connection) as queries:
        out = run("refresh_coupons")

    assert "refresh_coupons: 250 at Stripe; 0 created, 0 updated, 250 unchanged, 0 marked deleted" in out
    assert writes(queries) == []
    assert len(fake_stripe.proxy.calls("GET", "/v1/coupons")) == 3


def test_refresh_coupons_leaves_a_row_a_newer_webhook_wrote(fake_stripe, coupons_at_stripe):
    data = coupons_at_stripe[0]
    StripeCoupon.objects.bulk_create(
        [local_coupon(data, metadata={"from": "webhook"}, last_event_at=timezone.now())]
    )

    out = run("refresh_coupons")

    assert "249 created, 0 updated, 0 unchanged, 0 marked deleted, 1 left to newer webhooks" in out
    assert StripeCoupon.objects.get(coupon_id=data["id"]).metadata == {"from": "webhook"}


def test_refresh_coupons_reports_stripe_errors_and_marks_nothing_deleted(fake_stripe):
    StripeCoupon.objects.bulk_create([local_coupon(stripe_object("coupon", id="kept"))])
    fake_stripe.proxy.inject("status", method="GET", path_prefix="/v1/coupons", status=500)

    with pytest.raises(CommandError, match=r"Stripe error after 0 coupons .*: Injected 500 from FaultProxy"):
        run("refresh_coupons")

    assert StripeCoupon.objects.filter(coupon_id="kept").exists()


def test_refresh_coupons_with_no_coupons_at_all(fake_stripe):
    assert "refresh_coupons: 0 at Stripe; 0 created" in run("refresh_coupons")
    assert len(fake_stripe.proxy.calls("GET", "/v1/coupons")) == 1


# --- refresh_customers -------------------------------------------------------------------------------


@pytest.fixture
def customers_at_stripe(fake_stripe) -> list[dict[str, Any]]:
    """250 customers at the fake, each with a card, plus one without any card."""
    direct = Direct(fake_stripe)
    for i in range(250):
        token = fake_stripe.card_token()
        direct.post("/v1/customers", source=token["id"], description=f"customer {i}")
    direct.post("/v1/customers", description="no card")  # default_source: null
    return list(direct.list("/v1/customers"))


def make_users(count: int) -> list[Any]:
    User = get_user_model()
    User.objects.bulk_create([User(username=f"user{i}", email=f"user{i}@example.com") for i in range(count)])
    return list(User.objects.order_by("pk"))


def local_customer(user: Any, data: dict[str, Any], **changes: Any) -> StripeCustomer:
    values = {
        "user": user,
        "stripe_customer_id": data["id"],
        "is_created_at_stripe": True,
        "sources": data.get("sources", {}).get("data", []),
        "default_source": data["default_source"] or "",
        "stripe_response": data,
    }
    return StripeCustomer(**{**values, **changes})


def test_refresh_customers_updates_cards_and_deactivates_vanished_in_bulk(
    fake_stripe, customers_at_stripe, django_assert_max_num_queries
):
    no_card = next(c for c in customers_at_stripe if c["default_source"] is None)
    with_card = [c for c in customers_at_stripe if c is not no_card]
    current, stale, deleted = with_card[:100], with_card[100:150], with_card[150]
    users = make_users(200)
    StripeCustomer.objects.bulk_create(
        [local_customer(users[i], c) for i, c in enumerate(current)]
        + [local_customer(users[100 + i], c, sources=[], default_source="") for i, c in enumerate(stale)]
        + [local_customer(users[150], no_card, default_source="card_x", sources=[{"id": "card_x"}])]
        + [local_customer(users[151], deleted)]
        + [local_customer(users[152 + i], stripe_object("customer", id=f"cus_gone{i}")) for i in range(20)]
        + [StripeCustomer(user=users[199])]  # never created at Stripe
    )
    Direct(fake_stripe).delete(f"/v1/customers/{deleted['id']}")

    with django_assert_max_num_queries(query_bound(250)):
        out = run("refresh_customers", "-v", "2")

    assert (
        "refresh_customers: 250 at Stripe; 51 local customers updated, 100 unchanged, "
        "21 no longer at Stripe marked inactive" in out
    )
    lists = fake_stripe.proxy.calls("GET", "/v1/customers")
    assert len(lists) == math.ceil(250 / 100)
    assert all(call.query["expand[0]"] == "data.sources" for call in lists)
    stripe = {c["id"]: c for c in customers_at_stripe}
    for customer in StripeCustomer.objects.filter(stripe_customer_id__in=[c["id"] for c in current + stale]):
        assert customer.is_active
        assert customer.default_source == stripe[customer.stripe_customer_id]["default_source"]
        assert customer.sources == stripe[customer.stripe_customer_id]["sources"]["data"]
    cardless = StripeCustomer.objects.get(stripe_customer_id=no_card["id"])
    assert (cardless.default_source, cardless.sources, cardless.is_active) == ("", [], True)
    inactive = StripeCustomer.objects.filter(is_active=False).values_list("stripe_customer_id", flat=True)
    assert sorted(inactive) == sorted([deleted["id"], *(f"cus_gone{i}" for i in range(20))])
    assert StripeCustomer.objects.get(user=users[199]).is_active


def test_refresh_customers_twice_changes_nothing(fake_stripe, customers_at_stripe):
    users = make_users(len(customers_at_stripe))
    StripeCustomer.objects.bulk_create(
        [local_customer(user, c, sources=[]) for user, c in zip(users, customers_at_stripe, strict=True)]
    )
    assert "250 local customers updated" in run("refresh_customers")

    with CaptureQueriesContext(connection) as queries:
        out = run("refresh_customers")

    assert "251 at Stripe; 0 local customers updated, 251 unchanged, 0 no longer at Stripe" in out
    assert writes(queries) == []


def test_a_customer_without_sources_and_a_null_default_source(fake_stripe, user, other_user):
    """Stripe's canonical customer (current API): no ``sources`` key, ``default_source: null``."""
    card = {"id": "card_kept", "object": "card"}
    at_stripe = {"is_created_at_stripe": True}
    kept = StripeCustomer.objects.create(
        user=user, stripe_customer_id="cus_canonical", sources=[card], default_source="card_kept", **at_stripe
    )
    gone = StripeCustomer.objects.create(user=other_user, stripe_customer_id="cus_del", **at_stripe)
    page = [
        stripe_object("customer", id="cus_canonical"),
        {"id": "cus_del", "object": "customer", "deleted": True},
    ]
    assert "sources" not in page[0] and page[0]["default_source"] is None

    counts = refresh_customers.Command()._sync_page(page)

    assert counts["updated"] == 2
    kept.refresh_from_db()
    assert (kept.sources, kept.default_source, kept.is_active) == ([card], "", True)
    gone.refresh_from_db()
    assert not gone.is_active


def test_refresh_customers_leaves_a_customer_a_newer_card_event_wrote(fake_stripe, customers_at_stripe, user):
    data = customers_at_stripe[0]
    stamp = int(timezone.now().timestamp())
    StripeCustomer.objects.bulk_create(
        [local_customer(user, data, sources=[], source_event_times={"card_new": stamp})]
    )

    out = run("refresh_customers")

    assert "0 local customers updated, 0 unchanged, 0 no longer at Stripe marked inactive" in out
    assert "1 left to newer webhooks" in out
    assert StripeCustomer.objects.get(user=user).sources == []


def test_refresh_customers_without_expand_on_old_api_versions(fake_stripe, settings):
    settings.STRIPE_API_VERSION = "2019-12-03"
    run("refresh_customers")
    assert [c.query for c in fake_stripe.proxy.calls("GET", "/v1/customers")] == [{"limit": "100"}]


def test_refresh_customers_reports_stripe_errors(fake_stripe, user):
    StripeCustomer.objects.create(user=user, stripe_customer_id="cus_kept", is_created_at_stripe=True)
    fake_stripe.proxy.inject("drop_before", method="GET", path_prefix="/v1/customers")

    with pytest.raises(CommandError, match=r"refresh_customers: Stripe error after 0 customers"):
        run("refresh_customers")

    assert StripeCustomer.objects.get(stripe_customer_id="cus_kept").is_active
