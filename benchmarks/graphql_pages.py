"""GraphQL pages: 100 charges and 100 subscriptions of one user, nested customer/plan/coupon; 100
prices for sale with their products; and 100 invoices of the user with their subscriptions.

    DJANGO_SETTINGS_MODULE=tests.settings .venv/bin/python benchmarks/graphql_pages.py
        [--rounds 7] [--requests 20] [--profile VARIANT]

Times three workloads, one POST each: ``stripeCharges(first: 100)`` + ``stripeSubscriptions(first:
100)``, ``stripePrices(first: 100)`` (``_prices_workload.py``) and ``stripeInvoices(first: 100)``
(``_invoices_workload.py``), through four views behind the
same middleware (tests/settings MIDDLEWARE) and the same session login (``Client.force_login``),
in-process with ``django.test.Client``:

* ``/graphql/`` the ready view of this package (``aa_stripe_graphql.views.graphql_view``)
* ``/plain/``   plain graphene-django ``GraphQLView`` over the same schema (reference)
* ``/core/``    bare graphql-core (``graphql_sync``) over an SDL schema with plain attribute/dict
  resolvers over the same ORM querysets (reference)
* ``/hand/``    a hand-written Django view returning the same fields as JSON from the ORM

Medians of alternating rounds (the order of the variants rotates each round), SQL queries per
request, and the ratio to the hand-written view, per workload; PASS/MISS for the 2.5x target of the
ready view.
Exits 0 when it ran (also on MISS), non-zero when it cannot run or the four answers differ.
Creates a test database (SQLite in memory, or the one DATABASE_URL names, under a unique name)
and destroys it at the end. Not a test: nothing here runs in the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

import _invoices_workload as invoice_pages  # noqa: E402
import _prices_workload as price_pages  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment, teardown_test_environment  # noqa: E402
from django.urls import clear_url_caches, include, path  # noqa: E402
from graphene_django.views import GraphQLView  # noqa: E402
from graphql import build_schema, graphql_sync  # noqa: E402
from graphql_relay import to_global_id  # noqa: E402

from aa_stripe.models import StripeCharge, StripeInvoice, StripeSubscription  # noqa: E402
from aa_stripe_graphql.schema import schema as stripe_schema  # noqa: E402

TARGET_RATIO = 2.5
PAGE = 100

QUERY = """
query Pages {
  stripeCharges(first: 100) {
    edges { node {
      id amount amountRefunded currency description isCharged created
      customer { stripeCustomerId defaultSourceCard { brand last4 } }
    } }
  }
  stripeSubscriptions(first: 100) {
    edges { node {
      id stripeSubscriptionId status created
      plan { name amount interval }
      coupon { couponId }
    } }
  }
}
"""
WORKLOADS = {
    "charges + subscriptions": json.dumps({"query": QUERY, "operationName": "Pages"}),
    "prices": json.dumps({"query": price_pages.PRICES_QUERY, "operationName": "Prices"}),
    "invoices": json.dumps({"query": invoice_pages.INVOICES_QUERY, "operationName": "Invoices"}),
}


# ---------------------------------------------------------------------------------------------
# The same querysets and permission filtering for /core/ and /hand/ (as the GraphQL types do).
# ---------------------------------------------------------------------------------------------


def visible(request: HttpRequest, queryset: Any, codename: str) -> Any:
    user = request.user
    if not user.is_authenticated:
        return queryset.none()
    if user.is_active and user.has_perm(f"aa_stripe.{codename}"):
        return queryset
    return queryset.filter(user_id=user.pk)


def charges(request: HttpRequest) -> Any:
    queryset = StripeCharge.objects.order_by("-created", "-pk").select_related("customer")
    return visible(request, queryset, "view_stripecharge")[:PAGE]


def subscriptions(request: HttpRequest) -> Any:
    queryset = StripeSubscription.objects.order_by("-pk").select_related("plan", "coupon")
    return visible(request, queryset, "view_stripesubscription")[:PAGE]


def visible_customer(request: HttpRequest, charge: StripeCharge) -> Any:
    customer = charge.customer
    if customer is None:
        return None
    user = request.user
    if customer.user_id == user.pk or (user.is_active and user.has_perm("aa_stripe.view_stripecustomer")):
        return customer
    return None


# ---------------------------------------------------------------------------------------------
# (d) the hand-written view
# ---------------------------------------------------------------------------------------------


def hand_view(request: HttpRequest) -> HttpResponse:
    operation = json.loads(request.body).get("operationName")  # read the same body as the others
    if operation == "Prices":
        return JsonResponse({"data": price_pages.hand_prices(request)})
    if operation == "Invoices":
        return JsonResponse({"data": invoice_pages.hand_invoices(request)})
    charge_edges = []
    for charge in charges(request):
        customer = visible_customer(request, charge)
        if customer is not None:
            card = customer.default_source_data
            customer = {
                "stripeCustomerId": customer.stripe_customer_id,
                "defaultSourceCard": {"brand": card.get("brand"), "last4": card.get("last4")}
                if card
                else None,
            }
        node = {
            "id": to_global_id("StripeCharge", charge.pk),
            "amount": charge.amount,
            "amountRefunded": charge.amount_refunded,
            "currency": charge.currency,
            "description": charge.description,
            "isCharged": charge.is_charged,
            "created": charge.created.isoformat(),
            "customer": customer,
        }
        charge_edges.append({"node": node})
    subscription_edges = []
    for sub in subscriptions(request):
        plan, coupon = sub.plan, sub.coupon
        node = {
            "id": to_global_id("StripeSubscription", sub.pk),
            "stripeSubscriptionId": sub.stripe_subscription_id,
            "status": sub.status.upper() if sub.status else None,
            "created": sub.created.isoformat(),
            "plan": {"name": plan.name, "amount": plan.amount, "interval": plan.interval.upper()},
            "coupon": {"couponId": coupon.coupon_id} if coupon else None,
        }
        subscription_edges.append({"node": node})
    data = {"stripeCharges": {"edges": charge_edges}, "stripeSubscriptions": {"edges": subscription_edges}}
    return JsonResponse({"data": data})


# ---------------------------------------------------------------------------------------------
# (c) bare graphql-core over an SDL schema, plain attribute/dict resolvers
# ---------------------------------------------------------------------------------------------

SDL = (
    """
