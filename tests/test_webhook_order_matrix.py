"""The out-of-order matrix: Stripe delivers events at least once and in any order.

For create/update/delete of each handled object type, every order of arrival ends with the rows
(field by field) and the signals of in-order delivery; a duplicate (Stripe's redelivery, or a
forced re-parse of the stored row) ends as a single delivery.

Each scenario plays its changes at the fake Stripe step by step (through the library where the
library makes the object, else "in the dashboard": straight at the fake, past the library and the
fault proxy) and builds each event from the object as the fake has it right after that step, with
Stripe times one second apart. So the fake ends in the state the last event describes, which is
what a handler reads back on a same-second tie or a forced re-parse.

A test case builds its scenario once, delivers the events in Stripe's order inside a savepoint
that is rolled back (the in-order outcome: rows and signals), then delivers them in its own order
and compares. Handlers only read Stripe, so the fake is the same for both runs.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from django.db import models, transaction
from django.test import TestCase

from aa_stripe.exceptions import StripeInternalError
from aa_stripe.models import (
    StripeCharge,
    StripeCoupon,
    StripeCustomer,
    StripePrice,
    StripeProduct,
    StripeRefund,
    StripeSubscription,
    StripeSubscriptionPlan,
    StripeTombstone,
    StripeWebhook,
)
from aa_stripe.signals import (
    stripe_charge_card_exception,
    stripe_charge_disputed,
    stripe_charge_refunded,
    stripe_charge_succeeded,
    webhook_pre_parse,
)
from aa_stripe.testing import make_event
from tests.conftest import make_customer
from tests.stripe_fixtures import stripe_object
from tests.test_webhook_handlers import StripeCalls, deliver, now, received

pytestmark = pytest.mark.django_db

DECLINED_ON_CHARGE = "4000000000000341"  # attaches, then every charge of it is declined


# --- the fake Stripe and the events ------------------------------------------------------------------


@dataclass
class Stripe:
    """One test's fake Stripe, and the events of its scenario, one Stripe second apart."""

    fake: Any
    user: Any
    request: pytest.FixtureRequest
    base: int = field(default_factory=lambda: now() + 1)
    count: int = 0

    def get(self, path: str) -> dict[str, Any]:
        return self.fake.get(path)

    def dashboard(self, method: str, path: str, **data: Any) -> dict[str, Any]:
        """A change made in Stripe's dashboard: at the fake, past the library and the proxy."""
        response = requests.request(
            method,
            f"{self.fake.direct_url}{path}",
            data=data,
            headers={"Authorization": f"Bearer {self.fake.api_key}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def event(
        self, event_type: str, data_object: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"object": data_object}
        if previous is not None:
            data["previous_attributes"] = previous
        self.count += 1
        return make_event(event_type, data_object, data=data, created=self.base + self.count - 1)


Scenario = Callable[[Stripe], Iterator[dict[str, Any]]]


def coupon_in_the_dashboard(stripe: Stripe) -> Iterator[dict[str, Any]]:
    """A coupon never mirrored here: created, renamed (metadata), deleted in the dashboard."""
    stripe.dashboard("POST", "/v1/coupons", id="DASH25", duration="forever", percent_off="25")
    coupon = stripe.get("/v1/coupons/DASH25")
    yield stripe.event("coupon.created", coupon)
    updated = stripe.dashboard("POST", "/v1/coupons/DASH25", **{"metadata[name]": "Spring sale"})
    yield stripe.event("coupon.updated", updated, previous={"metadata": {}})
    stripe.dashboard("DELETE", "/v1/coupons/DASH25")
    yield stripe.event("coupon.deleted", {**updated, "valid": False})


def coupon_from_the_library(stripe: Stripe) -> Iterator[dict[str, Any]]:
    """A coupon made through the library, then changed and deleted in the dashboard."""
    StripeCoupon.objects.create(coupon_id="SALE10", duration="forever", currency="usd", amount_off=10)
    yield stripe.event("coupon.created", stripe.get("/v1/coupons/SALE10"))
    updated = stripe.dashboard("POST", "/v1/coupons/SALE10", **{"metadata[tier]": "gold"})
    yield stripe.event("coupon.updated", updated, previous={"metadata": {}})
    stripe.dashboard("DELETE", "/v1/coupons/SALE10")
    yield stripe.event("coupon.deleted", {**updated, "valid": False})


def _coupon_id_reused(stripe: Stripe, made_by_the_library: bool) -> Iterator[dict[str, Any]]:
    """REUSE created an hour ago and deleted; a new REUSE made in the dashboard since."""
    if made_by_the_library:
        mine = StripeCoupon.objects.create(
            coupon_id="REUSE", duration="forever", currency="usd", amount_off=10
        )
    else:
        stripe.dashboard(
            "POST", "/v1/coupons", id="REUSE", duration="forever", currency="usd", amount_off=1000
        )
    old = stripe.get("/v1/coupons/REUSE")
    old["created"] -= 3600  # the fake's clock is now: the old coupon was made an hour before the new one
    if made_by_the_library:
        StripeCoupon.objects.filter(pk=mine.pk).update(
            created=StripeCoupon.values_from_stripe(old)["created"],
            stripe_response={**mine.stripe_response, "created": old["created"]},
        )
    yield stripe.event("coupon.created", old)
    stripe.dashboard("DELETE", "/v1/coupons/REUSE")
    yield stripe.event("coupon.deleted", {**old, "valid": False})
    stripe.dashboard("POST", "/v1/coupons", id="REUSE", duration="once", currency="usd", amount_off=2500)
    new = stripe.get("/v1/coupons/REUSE")
    assert new["created"] != old["created"]
    yield stripe.event("coupon.created", new)


def coupon_id_reused_in_the_dashboard(stripe: Stripe) -> Iterator[dict[str, Any]]:
    return _coupon_id_reused(stripe, made_by_the_library=False)


def coupon_id_reused_after_the_library(stripe: Stripe) -> Iterator[dict[str, Any]]:
    return _coupon_id_reused(stripe, made_by_the_library=True)


def customer(stripe: Stripe) -> Iterator[dict[str, Any]]:
    """A customer made through the library, then described and deleted in the dashboard."""
    made = make_customer(stripe.fake, stripe.user)
    path = f"/v1/customers/{made.stripe_customer_id}"
    yield stripe.event("customer.created", stripe.get(path))
    updated = stripe.dashboard("POST", path, description="VIP", **{"metadata[tier]": "gold"})
    yield stripe.event(
        "customer.updated", updated, previous={"description": made.stripe_response["description"]}
    )
    stripe.dashboard("DELETE", path)
    yield stripe.event("customer.deleted", updated)


def customer_source(stripe: Stripe) -> Iterator[dict[str, Any]]:
    """A second card of a library-made customer, added, renamed and removed in the dashboard."""
    made = make_customer(stripe.fake, stripe.user)
    path = f"/v1/customers/{made.stripe_customer_id}/sources"
    card = stripe.dashboard("POST", path, source=stripe.fake.card_token("5555555555554444")["id"])
    yield stripe.event("customer.source.created", card)
    updated = stripe.dashboard("POST", f"{path}/{card['id']}", name="Alice A.")
    yield stripe.event("customer.source.updated", updated, previous={"name": None})
    stripe.dashboard("DELETE", f"{path}/{card['id']}")
    yield stripe.event("customer.source.deleted", updated)


def _charge(stripe: Stripe, answer_lost: bool) -> Iterator[dict[str, Any]]:
    make_customer(stripe.fake, stripe.user)
    charge = StripeCharge.objects.create(user=stripe.user, amount=1000, description="Order #1")
    if answer_lost:
        stripe.fake.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")
        with pytest.raises(StripeInternalError):
            charge.charge()
        [made] = stripe.fake.get("/v1/charges", customer=charge.customer.stripe_customer_id)["data"]
    else:
        made = charge.charge()
    path = f"/v1/charges/{made['id']}"
    yield stripe.event("charge.succeeded", stripe.get(path))
    updated = stripe.dashboard("POST", path, description="Order #1 (gift)")
    yield stripe.event("charge.updated", updated, previous={"description": "Order #1"})
    stripe.dashboard("POST", "/v1/refunds", charge=made["id"])
    yield stripe.event("charge.refunded", stripe.get(path))


def charge_recorded(stripe: Stripe) -> Iterator[dict[str, Any]]:
    """A charge made through the library (its answer recorded), refunded in the dashboard."""
    return _charge(stripe, answer_lost=False)


def charge_answer_lost(stripe: Stripe) -> Iterator[dict[str, Any]]:
    """A charge made through the library whose answer was lost, refunded in the dashboard."""
    return _charge(stripe, answer_lost=True)


def subscription(stripe: Stripe) -> Iterator[dict[str, Any]]:
    """A subscription made through the library, set to end at the period end, then ended."""
    plan = stripe.request.getfixturevalue("plan")
    make_customer(stripe.fake, stripe.user)
    made = StripeSubscription.objects.create(user=stripe.user, plan=plan, metadata={"order": "7"})
    made.create_at_stripe()
    path = f"/v1/subscriptions/{made.stripe_subscription_id}"
    yield stripe.event("customer.subscription.created", stripe.get(path))
    updated = stripe.dashboard("POST", path, cancel_at_period_end="true")
    yield stripe.event("customer.subscription.updated", updated, previous={"cancel_at_period_end": False})
    canceled = stripe.dashboard("DELETE", path)
    yield stripe.event("customer.subscription.deleted", canceled)


def charge_declined_answer_lost(stripe: Stripe) -> Iterator[dict[str, Any]]:
    """A declined charge whose answer was lost (charge.failed: duplicates only)."""
    make_customer(stripe.fake, stripe.user, DECLINED_ON_CHARGE)
    charge = StripeCharge.objects.create(user=stripe.user, amount=1000, description="Order #1")
    stripe.fake.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")
    with pytest.raises(StripeInternalError):
        charge.charge()
    [made] = stripe.fake.get("/v1/charges", customer=charge.customer.stripe_customer_id)["data"]
    assert made["status"] == "failed"
    yield stripe.event("charge.failed", made)


def charge_disputed(stripe: Stripe) -> Iterator[dict[str, Any]]:
    """A dispute of a charge made through the library (charge.dispute.created: duplicates only)."""
    make_customer(stripe.fake, stripe.user)
    charge = StripeCharge.objects.create(user=stripe.user, amount=1000, description="Order #1")
    charge.charge()
    dispute = stripe_object("dispute", charge=charge.stripe_charge_id, amount=1000, status="needs_response")
    yield stripe.event("charge.dispute.created", dispute)


def plan_in_the_dashboard(stripe: Stripe) -> Iterator[dict[str, Any]]:
    """A plan made through the library, given metadata, archived and deleted in the dashboard."""
    plan = stripe.request.getfixturevalue("plan")
    path = f"/v1/plans/{plan.stripe_plan_id}"
    tagged = stripe.dashboard("POST", path, **{"metadata[tier]": "old"})
    yield stripe.event("plan.updated", tagged, previous={"metadata": {}})
    archived = stripe.dashboard("POST", path, active="false", trial_period_days="14")
    yield stripe.event("plan.updated", archived, previous={"active": True, "trial_period_days": None})
    stripe.dashboard("DELETE", path)
    yield stripe.event("plan.deleted", archived)


def price_from_the_library(stripe: Stripe) -> Iterator[dict[str, Any]]:
    """A product and its price made through the library; the price named and archived in the dashboard."""
    product = StripeProduct.objects.create(name="Tea")
    product.create_at_stripe()
    price = StripePrice(product=product, unit_amount=900, currency="usd", recurring_interval="month")
    price.create_at_stripe()
    path = f"/v1/prices/{price.stripe_price_id}"
    yield stripe.event("price.created", stripe.get(path))
    named = stripe.dashboard("POST", path, nickname="Monthly tea", lookup_key="tea-monthly")
    yield stripe.event("price.updated", named, previous={"nickname": None, "lookup_key": None})
    archived = stripe.dashboard("POST", path, active="false")
    yield stripe.event("price.updated", archived, previous={"active": True})


def catalog_in_the_dashboard(stripe: Stripe) -> Iterator[dict[str, Any]]:
    """A product and its price made in the dashboard, the price then archived: the price's events
    may arrive before its product's."""
    product = stripe.dashboard("POST", "/v1/products", name="Coffee")
    yield stripe.event("product.created", product)
    price = stripe.dashboard("POST", "/v1/prices", product=product["id"], currency="usd", unit_amount="1200")
    yield stripe.event("price.created", price)
    archived = stripe.dashboard("POST", f"/v1/prices/{price['id']}", active="false")
    yield stripe.event("price.updated", archived, previous={"active": True})


def product_in_the_dashboard(stripe: Stripe) -> Iterator[dict[str, Any]]:
    """A product never mirrored here: created, renamed, deleted in the dashboard."""
    product = stripe.dashboard("POST", "/v1/products", name="Cocoa")
    yield stripe.event("product.created", product)
    renamed = stripe.dashboard("POST", f"/v1/products/{product['id']}", name="Hot cocoa")
    yield stripe.event("product.updated", renamed, previous={"name": "Cocoa"})
    stripe.dashboard("DELETE", f"/v1/products/{product['id']}")
    yield stripe.event("product.deleted", renamed)


def play(stripe: Stripe, scenario: Scenario, steps: int | None = None) -> list[dict[str, Any]]:
    """Make the scenario's changes at the fake (the first ``steps`` only); its events in Stripe's order."""
    return list(itertools.islice(scenario(stripe), steps))


@pytest.fixture
def stripe(fake_stripe: Any, user: Any, request: pytest.FixtureRequest) -> Stripe:
    return Stripe(fake=fake_stripe, user=user, request=request)


# --- outcome: rows and signals -------------------------------------------------------------------------

# Every row an event may create, change or leave behind, keyed by what names it for Stripe.
MIRRORED: dict[type[models.Model], Callable[[dict[str, Any]], tuple]] = {
    StripeCoupon: lambda row: (row["coupon_id"], row["created"]),
    StripeCustomer: lambda row: (row["stripe_customer_id"],),
    StripeCharge: lambda row: (str(row["uuid"]),),
    StripeRefund: lambda row: (row["stripe_refund_id"],),
    StripeSubscription: lambda row: (str(row["uuid"]),),
    StripeSubscriptionPlan: lambda row: (row["stripe_plan_id"],),
    StripeProduct: lambda row: (row["stripe_product_id"],),
    StripePrice: lambda row: (row["stripe_price_id"],),
    StripeTombstone: lambda row: (row["object_type"], row["stripe_id"], row["stripe_created"]),
}


def bookkeeping(model: type[models.Model]) -> set[str]:
    """Columns left out of the comparison: the primary key and the local rows' own auto timestamps
    (``created``/``updated`` set by Django when the row is saved, different on every run). Nothing
    else: StripeCoupon.created is Stripe's creation time (not automatic) and is compared."""
    return {
        f.attname
        for f in model._meta.concrete_fields
        if f.primary_key or getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    }


def rows() -> dict[str, dict[tuple, dict[str, Any]]]:
    snapshot = {}
    for model, key in MIRRORED.items():
        skip = bookkeeping(model)
        values = [{k: v for k, v in row.items() if k not in skip} for row in model._base_manager.values()]
        keyed = {key(row): row for row in values}
        assert len(keyed) == len(values), f"two {model.__name__} rows for one Stripe object: {values}"
        snapshot[model.__name__] = keyed
    return snapshot


@dataclass
class Outcome:
    rows: dict[str, dict[tuple, dict[str, Any]]]
    signals: dict[str, list[Any]]  # per signal, what each send announced, in order
    parses: Counter[str]  # webhook_pre_parse sends per event id


CHANGE_SIGNALS = {
    "stripe_charge_succeeded": (stripe_charge_succeeded, lambda send: send["instance"].pk),
    "stripe_charge_refunded": (stripe_charge_refunded, lambda send: send["instance"].pk),
    "stripe_charge_card_exception": (
        stripe_charge_card_exception,
        lambda send: (send["instance"].pk, send["exception"].code, send["exception"].decline_code),
    ),
    "stripe_charge_disputed": (
        stripe_charge_disputed,
        lambda send: (send["charge"] and send["charge"].pk, send["dispute"]["id"], send["event_action"]),
    ),
}


@contextlib.contextmanager
def recording() -> Iterator[Callable[[], Outcome]]:
    """Signals sent in the block; the outcome (with the rows as they are) when called."""
    with contextlib.ExitStack() as stack:
        sends = {name: stack.enter_context(received(signal)) for name, (signal, _) in CHANGE_SIGNALS.items()}
        parses = stack.enter_context(received(webhook_pre_parse))

        def outcome() -> Outcome:
            return Outcome(
                rows=rows(),
                signals={name: [what(s) for s in sends[name]] for name, (_, what) in CHANGE_SIGNALS.items()},
                parses=Counter(send["instance"].pk for send in parses),
            )

        yield outcome


def deliver_all(client: Any, events: list[dict[str, Any]]) -> Outcome:
    with recording() as outcome:
        for event in events:
            deliver(client, event)
        return outcome()


class _RolledBack(Exception):
    pass


def in_order(client: Any, events: list[dict[str, Any]]) -> Outcome:
    """The outcome of delivering ``events`` in Stripe's order; the database is left as it was."""
    before = rows()
    result: list[Outcome] = []
    with contextlib.suppress(_RolledBack), transaction.atomic():
        result.append(deliver_all(client, events))
        raise _RolledBack
    assert rows() == before
    return result[0]


def differences(expected: Outcome, actual: Outcome) -> list[str]:
    """What differs, field by field (empty when nothing does)."""
    found = []
    for model, expected_rows in expected.rows.items():
        actual_rows = actual.rows[model]
        for key in expected_rows.keys() - actual_rows.keys():
            found.append(f"{model} {key}: missing (in order: {expected_rows[key]})")
        for key in actual_rows.keys() - expected_rows.keys():
            found.append(f"{model} {key}: extra row {actual_rows[key]}")
        for key in expected_rows.keys() & actual_rows.keys():
            want, got = expected_rows[key], actual_rows[key]
            found += [
                f"{model} {key}.{name}: {_changed(got[name], want[name])}"
                for name in want
                if want[name] != got[name]
            ]
    for name, sends in expected.signals.items():
        if actual.signals[name] != sends:
            found.append(f"{name} sent {actual.signals[name]} (in order: {sends})")
    if actual.parses != expected.parses:
        found.append(f"webhook_pre_parse sent {dict(actual.parses)} (in order: {dict(expected.parses)})")
    return found


def _changed(got: Any, want: Any) -> str:
    if isinstance(got, dict) and isinstance(want, dict):  # a Stripe object: the keys that differ
        keys = sorted(k for k in got.keys() | want.keys() if got.get(k, ...) != want.get(k, ...))
        got, want = {k: got.get(k, "<absent>") for k in keys}, {k: want.get(k, "<absent>") for k in keys}
    return f"{got!r} (in order: {want!r})"


def assert_same(expected: Outcome, actual: Outcome, events: list[dict[str, Any]]) -> None:
    found = differences(expected, actual)
    assert not found, "\n".join(["arrival order: " + ", ".join(e["type"] for e in events), *found])


def assert_only_reads(stripe_calls: StripeCalls) -> None:
    """Handlers read Stripe (on a tie) and never write to it."""
    assert [call for call in stripe_calls() if call[0] != "GET"] == []


def order_id(order: tuple[int, ...]) -> str:
    return "-".join(str(i + 1) for i in order)


ORDERS = list(itertools.permutations(range(3)))


# --- every order of arrival -----------------------------------------------------------------------------


def _one(outcome: Outcome, model: type[models.Model]) -> dict[str, Any]:
    [row] = outcome.rows[model.__name__].values()
    return row


def _coupon_deleted(outcome: Outcome) -> None:
    assert _one(outcome, StripeCoupon)["is_deleted"] is True
    assert _one(outcome, StripeCoupon)["metadata"] == {"tier": "gold"}


def _customer_inactive(outcome: Outcome) -> None:
    assert _one(outcome, StripeCustomer)["is_active"] is False


def _card_removed(outcome: Outcome) -> None:
    row = _one(outcome, StripeCustomer)
    assert len(row["sources"]) == 1 and row["sources"][0]["id"] == row["default_source"]
    assert row["is_active"] is True


def _charged_and_refunded(signals: dict[str, int]) -> Callable[[Outcome], None]:
    def check(outcome: Outcome) -> None:
        row = _one(outcome, StripeCharge)
        assert (row["is_charged"], row["is_refunded"], row["amount_refunded"]) == (True, True, 1000)
        assert {name: len(sends) for name, sends in outcome.signals.items() if sends} == signals

    return check


def _canceled(outcome: Outcome) -> None:
    row = _one(outcome, StripeSubscription)
    assert (row["status"], row["at_period_end"]) == ("canceled", True) and row["canceled_at"] is not None


def _plan_deleted(outcome: Outcome) -> None:
    row = _one(outcome, StripeSubscriptionPlan)
    assert (row["is_deleted"], row["active"], row["trial_period_days"]) == (True, False, 14)
    assert row["metadata"] == {"tier": "old"} and row["is_created_at_stripe"] is True


def _price_archived(outcome: Outcome) -> None:
    row = _one(outcome, StripePrice)
    assert (row["active"], row["nickname"], row["lookup_key"]) == (False, "Monthly tea", "tea-monthly")


def _dashboard_catalog(outcome: Outcome) -> None:
    product, price = _one(outcome, StripeProduct), _one(outcome, StripePrice)
    assert (product["name"], price["product_id"], price["unit_amount"]) == (
        "Coffee",
        product["stripe_product_id"],
        1200,
    )
    assert price["active"] is False and price["is_created_at_stripe"] is True


# What in-order delivery must end with (so that "as in order" is not vacuous).
IN_ORDER_ENDS: dict[Scenario, Callable[[Outcome], None]] = {
    coupon_from_the_library: _coupon_deleted,
    customer: _customer_inactive,
    customer_source: _card_removed,
    # charge() announced the charge itself; the webhooks announce the dashboard's refund.
    charge_recorded: _charged_and_refunded({"stripe_charge_refunded": 1}),
    # The webhooks are the first to tell that the charge succeeded.
    charge_answer_lost: _charged_and_refunded({"stripe_charge_succeeded": 1, "stripe_charge_refunded": 1}),
    subscription: _canceled,
    plan_in_the_dashboard: _plan_deleted,
    price_from_the_library: _price_archived,
    catalog_in_the_dashboard: _dashboard_catalog,
}


@pytest.mark.parametrize("order", ORDERS, ids=order_id)
@pytest.mark.parametrize("scenario", list(IN_ORDER_ENDS))
def test_every_order_ends_as_in_order(client, stripe, scenario, order):
    events = play(stripe, scenario)
    expected = in_order(client, events)
    IN_ORDER_ENDS[scenario](expected)
    arrival = [events[i] for i in order]
    stripe_calls = StripeCalls(stripe.fake)

    actual = deliver_all(client, arrival)

    assert_same(expected, actual, arrival)
    assert_only_reads(stripe_calls)


@pytest.mark.parametrize("order", ORDERS, ids=order_id)
def test_a_coupon_deleted_in_the_dashboard_never_comes_back(client, stripe, order):
    """Never mirrored here: in any order the coupon ends deleted as in order, or was never made
    here at all (a deletion that came first leaves nothing to mark); never live."""
    events = play(stripe, coupon_in_the_dashboard)
    expected = in_order(client, events)
    assert [row["is_deleted"] for row in expected.rows["StripeCoupon"].values()] == [True]
    arrival = [events[i] for i in order]
    stripe_calls = StripeCalls(stripe.fake)

    actual = deliver_all(client, arrival)

    assert not StripeCoupon.objects.filter(coupon_id="DASH25").exists()  # never live again
    if not actual.rows["StripeCoupon"]:
        actual.rows["StripeCoupon"] = expected.rows["StripeCoupon"]  # never made here: all else as in order
    assert_same(expected, actual, arrival)
    assert_only_reads(stripe_calls)


@pytest.mark.parametrize("order", ORDERS, ids=order_id)
def test_a_product_deleted_in_the_dashboard_never_comes_back(client, stripe, order):
    """Never mirrored here: in any order the product ends deleted as in order, or was never made
    here at all (a deletion that came first leaves only its tombstone); never live."""
    events = play(stripe, product_in_the_dashboard)
    expected = in_order(client, events)
    assert [row["is_deleted"] for row in expected.rows["StripeProduct"].values()] == [True]
    arrival = [events[i] for i in order]
    stripe_calls = StripeCalls(stripe.fake)

    actual = deliver_all(client, arrival)

    assert not StripeProduct.objects.filter(is_deleted=False).exists()  # never live again
    if not actual.rows["StripeProduct"]:
        actual.rows["StripeProduct"] = expected.rows["StripeProduct"]  # never made here: all else as in order
    assert_same(expected, actual, arrival)
    assert_only_reads(stripe_calls)


@pytest.mark.parametrize("order", ORDERS, ids=order_id)
@pytest.mark.parametrize("scenario", [coupon_id_reused_in_the_dashboard, coupon_id_reused_after_the_library])
def test_a_reused_coupon_id_ends_with_one_live_row_for_the_new_coupon(client, stripe, scenario, order):
    """REUSE made (T1), deleted (T2), made again (T3): the T3 coupon is the one live row, as in
    order; the old one ends deleted as in order, or (never mirrored here) absent."""
    events = play(stripe, scenario)
    new_created = StripeCoupon.values_from_stripe(events[2]["data"]["object"])["created"]
    expected = in_order(client, events)
    assert sorted(row["is_deleted"] for row in expected.rows["StripeCoupon"].values()) == [False, True]
    arrival = [events[i] for i in order]
    stripe_calls = StripeCalls(stripe.fake)

    actual = deliver_all(client, arrival)

    [live] = StripeCoupon.objects.filter(coupon_id="REUSE")
    assert live.created == new_created and live.duration == "once"
    coupons = actual.rows["StripeCoupon"]
    if len(coupons) == 1 and scenario is coupon_id_reused_in_the_dashboard:
        # The old coupon was never mirrored here: its late events leave nothing behind.
        actual.rows["StripeCoupon"] = {**expected.rows["StripeCoupon"], **coupons}
    assert_same(expected, actual, arrival)
    assert_only_reads(stripe_calls)


# --- duplicates ----------------------------------------------------------------------------------------

EVENT_TYPES: dict[Scenario, list[str]] = {
    coupon_in_the_dashboard: ["coupon.created", "coupon.updated", "coupon.deleted"],
    coupon_from_the_library: ["coupon.created", "coupon.updated", "coupon.deleted"],
    customer: ["customer.created", "customer.updated", "customer.deleted"],
    customer_source: ["customer.source.created", "customer.source.updated", "customer.source.deleted"],
    charge_recorded: ["charge.succeeded", "charge.updated", "charge.refunded"],
    charge_answer_lost: ["charge.succeeded", "charge.updated", "charge.refunded"],
    subscription: [
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    ],
    plan_in_the_dashboard: ["plan.updated", "plan.updated", "plan.deleted"],
    price_from_the_library: ["price.created", "price.updated", "price.updated"],
    catalog_in_the_dashboard: ["product.created", "price.created", "price.updated"],
    product_in_the_dashboard: ["product.created", "product.updated", "product.deleted"],
    charge_declined_answer_lost: ["charge.failed"],
    charge_disputed: ["charge.dispute.created"],
}
DUPLICATED = [(scenario, step) for scenario, types in EVENT_TYPES.items() for step in range(len(types))]


def redeliver_and_reparse(client: Any, event: dict[str, Any]) -> None:
    """Stripe's redelivery (answered "duplicate", parsed no more), then a forced re-parse of the
    stored row (``process(force=True)``, the supported way to run its handlers again)."""
    deliver(client, event, expected="duplicate")
    webhook = StripeWebhook.objects.get(pk=event["id"])
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert webhook.process(force=True) is True
    webhook.refresh_from_db()
    assert (webhook.is_parsed, webhook.parse_error, webhook.parse_attempts) == (True, "", 2)
    deliver(client, event, expected="duplicate")


@pytest.mark.parametrize(
    ("scenario", "step"), DUPLICATED, ids=[f"{s.__name__}-{EVENT_TYPES[s][i]}" for s, i in DUPLICATED]
)
def test_a_duplicate_ends_as_one_delivery(client, stripe, scenario, step):
    """The scenario's events up to ``step`` in order (the fake in the state the last one tells),
    then that last event again: Stripe's redelivery parses nothing, and a forced re-parse (a tie
    with itself: it re-reads Stripe) changes nothing and announces no change again. It does
    announce its parse (``webhook_pre_parse``, with ``instance.reparsing`` set)."""
    *earlier, event = play(stripe, scenario, step + 1)
    assert event["type"] == EVENT_TYPES[scenario][step]
    for previous in earlier:
        deliver(client, previous)
    once = in_order(client, [event])
    stripe_calls = StripeCalls(stripe.fake)

    with recording() as outcome, received(webhook_pre_parse) as parses:
        deliver(client, event)
        redeliver_and_reparse(client, event)
        twice = outcome()

    assert [send["instance"].reparsing for send in parses] == [False, True]
    assert twice.parses == Counter({event["id"]: 2})
    twice.parses = once.parses  # the forced re-parse is a parse; no change may be announced twice
    assert_same(once, twice, [event, event])
    assert_only_reads(stripe_calls)


@pytest.mark.parametrize("scenario", [*IN_ORDER_ENDS, coupon_in_the_dashboard, product_in_the_dashboard])
def test_every_event_again_after_the_last_changes_nothing(client, stripe, scenario):
    """All events in order, then each of them again in order (redelivered, then re-parsed on
    purpose, e.g. from the admin): the older ones are skipped, the last one re-reads Stripe."""
    events = play(stripe, scenario)
    expected = in_order(client, events)
    stripe_calls = StripeCalls(stripe.fake)

    with recording() as outcome:
        for event in events:
            deliver(client, event)
        for event in events:
            redeliver_and_reparse(client, event)
        actual = outcome()

    assert actual.parses == Counter({event["id"]: 2 for event in events})
    actual.parses = expected.parses
    assert_same(expected, actual, events + events)
    assert_only_reads(stripe_calls)


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
