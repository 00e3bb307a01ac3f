"""coupon.created / coupon.updated / coupon.deleted: dashboard changes show up here, none is pushed back."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from aa_stripe import stripe_api
from aa_stripe.models import StripeCoupon, StripeTombstone
from aa_stripe.testing import make_event
from aa_stripe.webhooks import handlers
from tests.stripe_fixtures import stripe_object
from tests.test_webhook_handlers import StripeCalls, deliver, deliver_again, now, sent_a_minute_ago

pytestmark = pytest.mark.django_db


def dt(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def coupon_object(coupon_id: str, created: int, **overrides: Any) -> dict[str, Any]:
    """Stripe's coupon (current shape): 10.00 USD off, forever."""
    values = {
        "id": coupon_id,
        "created": created,
        "amount_off": 1000,
        "currency": "usd",
        "percent_off": None,
        "duration": "forever",
        "duration_in_months": None,
        "redeem_by": None,
        "name": None,
    }
    return stripe_object("coupon", **{**values, **overrides})


@pytest.fixture
def sale10(fake_stripe) -> StripeCoupon:
    """A coupon created through the library at the fake."""
    coupon = StripeCoupon.objects.create(
        coupon_id="SALE10", duration=StripeCoupon.DURATION_FOREVER, currency="usd", amount_off=10
    )
    return StripeCoupon.objects.get(pk=coupon.pk)


def created_of(coupon: StripeCoupon) -> int:
    return int(coupon.created.timestamp())


def assert_nothing_pushed(stripe_calls: StripeCalls) -> None:
    assert [call for call in stripe_calls() if call[0] in ("POST", "DELETE")] == []


# --- created in the dashboard ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount_off", "currency", "expected"),
    [(1250, "usd", Decimal("12.50")), (500, "jpy", Decimal("500")), (1500, "bhd", Decimal("1.500"))],
)
def test_coupon_created_in_the_dashboard_becomes_a_row(client, fake_stripe, amount_off, currency, expected):
    created = now() - 60
    data = coupon_object(
        "SPRING", created, amount_off=amount_off, currency=currency, duration="once", max_redemptions=50
    )
    data["metadata"] = {"campaign": "spring"}
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("coupon.created", data, created=created))

    coupon = StripeCoupon.objects.get(coupon_id="SPRING")
    assert (coupon.amount_off, coupon.currency, coupon.percent_off) == (expected, currency, None)
    assert (coupon.duration, coupon.max_redemptions, coupon.metadata) == ("once", 50, {"campaign": "spring"})
    assert coupon.created == dt(created) and coupon.last_event_at == dt(created)
    assert coupon.is_created_at_stripe and not coupon.is_deleted and coupon.valid
    assert coupon.stripe_response == data
    assert stripe_calls() == []


def test_percent_off_coupon_from_the_dashboard(client, fake_stripe):
    created = now()
    data = stripe_object("coupon", created=created)  # Stripe's example: 25.5% off, repeating 3 months
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("coupon.created", data, created=created))

    coupon = StripeCoupon.objects.get(coupon_id=data["id"])
    assert (coupon.percent_off, coupon.amount_off) == (Decimal("25.50"), None)
    assert coupon.redeem_by == dt(data["redeem_by"])
    assert stripe_calls() == []


def test_coupon_updated_for_an_unknown_coupon_creates_the_row(client, fake_stripe):
    created = now() - 600
    data = coupon_object("OLDIE", created)

    deliver(client, make_event("coupon.updated", data))

    assert StripeCoupon.objects.get(coupon_id="OLDIE").created == dt(created)