scalar DateTime
enum StripePlanInterval { DAY WEEK MONTH YEAR }
enum StripeSubscriptionStatus {
  INCOMPLETE INCOMPLETE_EXPIRED TRIALING ACTIVE PAST_DUE CANCELED UNPAID PAUSED
}
type StripeCard { brand: String last4: String }
type StripeCustomer { id: ID! stripeCustomerId: String! defaultSourceCard: StripeCard }
type StripeCharge {
  id: ID! amount: Int amountRefunded: Int! currency: String! description: String! isCharged: Boolean!
  created: DateTime! customer: StripeCustomer
}
type StripeSubscriptionPlan { id: ID! name: String! amount: Int! interval: StripePlanInterval! }
type StripeCoupon { id: ID! couponId: String! }
type StripeSubscription {
  id: ID! stripeSubscriptionId: String status: StripeSubscriptionStatus created: DateTime!
  plan: StripeSubscriptionPlan! coupon: StripeCoupon
}
type StripeChargeEdge { node: StripeCharge }
type StripeChargeConnection { edges: [StripeChargeEdge]! }
type StripeSubscriptionEdge { node: StripeSubscription }
type StripeSubscriptionConnection { edges: [StripeSubscriptionEdge]! }
type Query {
  stripeCharges(first: Int): StripeChargeConnection
  stripeSubscriptions(first: Int): StripeSubscriptionConnection
}
"""
    + price_pages.PRICES_SDL
    + invoice_pages.INVOICES_SDL
)
CORE_SCHEMA = build_schema(SDL)
for _enum_name in ("StripePlanInterval", "StripeSubscriptionStatus", *invoice_pages.ENUMS):
    for _name, _value in CORE_SCHEMA.type_map[_enum_name].values.items():  # type: ignore[union-attr]
        _value.value = _name.lower()
CORE_SCHEMA.type_map["DateTime"].serialize = lambda value: value.isoformat()  # type: ignore[union-attr]

ATTRIBUTES = {
    "amountRefunded": "amount_refunded",
    "isCharged": "is_charged",
    "stripeCustomerId": "stripe_customer_id",
    "defaultSourceCard": "default_source_data",
    "stripeSubscriptionId": "stripe_subscription_id",
    "couponId": "coupon_id",
    **price_pages.ATTRIBUTES,
    **invoice_pages.ATTRIBUTES,
}


def core_resolver(source: Any, info: Any, **_args: Any) -> Any:
    name = info.field_name
    if isinstance(source, dict):
        return source.get(name)
    if name == "id":
        return to_global_id(info.parent_type.name, source.pk)
    if name == "customer":
        return visible_customer(info.context, source)
    if name == "recurring":
        return price_pages.recurring(source)
    if isinstance(source, StripeInvoice) and name == "created":
        return invoice_pages.created(source)
    if isinstance(source, StripeInvoice) and name == "subscription":
        return invoice_pages.visible_subscription(info.context, source)
    return getattr(source, ATTRIBUTES.get(name, name))


def core_view(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body)
    if body.get("operationName") == "Prices":
        root = price_pages.core_root(request)
    elif body.get("operationName") == "Invoices":
        root = invoice_pages.core_root(request)
    else:
        root = {
            "stripeCharges": {"edges": [{"node": c} for c in charges(request)]},
            "stripeSubscriptions": {"edges": [{"node": s} for s in subscriptions(request)]},
        }
    result = graphql_sync(
        CORE_SCHEMA,
        body["query"],
        root_value=root,
        context_value=request,
        operation_name=body.get("operationName"),
        field_resolver=core_resolver,
    )
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    return JsonResponse(payload)


# ---------------------------------------------------------------------------------------------
# URLs: a module of their own, named in ROOT_URLCONF.
# ---------------------------------------------------------------------------------------------

URLCONF = "benchmarks_graphql_pages_urls"
urlconf = types.ModuleType(URLCONF)
urlconf.urlpatterns = [  # type: ignore[attr-defined]
    path("graphql/", include("aa_stripe_graphql.urls")),
    path("plain/", GraphQLView.as_view(schema=stripe_schema)),
    path("core/", core_view),
    path("hand/", hand_view),
]
sys.modules[URLCONF] = urlconf

VARIANTS = {
    "graphql (ours)": "/graphql/",
    "plain graphene-django": "/plain/",
    "bare graphql-core": "/core/",
    "hand-written": "/hand/",
}


def seed() -> Any:
    from tests.graphql_helpers import (
        make_charges,
        make_coupons,
        make_customers,
        make_plans,
        make_subscriptions,
        make_user,
    )

    user = make_user("bench")
    other = make_user("someone_else")
    [customer] = make_customers(user)
    [other_customer] = make_customers(other)
    make_charges(user, customer, count=PAGE)
    make_charges(other, other_customer, count=10)  # filtered out
    [plan] = make_plans()
    [coupon] = make_coupons()
    subscriptions = make_subscriptions(user, plan, coupon, count=PAGE)
    make_subscriptions(other, plan, None, count=10)
    price_pages.seed()
    invoice_pages.seed(customer, subscriptions[:12], other_customer)
    return user


def post(client: Client, url: str, payload: str) -> dict[str, Any]:
    response = client.post(url, data=payload, content_type="application/json")
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}: {response.content[:500]!r}")
    return json.loads(response.content)


def check_answers(client: Client, payload: str) -> None:
    answers = {name: post(client, url, payload) for name, url in VARIANTS.items()}
    reference = answers["hand-written"]
    first_list = next(iter(reference["data"].values()))
    if len(first_list["edges"]) != PAGE:
        raise SystemExit("the hand-written view did not return a full page")
    for name, answer in answers.items():
        if answer != reference:
            raise SystemExit(f"{name} answered differently from the hand-written view: {str(answer)[:500]}")


def queries_per_request(client: Client, url: str, payload: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        post(client, url, payload)
    return len(captured.captured_queries)


def measure(client: Client, payload: str, rounds: int, requests: int) -> dict[str, list[float]]:
    names = list(VARIANTS)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up
        for _ in range(5):
            post(client, VARIANTS[name], payload)
    for round_no in range(rounds):
        shift = round_no % len(names)
        order = names[shift:] + names[:shift]
        if round_no % 2:
            order.reverse()
        for name in order:
            url = VARIANTS[name]
            start = time.perf_counter()
            for _ in range(requests):
                client.post(url, data=payload, content_type="application/json")
            times[name].append((time.perf_counter() - start) / requests * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--profile", choices=list(VARIANTS), help="cProfile one variant (top 15 by cumtime)")
    args = parser.parse_args()

    settings.ROOT_URLCONF = URLCONF
    clear_url_caches()
    vendor = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    if vendor != "sqlite3":
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_bench_gql_pages_{os.getpid()}"
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    results = {}
    try:
        user = seed()
        client = Client()
        client.force_login(user)
        for workload, payload in WORKLOADS.items():
            check_answers(client, payload)
            queries = {name: queries_per_request(client, url, payload) for name, url in VARIANTS.items()}
            if args.profile:
                profile(client, VARIANTS[args.profile], payload, args.requests)
            results[workload] = (queries, measure(client, payload, args.rounds, args.requests))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()

    for workload, (queries, times) in results.items():
        report(workload, queries, times, args)
    return 0


def report(workload: str, queries: dict[str, int], times: dict[str, list[float]], args: Any) -> None:
    medians = {name: statistics.median(values) for name, values in times.items()}
    hand = medians["hand-written"]
    print(
        f"\nGraphQL pages on {connection.vendor}, {workload} ({PAGE} each), "
        f"{args.rounds} rounds x {args.requests} requests, median ms/request"
    )
    print(f"{'variant':<24}{'ms/request':>12}{'x hand':>9}{'SQL':>6}")
    for name in VARIANTS:
        print(f"{name:<24}{medians[name]:>12.2f}{medians[name] / hand:>8.2f}x{queries[name]:>6}")
    ratio = medians["graphql (ours)"] / hand
    verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
    print(f"{verdict}: the ready view is {ratio:.2f}x the hand-written view (target <= {TARGET_RATIO}x)")


def profile(client: Client, url: str, payload: str, requests: int) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        client.post(url, data=payload, content_type="application/json")
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(15)
    stats.sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    sys.exit(main())
