"""No write to Stripe ever runs while a transaction is open, on any path (PostgreSQL).

The guard (``aa_stripe.guard``) cannot vouch for itself: it only sees the transactions the library
marks. Here the fake Stripe's proxy looks at PostgreSQL itself as each write arrives: no backend of
the test database may be ``idle in transaction`` (a transaction left open while the caller waits
for Stripe). Every write path runs once: model methods, commands, GraphQL mutations over HTTP and
admin actions and views. ``transactional_db``: pytest-django's own test transaction would be one.
"""

from __future__ import annotations

import json
import threading
from io import StringIO
from typing import Any

import psycopg
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from graphql_relay import to_global_id

from aa_stripe.models import (
    StripeCharge,
    StripeCoupon,
    StripeCustomer,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    StripeSubscriptionPlan,
)
from tests.graphql_helpers import gql, signed_in, staff

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="pg_stat_activity is PostgreSQL's"),
]


class Watcher:
    """The proxy's observer: for each write to Stripe, the backends idle in a transaction."""

    def __init__(self) -> None:
        settings = connection.settings_dict
        self.dsn = {
            "dbname": settings["NAME"],
            "user": settings["USER"] or None,
            "password": settings["PASSWORD"] or None,
            "host": settings["HOST"] or None,
            "port": settings["PORT"] or None,
        }
        self.writes: list[str] = []
        self.violations: list[tuple[str, list[Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, request: Any) -> None:
        if request.method not in ("POST", "DELETE"):
            return
        with psycopg.connect(**{k: v for k, v in self.dsn.items() if v is not None}, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid, state, left(query, 120) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%%'",
                [self.dsn["dbname"]],
            ).fetchall()
        with self.lock:
            self.writes.append(f"{request.method} {request.path}")
            if rows:
                self.violations.append((f"{request.method} {request.path}", rows))


@pytest.fixture
def watcher(fake_stripe) -> Watcher:
    watcher = Watcher()
    fake_stripe.proxy.observer = watcher
    return watcher


def test_every_write_path_runs_with_no_transaction_open(fake_stripe, watcher, user, other_user):
    paths: dict[str, int] = {}

    def path(name: str) -> Any:
        class Counted:
            def __enter__(self) -> None:
                self.before = len(watcher.writes)

            def __exit__(self, *exc: object) -> None:
                paths[name] = len(watcher.writes) - self.before

        return Counted()

    # --- model methods ---
    with path("customer.create_at_stripe"):
        customer = StripeCustomer.objects.create(user=user, stripe_js_response=fake_stripe.card_token())
        customer.create_at_stripe()
    with path("customer.add_new_source"):
        customer.add_new_source(fake_stripe.card_token("5555555555554444")["id"])
    with path("customer.change_description"):
        customer.change_description("VIP")
    with path("charge.charge"):
        charge = StripeCharge.objects.create(user=user, amount=1000, description="Order")
        charge.charge()
    with path("charge.refund"):
        charge.refund(100)
    with path("plan.create_at_stripe"):
        plan = StripeSubscriptionPlan.objects.create(amount=500, name="gold", interval="month")
        plan.create_at_stripe()
    with path("subscription.create_at_stripe"):
        subscription = StripeSubscription.objects.create(user=user, plan=plan)
        subscription.create_at_stripe()
    with path("subscription.cancel(at_period_end)"):
        subscription.cancel(at_period_end=True)
    with path("subscription.cancel"):
        subscription.cancel()
    with path("coupon create/save/delete"):
        coupon = StripeCoupon.objects.create(coupon_id="WATCH", duration="once", percent_off=5)
        coupon.metadata = {"a": "1"}
        coupon.save()
        coupon.delete()
    with path("product/price.create_at_stripe"):
        product = StripeProduct.objects.create(name="Tea")
        product.create_at_stripe()
        StripePrice(product=product, unit_amount=500, currency="usd").create_at_stripe()

    # --- commands ---
    with path("charge_stripe"):
        StripeCharge.objects.create(user=user, amount=700, description="Cron")
        call_command("charge_stripe", stdout=StringIO())
    with path("end_subscriptions"):
        ending = StripeSubscription.objects.create(user=user, plan=plan, end_date=timezone.localdate())
        ending.create_at_stripe()
        StripeSubscription.objects.filter(pk=ending.pk).update(
            end_date=timezone.localdate() - timezone.timedelta(days=1)
        )
        call_command("end_subscriptions", "--now", stdout=StringIO())
    with path("reconcile_stripe_operations"):
        lost = StripeCharge.objects.create(user=user, amount=300, description="Lost")
        fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")
        with pytest.raises(Exception):  # noqa: B017 (the answer was lost: StripeInternalError)
            lost.charge()
        call_command("reconcile_stripe_operations", stdout=StringIO())

    # --- GraphQL over HTTP ---
    owner = signed_in(other_user)
    with path("createStripeCustomer"):
        body = gql(
            owner,
            "mutation($i: CreateStripeCustomerInput!) "
            "{ createStripeCustomer(input: $i) { errors { code } } }",
            {"i": {"stripeJsResponse": json.dumps(fake_stripe.card_token())}},
        )
        assert body["data"]["createStripeCustomer"]["errors"] == [], body
    with path("createStripeSubscription"):
        body = gql(
            owner,
            "mutation($i: CreateStripeSubscriptionInput!) { createStripeSubscription(input: $i) "
            "{ errors { code } subscription { id } } }",
            {"i": {"plan": to_global_id("StripeSubscriptionPlan", plan.pk)}},
        )
        sub_id = body["data"]["createStripeSubscription"]["subscription"]["id"]
    with path("cancelStripeSubscription"):
        gql(
            owner,
            "mutation($i: CancelStripeSubscriptionInput!) "
            "{ cancelStripeSubscription(input: $i) { errors { code } } }",
            {"i": {"subscription": sub_id}},
        )
    boss = signed_in(
        staff(
            "boss",
            "add_stripecharge",
            "change_stripecharge",
            "add_stripecoupon",
            "change_stripecoupon",
            "delete_stripecoupon",
            "add_stripesubscriptionplan",
            "add_stripeproduct",
            "add_stripeprice",
        )
    )
    with path("createStripeCharge"):
        body = gql(
            boss,
            "mutation($i: CreateStripeChargeInput!) "
            "{ createStripeCharge(input: $i) { errors { code } charge { id } } }",
            {"i": {"user": str(user.pk), "amount": 900, "description": "GraphQL"}},
        )
        charge_id = body["data"]["createStripeCharge"]["charge"]["id"]
    with path("refundStripeCharge"):
        gql(
            boss,
            "mutation($i: RefundStripeChargeInput!) { refundStripeCharge(input: $i) { errors { code } } }",
            {"i": {"charge": charge_id, "amount": 100}},
        )
    with path("createStripeSubscriptionPlan"):
        gql(
            boss,
            "mutation($i: CreateStripeSubscriptionPlanInput!) { createStripeSubscriptionPlan(input: $i) "
            "{ errors { code } } }",
            {
                "i": {
                    "name": "Silver",
                    "amount": 300,
                    "currency": "usd",
                    "interval": "MONTH",
                    "intervalCount": 1,
                }
            },
        )
    with path("create/update/deleteStripeCoupon"):
        body = gql(
            boss,
            "mutation($i: CreateStripeCouponInput!) "
            "{ createStripeCoupon(input: $i) { errors { code } coupon { id } } }",
            {"i": {"couponId": "GQL5", "duration": "ONCE", "percentOff": "5"}},
        )
        coupon_id = body["data"]["createStripeCoupon"]["coupon"]["id"]
        gql(
            boss,
            "mutation($i: UpdateStripeCouponInput!) { updateStripeCoupon(input: $i) { errors { code } } }",
            {"i": {"coupon": coupon_id, "metadata": json.dumps({"b": "2"})}},
        )
        gql(
            boss,
            "mutation($i: DeleteStripeCouponInput!) { deleteStripeCoupon(input: $i) { errors { code } } }",
            {"i": {"coupon": coupon_id}},
        )

    with path("createStripeProduct/createStripePrice"):
        body = gql(
            boss,
            "mutation($i: CreateStripeProductInput!) "
            "{ createStripeProduct(input: $i) { errors { code } product { id } } }",
            {"i": {"name": "Coffee"}},
        )
        product_id = body["data"]["createStripeProduct"]["product"]["id"]
        body = gql(
            boss,
            "mutation($i: CreateStripePriceInput!) { createStripePrice(input: $i) { errors { code } } }",
            {"i": {"product": product_id, "unitAmount": 700}},
        )
        assert body["data"]["createStripePrice"]["errors"] == [], body

    # --- admin actions and views ---
    admin = Client()
    admin.force_login(staff_superuser())
    with path("admin: charge now, refund"):
        pending = StripeCharge.objects.create(user=user, amount=400, description="Admin")
        changelist = reverse("admin:aa_stripe_stripecharge_changelist")
        admin.post(changelist, {"action": "charge_now", ACTION_CHECKBOX_NAME: [pending.pk]})
        admin.post(
            changelist, {"action": "refund_charges", "confirmed": "yes", ACTION_CHECKBOX_NAME: [pending.pk]}
        )
    with path("admin: coupon add, change, delete views"):
        add = reverse("admin:aa_stripe_stripecoupon_add")
        admin.post(add, {"coupon_id": "ADMIN5", "duration": "once", "percent_off": "5", "metadata": "{}"})
        made = StripeCoupon.objects.get(coupon_id="ADMIN5")
        change = reverse("admin:aa_stripe_stripecoupon_change", args=[made.pk])
        page = admin.get(change)
        form = {k: v for k, v in page.context["adminform"].form.initial.items() if v is not None}
        admin.post(change, {**form, "metadata": json.dumps({"c": "3"})})
        admin.post(reverse("admin:aa_stripe_stripecoupon_delete", args=[made.pk]), {"post": "yes"})

    with path("admin: create products and prices at Stripe"):
        draft = StripeProduct.objects.create(name="Draft")
        draft_price = StripePrice.objects.create(product=draft, unit_amount=100, currency="usd")
        for model, row in ((StripeProduct, draft), (StripePrice, draft_price)):
            changelist = reverse(f"admin:aa_stripe_{model._meta.model_name}_changelist")
            admin.post(changelist, {"action": "create_at_stripe", ACTION_CHECKBOX_NAME: [row.pk]})

    assert watcher.violations == []
    silent = [name for name, writes in paths.items() if writes == 0]
    assert silent == [], f"paths that wrote nothing to Stripe: {silent}; writes: {watcher.writes}"


def staff_superuser() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser(username="root", email="root@example.com", password="pw")


def test_the_watcher_sees_a_write_made_inside_a_transaction(fake_stripe, watcher, user):
    """The negative control: a host that calls charge() inside its own transaction is seen."""
    from django.db import transaction

    StripeCustomer.objects.create(user=user, stripe_js_response=fake_stripe.card_token()).create_at_stripe()
    charge = StripeCharge.objects.create(user=user, amount=1000, description="Inside")
    with transaction.atomic():
        charge.charge()

    assert [write for write, _rows in watcher.violations] == ["POST /v1/charges"]


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
