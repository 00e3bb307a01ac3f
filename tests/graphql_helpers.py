"""Helpers shared by the GraphQL tests: POST a query as JSON to ``/graphql/``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from graphql_relay import from_global_id, to_global_id

from aa_stripe.models import (
    StripeCharge,
    StripeCoupon,
    StripeCustomer,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    StripeSubscriptionPlan,
)

GRAPHQL_URL = "/graphql/"


def gql(client: Any, query: str, variables: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """POST ``query`` (and ``variables``) as JSON to the ready view and return the parsed body.

    ``extra`` goes to ``client.post`` (e.g. ``HTTP_X_CSRFTOKEN=...``). The HTTP status is kept on
    the result as ``result["_status"]`` only when it is not 200, so ordinary assertions on
    ``data``/``errors`` stay simple.
    """
    payload: dict[str, Any] = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    response = client.post(GRAPHQL_URL, data=json.dumps(payload), content_type="application/json", **extra)
    body = json.loads(response.content)
    if response.status_code != 200:
        body["_status"] = response.status_code
    return body


def codes(payload: dict[str, Any]) -> list[tuple[str | None, str]]:
    """The ``(field, code)`` of every error in a mutation payload."""
    return [(error["field"], error["code"]) for error in payload["errors"]]


def assert_denied(body: dict[str, Any], name: str) -> None:
    """``name`` resolved to null with exactly one PERMISSION_DENIED error."""
    assert body["data"] == {name: None}
    [error] = body["errors"]
    assert error["extensions"]["code"] == "PERMISSION_DENIED"


# ---------------------------------------------------------------------------------------------
# Rows made directly with the ORM (no Stripe): fast, and deterministic where it matters.
# ---------------------------------------------------------------------------------------------

FIXED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
VIEW_PERMISSIONS = (
    "view_stripecustomer",
    "view_stripecharge",
    "view_stripesubscription",
    "view_stripecoupon",
    "view_stripesubscriptionplan",
    "view_stripeproduct",
    "view_stripeprice",
)


def make_user(username: str, *codenames: str, is_staff: bool = False) -> Any:
    """A user with ``aa_stripe`` permissions ``codenames``."""
    user = get_user_model().objects.create_user(username=username, password="pw", is_staff=is_staff)
    if codenames:
        perms = Permission.objects.filter(content_type__app_label="aa_stripe", codename__in=codenames)
        assert perms.count() == len(codenames), codenames
        user.user_permissions.add(*perms)
    return user


def make_viewer(username: str) -> Any:
    """A staff user with every ``aa_stripe`` view permission."""
    return make_user(username, *VIEW_PERMISSIONS, is_staff=True)


def staff(username: str, *codenames: str) -> Any:
    """A staff user with ``aa_stripe`` permissions ``codenames``, loaded afresh (no stale perm cache)."""
    user = make_user(username, *codenames, is_staff=True)
    return get_user_model().objects.get(pk=user.pk)


def signed_in(user: Any) -> Client:
    """A test client logged in as ``user``."""
    client = Client()
    client.force_login(user)
    return client


def card(number: int) -> dict[str, Any]:
    return {
        "id": f"card_{number:04d}",
        "object": "card",
        "brand": "Visa",
        "last4": f"{4242 + number:04d}"[-4:],
        "exp_month": 12,
        "exp_year": 2030,
        "country": "US",
        "funding": "credit",
        "fingerprint": "never shown",
    }


def make_customers(user: Any, count: int = 1, prefix: str = "", **fields: Any) -> list[StripeCustomer]:
    rows = [
        StripeCustomer(
            user=user,
            stripe_customer_id=f"cus_{prefix or user.username}_{i}",
            is_created_at_stripe=True,
            sources=[card(i), card(i + 100)],
            default_source=f"card_{i:04d}",
            stripe_js_response={"id": "tok_secret_never_shown"},
            **fields,
        )
        for i in range(count)
    ]
    return _fixed_times(StripeCustomer.objects.bulk_create(rows))


def make_charges(
    user: Any, customer: StripeCustomer | None, count: int = 1, **fields: Any
) -> list[StripeCharge]:
    fields.setdefault("amount", 1000)
    fields.setdefault("description", "A charge")
    rows = [
        StripeCharge(user=user, customer=customer, comment="internal note", currency="usd", **fields)
        for _ in range(count)
    ]
    return _fixed_times(StripeCharge.objects.bulk_create(rows))


def make_plans(count: int = 1, prefix: str = "", **fields: Any) -> list[StripeSubscriptionPlan]:
    fields.setdefault("is_created_at_stripe", True)
    prefix = prefix or f"plan_{uuid.uuid4().hex[:8]}_"
    rows = [
        StripeSubscriptionPlan(
            name=f"plan {i}",
            amount=500 + i,
            currency="usd",
            interval="month",
            interval_count=1,
            stripe_plan_id=f"{prefix}{i}" if fields["is_created_at_stripe"] else "",
            **fields,
        )
        for i in range(count)
    ]
    return _fixed_times(StripeSubscriptionPlan.objects.bulk_create(rows))


def make_coupons(count: int = 1, prefix: str = "SAVE", **fields: Any) -> list[StripeCoupon]:
    """Coupons without Stripe (``bulk_create`` skips ``StripeCoupon.save``, which calls Stripe)."""
    fields.setdefault("is_deleted", False)
    rows = [
        StripeCoupon(
            coupon_id=f"{prefix}{i}",
            amount_off=Decimal("10.000"),
            currency="usd",
            duration="once",
            valid=not fields["is_deleted"],
            is_created_at_stripe=True,
            created=FIXED,
            **fields,
        )
        for i in range(count)
    ]
    return _fixed_times(StripeCoupon.objects.bulk_create(rows))


def make_products(count: int = 1, prefix: str = "", **fields: Any) -> list[StripeProduct]:
    """Products for sale, without Stripe."""
    prefix = prefix or f"prod_{uuid.uuid4().hex[:8]}_"
    rows = [
        StripeProduct(
            stripe_product_id=f"{prefix}{i}", name=f"product {i}", is_created_at_stripe=True, **fields
        )
        for i in range(count)
    ]
    return _fixed_times(StripeProduct.objects.bulk_create(rows))


def make_prices(products: list[StripeProduct], per_product: int = 1, **fields: Any) -> list[StripePrice]:
    """Monthly prices for sale of each of ``products``, without Stripe."""
    rows = [
        StripePrice(
            stripe_price_id=f"price_{uuid.uuid4().hex[:12]}",
            product=product,
            unit_amount=700 + i,
            currency="usd",
            recurring_interval="month",
            recurring_interval_count=1,
            lookup_key=f"{product.stripe_product_id}-{i}",
            is_created_at_stripe=True,
            **fields,
        )
        for product in products
        for i in range(per_product)
    ]
    return _fixed_times(StripePrice.objects.bulk_create(rows))


def make_subscriptions(
    user: Any,
    plan: StripeSubscriptionPlan,
    coupon: StripeCoupon | None,
    count: int = 1,
    prefix: str = "",
    **fields: Any,
) -> list[StripeSubscription]:
    fields.setdefault("status", "active")
    prefix = prefix or f"sub_{uuid.uuid4().hex[:8]}_"
    rows = [
        StripeSubscription(
            user=user,
            plan=plan,
            coupon=coupon,
            stripe_subscription_id=f"{prefix}{i}",
            is_created_at_stripe=True,
            **fields,
        )
        for i in range(count)
    ]
    return _fixed_times(StripeSubscription.objects.bulk_create(rows))


def _fixed_times(rows: list[Any]) -> list[Any]:
    """Give bulk-created rows fixed ``created``/``updated`` times (auto_now fields ignore arguments)."""
    if rows:
        model = type(rows[0])
        model._base_manager.filter(pk__in=[row.pk for row in rows]).update(created=FIXED, updated=FIXED)
        for row in rows:
            row.created = row.updated = FIXED
    return rows


def global_id(type_name: str, pk: Any) -> str:
    return to_global_id(type_name, pk)


def normalize_ids(value: Any, seen: dict[str, str] | None = None) -> Any:
    """Replace global ids (which hold database keys) by ``<Type #n>`` in order of appearance."""
    seen = {} if seen is None else seen
    if isinstance(value, dict):
        return {
            key: normalize_ids(item, seen) if key != "id" else _stable(item, seen)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [normalize_ids(item, seen) for item in value]
    return value


def _stable(value: Any, seen: dict[str, str]) -> Any:
    if not isinstance(value, str):
        return value
    try:
        type_name, _pk = from_global_id(value)
    except Exception:
        return value
    if not type_name.startswith("Stripe"):
        return value  # a card id (card_...), not a global id
    if value not in seen:
        count = sum(1 for known in seen.values() if known.startswith(f"<{type_name} "))
        seen[value] = f"<{type_name} #{count + 1}>"
    return seen[value]
