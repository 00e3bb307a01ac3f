"""The queries of GRAPHQL.md through HTTP: who sees what, filters, pagination, node, masking."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from aa_stripe.models import StripeCharge

from .graphql_helpers import (
    FIXED,
    global_id,
    gql,
    make_charges,
    make_coupons,
    make_customers,
    make_plans,
    make_subscriptions,
    make_user,
    make_viewer,
)

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "owner", "other", "staff", "staff_perm")
DENIED = "PERMISSION_DENIED"


@pytest.fixture
def world(client):
    """Owner (alice) and another user (bob) with a customer, charge and subscription each; a staff
    user without permissions and one with every aa_stripe view permission; one live, one deleted
    coupon; one plan at Stripe and one not."""
    owner, other = make_user("alice"), make_user("bob")
    staff = make_user("staff", is_staff=True)
    staff_perm = make_viewer("staffperm")
    plan, hidden_plan = make_plans()[0], make_plans(is_created_at_stripe=False)[0]
    coupon, deleted = make_coupons(1)[0], make_coupons(1, prefix="GONE", is_deleted=True)[0]
    rows = {}
    for user in (owner, other):
        customer = make_customers(user)[0]
        rows[user.username] = SimpleNamespace(
            customer=customer,
            charge=make_charges(user, customer)[0],
            subscription=make_subscriptions(user, plan, coupon)[0],
        )
    users = {"anonymous": None, "owner": owner, "other": other, "staff": staff, "staff_perm": staff_perm}
    return SimpleNamespace(
        client=client,
        users=users,
        rows=rows,
        plan=plan,
        hidden_plan=hidden_plan,
        coupon=coupon,
        deleted=deleted,
    )


def as_role(world, role, query, variables=None):
    if world.users[role] is not None:
        world.client.force_login(world.users[role])
    else:
        world.client.logout()
    return gql(world.client, query, variables)


def codes(body):
    return [error.get("extensions", {}).get("code") for error in body.get("errors", [])]


def ids(connection):
    return sorted(edge["node"]["id"] for edge in connection["edges"])


LISTS = {
    "stripeCustomers": ("StripeCustomer", "customer"),
    "stripeCharges": ("StripeCharge", "charge"),
    "stripeSubscriptions": ("StripeSubscription", "subscription"),
}
VISIBLE = {
    "anonymous": DENIED,
    "owner": ["alice"],
    "other": ["bob"],
    "staff": [],
    "staff_perm": ["alice", "bob"],
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("field", LISTS)
def test_own_lists_by_role(world, role, field):
    body = as_role(world, role, f"{{ {field} {{ totalCount edges {{ node {{ id }} }} }} }}")
    type_name, attribute = LISTS[field]
    if VISIBLE[role] == DENIED:
        assert codes(body) == [DENIED] and body["data"] == {field: None}
        assert "signed in" in body["errors"][0]["message"]
        return
    expected = sorted(global_id(type_name, getattr(world.rows[u], attribute).pk) for u in VISIBLE[role])
    assert "errors" not in body
    assert ids(body["data"][field]) == expected
    assert body["data"][field]["totalCount"] == len(expected)


@pytest.mark.parametrize("role", ROLES)
def test_plans_are_open_to_anyone_and_only_those_at_stripe(world, role):
    body = as_role(world, role, "{ stripeSubscriptionPlans { edges { node { id name interval } } } }")
    assert ids(body["data"]["stripeSubscriptionPlans"]) == [
        global_id("StripeSubscriptionPlan", world.plan.pk)
    ]


@pytest.mark.parametrize("role", ROLES)
def test_coupon_by_code_for_signed_in_users(world, role):
    query = "query($c: String!) { stripeCoupon(couponId: $c) { couponId isDeleted } }"
    live = as_role(world, role, query, {"c": "SAVE0"})
    if role == "anonymous":
        assert codes(live) == [DENIED] and live["data"] == {"stripeCoupon": None}
        return
    assert live == {"data": {"stripeCoupon": {"couponId": "SAVE0", "isDeleted": False}}}
    assert as_role(world, role, query, {"c": "GONE0"}) == {"data": {"stripeCoupon": None}}
    assert as_role(world, role, query, {"c": "NOPE"}) == {"data": {"stripeCoupon": None}}


@pytest.mark.parametrize("role", ROLES)
def test_coupon_list_needs_the_view_permission(world, role):
    body = as_role(world, role, "{ stripeCoupons { edges { node { couponId isDeleted } } } }")
    if role != "staff_perm":
        assert codes(body) == [DENIED] and body["data"] == {"stripeCoupons": None}
        return
    nodes = [edge["node"] for edge in body["data"]["stripeCoupons"]["edges"]]
    assert sorted(n["couponId"] for n in nodes) == ["GONE0", "SAVE0"]


NODE_QUERY = "query($id: ID!) { node(id: $id) { id __typename } }"
NODE_OUTCOMES = {
    # object kind: outcome per role (True: found, None: null, DENIED: top-level PERMISSION_DENIED)
    "customer": {"anonymous": DENIED, "owner": True, "other": None, "staff": None, "staff_perm": True},
    "charge": {"anonymous": DENIED, "owner": True, "other": None, "staff": None, "staff_perm": True},
    "subscription": {"anonymous": DENIED, "owner": True, "other": None, "staff": None, "staff_perm": True},
    "plan": dict.fromkeys(ROLES, True),
    "hidden_plan": {**dict.fromkeys(ROLES, None), "staff_perm": True},
    "coupon": {**dict.fromkeys(ROLES, DENIED), "staff_perm": True},
    "deleted_coupon": {**dict.fromkeys(ROLES, DENIED), "staff_perm": True},
}


def node_id(world, kind):
    if kind in ("customer", "charge", "subscription"):
        row = getattr(world.rows["alice"], kind)
        return global_id(f"Stripe{kind.capitalize()}", row.pk)
    row = {"plan": world.plan, "hidden_plan": world.hidden_plan, "coupon": world.coupon}.get(
        kind, world.deleted
    )
    return global_id("StripeSubscriptionPlan" if "plan" in kind else "StripeCoupon", row.pk)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind", NODE_OUTCOMES)
def test_node_follows_the_rules_of_the_lists(world, kind, role):
    the_id = node_id(world, kind)
    body = as_role(world, role, NODE_QUERY, {"id": the_id})
    expected = NODE_OUTCOMES[kind][role]
    if expected == DENIED:
        assert codes(body) == [DENIED] and body["data"] == {"node": None}
    elif expected is None:
        assert body == {"data": {"node": None}}  # another user's object looks like an unknown one
    else:
        assert "errors" not in body and body["data"]["node"]["id"] == the_id


@pytest.mark.parametrize(
    "the_id",
    [
        global_id("StripeCharge", 999999),
        global_id("StripeCharge", "abc"),
        global_id("StripeCharge", -1),
        global_id("StripeCharge", 10**30),
        global_id("StripeCharge", "1_0"),
        global_id("StripeCharge", ""),
    ],
)
def test_node_of_unknown_or_malformed_keys_is_null(world, the_id):
    body = as_role(world, "staff_perm", NODE_QUERY, {"id": the_id})
    assert body == {"data": {"node": None}}


@pytest.mark.parametrize(
    ("role", "visible"), [("owner", None), ("staff", None), ("staff_perm", "internal note")]
)
def test_comment_is_for_staff_with_view_stripecharge(world, role, visible):
    charge = make_charges(world.users[role], None)[
        0
    ]  # each sees their own charge; only the permission counts
    body = as_role(
        world,
        role,
        "query($id: ID!) { node(id: $id) { ... on StripeCharge { comment } } }",
        {"id": global_id("StripeCharge", charge.pk)},
    )
    assert body == {"data": {"node": {"comment": visible}}}


def test_customer_shows_cards_never_token_json(world):
    body = as_role(
        world,
        "owner",
        "{ stripeCustomers { edges { node { sources { id brand last4 expMonth "
        "expYear country funding } defaultSource defaultSourceCard { id } } } } }",
    )
    node = body["data"]["stripeCustomers"]["edges"][0]["node"]
    assert node["defaultSource"] == "card_0000" and node["defaultSourceCard"] == {"id": "card_0000"}
    assert [s["id"] for s in node["sources"]] == ["card_0000", "card_0100"]
    assert "tok_secret" not in str(body) and "fingerprint" not in str(body)


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def viewer_client(client):
    client.force_login(make_viewer("filterstaff"))
    return client


def descriptions(body, field):
    return sorted(edge["node"]["description"] for edge in body["data"][field]["edges"])


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("isCharged: true", ["charged", "refunded"]),
        ("isCharged: false", ["declined", "old"]),
        ("isRefunded: true", ["refunded"]),
        ("chargeAttemptFailed: true", ["declined"]),
        ('createdGte: "2024-01-01T00:00:00+00:00"', ["charged", "declined", "refunded"]),
        ('createdLte: "2024-01-01T00:00:00+00:00"', ["old"]),
        ('createdGte: "2023-06-01T00:00:00Z", createdLte: "2023-12-31T00:00:00Z"', ["old"]),
    ],
)
def test_charge_filters(viewer_client, arguments, expected):
    user = make_user("payer")
    make_charges(user, None, description="charged", is_charged=True)
    make_charges(user, None, description="refunded", is_charged=True, is_refunded=True)
    make_charges(user, None, description="declined", charge_attempt_failed=True)
    old = make_charges(user, None, description="old")[0]
    StripeCharge.objects.filter(pk=old.pk).update(created=FIXED - timedelta(days=200))
    body = gql(viewer_client, f"{{ stripeCharges({arguments}) {{ edges {{ node {{ description }} }} }} }}")
    assert descriptions(body, "stripeCharges") == expected


def test_charges_are_newest_first(viewer_client):
    user = make_user("payer")
    charges = make_charges(user, None, count=3)
    for days, charge in enumerate(charges):
        StripeCharge.objects.filter(pk=charge.pk).update(created=FIXED - timedelta(days=days))
    body = gql(viewer_client, "{ stripeCharges { edges { node { id created } } } }")
    got = [edge["node"]["id"] for edge in body["data"]["stripeCharges"]["edges"]]
    assert got == [global_id("StripeCharge", c.pk) for c in charges]


def test_customer_and_subscription_and_coupon_filters(viewer_client):
    user = make_user("payer")
    active, inactive = make_customers(user)[0], make_customers(user, prefix="inactive", is_active=False)[0]
    plan = make_plans()[0]
    make_subscriptions(user, plan, None, status="trialing")
    make_subscriptions(user, plan, None, status="canceled")
    make_coupons(prefix="LIVE")
    make_coupons(prefix="DEAD", is_deleted=True)

    def values(query, field, key):
        body = gql(viewer_client, query)
        return sorted(edge["node"][key] for edge in body["data"][field]["edges"])

    assert values(
        "{ stripeCustomers(isActive: true) { edges { node { stripeCustomerId } } } }",
        "stripeCustomers",
        "stripeCustomerId",
    ) == [active.stripe_customer_id]
    assert values(
        "{ stripeCustomers(isActive: false) { edges { node { stripeCustomerId } } } }",
        "stripeCustomers",
        "stripeCustomerId",
    ) == [inactive.stripe_customer_id]
    assert values(
        "{ stripeSubscriptions(status: TRIALING) { edges { node { status } } } }",
        "stripeSubscriptions",
        "status",
    ) == ["TRIALING"]
    assert values(
        "{ stripeSubscriptions(status: CANCELED) { edges { node { status } } } }",
        "stripeSubscriptions",
        "status",
    ) == ["CANCELED"]
    assert values(
        "{ stripeCoupons(isDeleted: true) { edges { node { couponId } } } }", "stripeCoupons", "couponId"
    ) == ["DEAD0"]
    assert values(
        "{ stripeCoupons(isDeleted: false) { edges { node { couponId } } } }", "stripeCoupons", "couponId"
    ) == ["LIVE0"]
    assert len(values("{ stripeCoupons { edges { node { couponId } } } }", "stripeCoupons", "couponId")) == 2


# ---------------------------------------------------------------------------------------------
# Pagination and the page cap
# ---------------------------------------------------------------------------------------------

PAGE = """query($a: Int, $b: Int, $after: String, $before: String, $offset: Int) {
  stripeSubscriptionPlans(first: $a, last: $b, after: $after, before: $before, offset: $offset) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { name } }
  }
}"""


def page(client, **variables):
    body = gql(client, PAGE, variables)
    return body["data"]["stripeSubscriptionPlans"] if "errors" not in body else body


def names(connection):
    return [edge["node"]["name"] for edge in connection["edges"]]


def test_pagination_forwards_backwards_and_offset(client):
    make_plans(count=7)  # "plan 0" ... "plan 6", ordered by amount
    first = page(client, a=3)
    assert names(first) == ["plan 0", "plan 1", "plan 2"] and first["totalCount"] == 7
    assert first["pageInfo"]["hasNextPage"] is True
    second = page(client, a=3, after=first["pageInfo"]["endCursor"])
    assert names(second) == ["plan 3", "plan 4", "plan 5"]
    assert names(page(client, b=2)) == ["plan 5", "plan 6"]
    assert names(page(client, b=2, before=second["pageInfo"]["startCursor"])) == ["plan 1", "plan 2"]
    assert names(page(client, a=2, offset=4)) == ["plan 4", "plan 5"]
    assert names(page(client, a=100)) == [f"plan {i}" for i in range(7)]


@override_settings(STRIPE_GRAPHQL_PAGE_SIZE=4)
def test_page_size_is_the_default_page_and_the_cap(client):
    make_plans(count=7)
    default = page(client)
    assert len(default["edges"]) == 4 and default["pageInfo"]["hasNextPage"] is True
    for arguments in ({"a": 5}, {"b": 5}):
        body = page(client, **arguments)
        error = body["errors"][0]
        assert error["extensions"] == {
            "code": "PAGE_SIZE_EXCEEDED",
            "setting": "STRIPE_GRAPHQL_PAGE_SIZE",
            "limit": 4,
        }
        assert "page size limit of 4 (STRIPE_GRAPHQL_PAGE_SIZE)" in error["message"]
        assert "Requesting" not in error["message"] and body["data"] == {"stripeSubscriptionPlans": None}


def test_first_101_is_a_clear_error(client):
    body = page(client, a=101)
    assert body["errors"][0]["message"] == (
        "first: 101 on stripeSubscriptionPlans is more than the page size limit of 100 "
        "(STRIPE_GRAPHQL_PAGE_SIZE)."
    )
    assert body["errors"][0]["extensions"]["code"] == "PAGE_SIZE_EXCEEDED"


@pytest.mark.parametrize(
    "variables",
    [
        {"a": -1},
        {"b": -1},
        {"offset": -2},
        {"offset": 1, "before": "YXJyYXljb25uZWN0aW9uOjI="},
        # Not cursors of this API (found by the fuzz test: "after" + "offset" was an INTERNAL_ERROR).
        {"a": 0, "after": "0", "offset": 1},
        {"after": "not a cursor"},
        {"before": "0"},
        {"after": "YXJyYXljb25uZWN0aW9uOi01"},  # "arrayconnection:-5" (found by review)
        {"after": "YXJyYXljb25uZWN0aW9uOi01", "offset": 1},
        {"before": "YXJyYXljb25uZWN0aW9uOi01"},
    ],
)
def test_invalid_pagination_is_a_clear_error(client, variables):
    body = page(client, **variables)
    assert codes(body) == ["INVALID_PAGINATION"]


# ---------------------------------------------------------------------------------------------
# Nested objects follow the rules of their own type
# ---------------------------------------------------------------------------------------------

CHARGE_CUSTOMERS = (
    "{ stripeCharges { edges { node { id customer { id stripeCustomerId sources { last4 } } } } } }"
)


def charge_customers(body):
    return {edge["node"]["id"]: edge["node"]["customer"] for edge in body["data"]["stripeCharges"]["edges"]}


def test_a_charges_customer_needs_the_customer_rules_too(world):
    """view_stripecharge alone shows every charge, but only one's own customers (as node(id) does)."""
    charge_reader = make_user("chargereader", "view_stripecharge", is_staff=True)
    world.users["charge_reader"] = charge_reader
    own = make_charges(charge_reader, make_customers(charge_reader)[0])[0]
    for customer in make_customers(world.users["other"], 20, prefix="more"):
        make_charges(world.users["other"], customer)
    world.client.force_login(charge_reader)
    with CaptureQueriesContext(connection) as captured:
        body = gql(world.client, CHARGE_CUSTOMERS)
    assert len(captured) == 6  # session, user, 2 x permissions, COUNT, the page: none per customer
    assert "errors" not in body, body
    customers = charge_customers(body)
    for user in ("alice", "bob"):
        assert customers[global_id("StripeCharge", world.rows[user].charge.pk)] is None
    assert customers[global_id("StripeCharge", own.pk)]["stripeCustomerId"] == "cus_chargereader_0"
    assert "cus_alice" not in str(body) and "cus_bob" not in str(body)
    alice_customer = global_id("StripeCustomer", world.rows["alice"].customer.pk)
    assert as_role(world, "charge_reader", NODE_QUERY, {"id": alice_customer}) == {"data": {"node": None}}