def test_a_deletion_arriving_first_is_final_for_the_older_events_of_that_coupon(client, fake_stripe):
    """Stripe delivers in any order: the coupon.deleted of a coupon never mirrored here arrives
    before its coupon.created / coupon.updated, which must not bring it back as live."""
    stripe_calls = StripeCalls(fake_stripe)
    created = now() - 60

    deliver(client, make_event("coupon.deleted", coupon_object("NEVERSEEN", created), created=created + 2))
    deliver(client, make_event("coupon.created", coupon_object("NEVERSEEN", created), created=created))
    deliver(
        client,
        make_event("coupon.updated", coupon_object("NEVERSEEN", created, name="Late"), created=created + 1),
    )

    assert not StripeCoupon.objects.all_with_deleted().exists()
    [tombstone] = StripeTombstone.objects.filter(stripe_id="NEVERSEEN")
    assert (tombstone.object_type, tombstone.stripe_created) == ("coupon", dt(created))
    assert stripe_calls() == []


def test_a_deletion_is_final_only_for_that_coupon_not_for_a_newer_one_of_the_same_id(client, fake_stripe):
    first, second = now() - 60, now() - 30  # the id was reused after the first coupon was deleted

    deliver(client, make_event("coupon.deleted", coupon_object("REUSED", first), created=first + 5))
    deliver(client, make_event("coupon.created", coupon_object("REUSED", second), created=second))
    deliver(client, make_event("coupon.created", coupon_object("REUSED", first), created=first))

    [coupon] = StripeCoupon.objects.all_with_deleted()
    assert coupon.created == dt(second) and not coupon.is_deleted


def test_a_deleted_stub_for_an_unknown_coupon_creates_nothing(client, fake_stripe):
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("coupon.deleted", stripe_object("deleted_coupon", id="NEVERSEEN2")))

    assert not StripeCoupon.objects.all_with_deleted().exists()
    assert stripe_calls() == []


# --- a coupon made through the library -----------------------------------------------------------


def test_the_coupons_own_created_event_changes_nothing_and_pushes_nothing(client, fake_stripe, sale10):
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("coupon.created", coupon_object("SALE10", created_of(sale10))))

    [coupon] = StripeCoupon.objects.all_with_deleted()
    assert coupon.pk == sale10.pk and coupon.amount_off == Decimal("10") and not coupon.is_deleted
    # Made around our own request: the coupon is read from Stripe (the event may predate our answer).
    assert stripe_calls() == [("GET", "/v1/coupons/SALE10")]


def test_metadata_updated_in_the_dashboard_is_applied_without_pushing_back(client, fake_stripe, sale10):
    sent_a_minute_ago()  # the coupon was made earlier
    data = coupon_object("SALE10", created_of(sale10), metadata={"tier": "gold"})
    event = make_event("coupon.updated", data, data={"object": data, "previous_attributes": {"metadata": {}}})
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, event)

    coupon = StripeCoupon.objects.get(pk=sale10.pk)
    assert coupon.metadata == {"tier": "gold"}
    assert coupon.last_event_at == dt(event["created"])
    coupon.save()  # a fresh copy holds nothing to push either
    assert stripe_calls() == []


def test_coupon_deleted_in_the_dashboard_keeps_the_row(client, fake_stripe, sale10):
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("coupon.deleted", coupon_object("SALE10", created_of(sale10), valid=False)))

    assert not StripeCoupon.objects.filter(coupon_id="SALE10").exists()
    coupon = StripeCoupon.objects.deleted().get(pk=sale10.pk)
    assert coupon.amount_off == Decimal("10")  # its last known data is kept
    assert_nothing_pushed(stripe_calls)
    assert stripe_calls() == []


def test_deleted_stub_marks_the_live_coupon_deleted(client, fake_stripe, sale10):
    deliver(client, make_event("coupon.deleted", stripe_object("deleted_coupon", id="SALE10")))

    assert StripeCoupon.objects.deleted().get().pk == sale10.pk


