"""The schema: ``schema.graphql`` is what the code exports, everything is described, and snapshots
of the schema and of the main queries' response shapes (deterministic data, global ids replaced)."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    print_schema,
)

from aa_stripe_graphql.export_schema import schema_text
from aa_stripe_graphql.schema import schema

from . import graphql_helpers as gh

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schema.graphql"
EXPORT = "python -m aa_stripe_graphql.export_schema"
# Types that come with graphene and graphql-core, not from this package (their texts are theirs).
FOREIGN_TYPES = {"PageInfo", "Node", "Boolean", "String", "Int", "Float", "ID"}


def test_schema_graphql_is_what_the_code_exports():
    """``schema.graphql`` is what ``python -m aa_stripe_graphql.export_schema`` writes, byte for byte
    (the command itself runs in tests/test_graphql_first_hour.py)."""
    assert SCHEMA_FILE.read_bytes() == schema_text().encode("utf-8"), (
        f"schema.graphql is out of date; regenerate it with:\n  {EXPORT}"
    )


def undescribed() -> list[str]:
    missing = []
    for name, graphql_type in schema.graphql_schema.type_map.items():
        if name.startswith("__") or name in FOREIGN_TYPES:
            continue
        if not (graphql_type.description or "").strip():
            missing.append(f"type {name}")
        if isinstance(graphql_type, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            for field_name, field in graphql_type.fields.items():
                if not (field.description or "").strip():
                    missing.append(f"field {name}.{field_name}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    if not (arg.description or "").strip():
                        missing.append(f"argument {name}.{field_name}({arg_name})")
        if isinstance(graphql_type, GraphQLEnumType):
            missing += [
                f"value {name}.{v}" for v, value in graphql_type.values.items() if not value.description
            ]
    return missing


def test_every_type_field_argument_and_enum_value_is_described():
    assert undescribed() == []


def test_builtin_relay_types_are_described_too():
    """PageInfo and Node are graphene's, kept as they are so hosts share them; they are described."""
    type_map = schema.graphql_schema.type_map
    for name in ("PageInfo", "Node"):
        assert type_map[name].description
        assert all(field.description for field in type_map[name].fields.values())


def test_schema_snapshot(snapshot):
    assert print_schema(schema.graphql_schema) == snapshot


# ---------------------------------------------------------------------------------------------
# Response shapes of the main queries
# ---------------------------------------------------------------------------------------------

CARD = "{ id brand last4 expMonth expYear country funding }"
CUSTOMER = (
    f"id stripeCustomerId isActive isCreatedAtStripe sources {CARD} defaultSource defaultSourceCard {CARD} "
    "created updated"
)
PLAN = "id stripePlanId name amount currency interval intervalCount trialPeriodDays isCreatedAtStripe"
COUPON = (
    "id couponId amountOff percentOff currency duration durationInMonths maxRedemptions redeemBy "
    "timesRedeemed valid isDeleted"
)
PAGE_INFO = "totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
SHAPES = {
    "customers": f"{{ stripeCustomers {{ {PAGE_INFO} edges {{ cursor node {{ {CUSTOMER} }} }} }} }}",
    "charges": (
        f"{{ stripeCharges(first: 1) {{ {PAGE_INFO} edges {{ cursor node {{ id amount amountRefunded "
        "currency description statementDescriptor comment isCharged isRefunded chargeAttemptFailed "
        f"stripeChargeId created updated customer {{ id stripeCustomerId }} }} }} }} }}"
    ),
    "subscriptions": (
        f"{{ stripeSubscriptions {{ {PAGE_INFO} edges {{ node {{ id stripeSubscriptionId status "
        f"isCreatedAtStripe endDate canceledAt atPeriodEnd created plan {{ {PLAN} }} "
        f"coupon {{ {COUPON} }} }} }} }} }}"
    ),
    "plans": f"{{ stripeSubscriptionPlans {{ {PAGE_INFO} edges {{ node {{ {PLAN} }} }} }} }}",
    "coupon": f'{{ stripeCoupon(couponId: "SAVE0") {{ {COUPON} }} }}',
    "coupons": f"{{ stripeCoupons {{ {PAGE_INFO} edges {{ node {{ {COUPON} }} }} }} }}",
}


@pytest.fixture
def shapes_data(db):
    owner = gh.make_user("alice")
    customer = gh.make_customers(owner)[0]
    for number in (1, 2):
        gh.make_charges(
            owner, customer, stripe_charge_id=f"ch_{number}", is_charged=True, statement_descriptor="SHOP"
        )
    plan = gh.make_plans(prefix="plan_gold_")[0]
    gh.make_subscriptions(owner, plan, gh.make_coupons()[0], prefix="sub_alice_")
    return owner


@pytest.mark.parametrize("name", SHAPES)
def test_response_shapes(client, shapes_data, name, snapshot):
    client.force_login(gh.make_viewer("staff"))
    body = gh.gql(client, SHAPES[name])
    assert "errors" not in body, body
    assert gh.normalize_ids(body) == snapshot