@pytest.mark.parametrize(("role", "seen"), [("owner", ["alice"]), ("staff_perm", ["alice", "bob"])])
def test_a_charges_customer_for_owners_and_customer_viewers(world, role, seen):
    customers = charge_customers(as_role(world, role, CHARGE_CUSTOMERS))
    assert sorted(c["stripeCustomerId"].split("_")[1] for c in customers.values()) == seen


def test_a_subscriptions_coupon_is_shown_to_its_owner_also_once_deleted(world):
    """Documented on the field: the coupon applied to one's own subscription, deleted ones too."""
    make_subscriptions(world.users["owner"], world.plan, world.deleted)
    query = "{ stripeSubscriptions { edges { node { coupon { couponId isDeleted } } } } }"
    body = as_role(world, "owner", query)
    coupons = [edge["node"]["coupon"] for edge in body["data"]["stripeSubscriptions"]["edges"]]
    assert sorted(c["couponId"] for c in coupons) == ["GONE0", "SAVE0"]


# ---------------------------------------------------------------------------------------------
# node(id) of what is no node
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "the_id",
    [
        pytest.param("garbage", id="not-base64"),
        pytest.param("", id="empty"),
        pytest.param(global_id("", 1), id="no-type"),
        pytest.param(global_id("StripeCard", "card_0000"), id="not-a-node-type"),
        pytest.param(global_id("StripeQuery", 1), id="query-type"),
        pytest.param(global_id("Node", 1), id="interface"),
        pytest.param(global_id("String", 1), id="scalar"),
        pytest.param(global_id("__Schema", 1), id="introspection-type"),
        pytest.param(global_id("NoSuchType", 1), id="unknown-type"),
    ],
)
@pytest.mark.parametrize("role", ["anonymous", "staff_perm"])
def test_node_of_what_is_no_node_is_null(world, the_id, role):
    assert as_role(world, role, NODE_QUERY, {"id": the_id}) == {"data": {"node": None}}