def test_coupon_recreated_under_the_same_id(client, fake_stripe, sale10):
    old_created = created_of(sale10)
    new_created = old_created + 3600
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("coupon.created", coupon_object("SALE10", new_created, amount_off=2000)))
    # The old coupon's deletion, delivered late.
    late = make_event("coupon.deleted", coupon_object("SALE10", old_created), created=new_created - 10)
    deliver(client, late)

    old = StripeCoupon.objects.all_with_deleted().get(pk=sale10.pk)
    new = StripeCoupon.objects.get(coupon_id="SALE10")
    assert old.is_deleted and old.amount_off == Decimal("10")
    assert new.pk != old.pk and new.amount_off == Decimal("20") and new.created == dt(new_created)
    assert stripe_calls() == []


def test_a_late_event_of_an_older_namesake_leaves_the_live_coupon_alone(client, fake_stripe, sale10):
    older = created_of(sale10) - 3600  # a SALE10 deleted at Stripe before ours was made
    stripe_calls = StripeCalls(fake_stripe)

    for event_type in ("coupon.created", "coupon.updated", "coupon.deleted"):
        deliver(client, make_event(event_type, coupon_object("SALE10", older, amount_off=500), created=older))

    [coupon] = StripeCoupon.objects.all_with_deleted()
    assert coupon.pk == sale10.pk and not coupon.is_deleted and coupon.amount_off == Decimal("10")
    assert stripe_calls() == []


# --- order, ties, replays -----------------------------------------------------------------------


def test_an_older_update_after_a_newer_one_is_skipped(client, fake_stripe, sale10):
    created, t0 = created_of(sale10), now()
    stripe_calls = StripeCalls(fake_stripe)

    deliver(
        client,
        make_event("coupon.updated", coupon_object("SALE10", created, metadata={"v": "2"}), created=t0 + 10),
    )
    deliver(
        client,
        make_event("coupon.updated", coupon_object("SALE10", created, metadata={"v": "1"}), created=t0 + 5),
    )

    coupon = StripeCoupon.objects.get(pk=sale10.pk)
    assert coupon.metadata == {"v": "2"} and coupon.last_event_at == dt(t0 + 10)
    assert stripe_calls() == []


def test_an_update_older_than_the_deletion_leaves_the_coupon_deleted(client, fake_stripe, sale10):
    created, t0 = created_of(sale10), now()

    deliver(client, make_event("coupon.deleted", coupon_object("SALE10", created), created=t0 + 10))
    deliver(
        client,
        make_event("coupon.updated", coupon_object("SALE10", created, metadata={"v": "1"}), created=t0 + 5),
    )

    coupon = StripeCoupon.objects.all_with_deleted().get(pk=sale10.pk)
    assert coupon.is_deleted and coupon.metadata == {}


def test_a_tie_re_reads_the_coupon_from_stripe(client, fake_stripe, sale10):
    created, t0 = created_of(sale10), now()
    stripe_api.call("coupons", "update", "SALE10", params={"metadata": {"v": "stripe"}})
    deliver(
        client,
        make_event("coupon.updated", coupon_object("SALE10", created, metadata={"v": "1"}), created=t0),
    )
    stripe_calls = StripeCalls(fake_stripe)

    # Same second: the event's data may be the older state; only Stripe knows.
    deliver(
        client,
        make_event("coupon.updated", coupon_object("SALE10", created, metadata={"v": "2"}), created=t0),
    )

    assert stripe_calls() == [("GET", "/v1/coupons/SALE10")]
    coupon = StripeCoupon.objects.get(pk=sale10.pk)
    assert coupon.metadata == {"v": "stripe"} and coupon.last_event_at == dt(t0)


def test_a_tie_while_stripe_is_down_fails_the_parse_and_changes_nothing(client, fake_stripe, sale10):
    created, t0 = created_of(sale10), now()
    deliver(
        client,
        make_event("coupon.updated", coupon_object("SALE10", created, metadata={"v": "1"}), created=t0),
    )
    before = StripeCoupon.objects.filter(pk=sale10.pk).values().get()
    fake_stripe.proxy.inject("status", method="GET", path_prefix="/v1/coupons/SALE10", status=503)
    event = make_event("coupon.updated", coupon_object("SALE10", created, metadata={"v": "2"}), created=t0)

    webhook = deliver(client, event, expected="stored, parse failed")

    assert not webhook.is_parsed and "StripeInternalError" in webhook.parse_error
    assert StripeCoupon.objects.filter(pk=sale10.pk).values().get() == before
    stripe_api.call("coupons", "update", "SALE10", params={"metadata": {"v": "stripe"}})
    assert webhook.process() is True  # the retry (parse_stripe_webhooks --failed) re-reads Stripe
    assert StripeCoupon.objects.get(pk=sale10.pk).metadata == {"v": "stripe"}


def test_a_tie_when_stripe_now_has_a_newer_namesake_marks_ours_deleted(client, fake_stripe, sale10):
    older = created_of(sale10) - 86400  # ours was made a day before the SALE10 Stripe has now
    StripeCoupon.objects.filter(pk=sale10.pk).update(created=dt(older))
    t0 = now()
    deliver(client, make_event("coupon.updated", coupon_object("SALE10", older), created=t0))
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("coupon.deleted", coupon_object("SALE10", older), created=t0))

    assert stripe_calls() == [("GET", "/v1/coupons/SALE10")]
    assert StripeCoupon.objects.all_with_deleted().get(pk=sale10.pk).is_deleted


def test_a_replayed_event_changes_nothing_twice(client, fake_stripe, sale10):
    # The change is made at Stripe (as the dashboard would), so a re-read agrees with the event.
    stripe_api.call("coupons", "update", "SALE10", params={"metadata": {"v": "1"}})
    event = make_event("coupon.updated", fake_stripe.get("/v1/coupons/SALE10"))
    deliver(client, event)
    before = StripeCoupon.objects.filter(pk=sale10.pk).values().get()
    stripe_calls = StripeCalls(fake_stripe)

    deliver_again(client, event)

    after = StripeCoupon.objects.filter(pk=sale10.pk).values().get()
    assert {**after, "updated": None} == {**before, "updated": None} and after["metadata"] == {"v": "1"}
    assert stripe_calls.writes() == []


def test_a_refreshed_instance_does_not_push_webhook_changes_back(client, fake_stripe, sale10):
    deliver(
        client, make_event("coupon.updated", coupon_object("SALE10", created_of(sale10), metadata={"v": "1"}))
    )
    stripe_calls = StripeCalls(fake_stripe)

    sale10.refresh_from_db()
    sale10.save()

    assert_nothing_pushed(stripe_calls)


def test_two_parses_inserting_the_same_new_coupon_at_once_both_succeed(client, fake_stripe, monkeypatch):
    # Found by the PostgreSQL worker test: two events of a coupon not mirrored yet, parsed at once by
    # two workers; both found no row, the second insert hit the unique constraint and its parse failed.
    # Here the other parse's committed row (made without save(): nothing pushed) is there, but this
    # parse's first lookup ran before it was.
    created = now() - 60
    StripeCoupon._base_manager.bulk_create(
        [StripeCoupon(coupon_id="DASH", created=dt(created), amount_off=10, currency="usd")]
    )
    lookup, lookups = handlers._coupon_row, []

    def looked_too_early(webhook, data):
        lookups.append(data["id"])
        return StripeCoupon(coupon_id=data["id"]) if len(lookups) == 1 else lookup(webhook, data)

    monkeypatch.setattr(handlers, "_coupon_row", looked_too_early)

    webhook = deliver(
        client, make_event("coupon.updated", coupon_object("DASH", created, metadata={"tier": "gold"}))
    )

    assert (webhook.is_parsed, webhook.parse_error) == (True, "")
    assert len(lookups) == 2  # run again once, after its insert lost the race
    [coupon] = StripeCoupon.objects.all_with_deleted()
    assert (coupon.coupon_id, coupon.metadata) == ("DASH", {"tier": "gold"})
