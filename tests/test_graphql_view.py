"""The ready view: CSRF, GraphiQL in DEBUG, no request-wide transaction, masked failures, the limits,
introspection, and ``aa_stripe_graphql.validation_rules()`` in a host's own ``GraphQLView``."""

from __future__ import annotations

import json

import graphene
import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import connections
from django.db.models.query import QuerySet
from django.test import Client, RequestFactory, override_settings
from django.urls import resolve
from graphene_django.views import GraphQLView
from graphql import get_introspection_query
from graphql_relay import to_global_id

import aa_stripe_graphql
from aa_stripe.models import StripeCharge, StripeSubscriptionPlan
from aa_stripe_graphql.limits import MaxDepthRule
from aa_stripe_graphql.queries import StripeQuery
from aa_stripe_graphql.views import StripeGraphQLView

from .graphql_helpers import GRAPHQL_URL, gql, make_charges, make_plans, make_user

pytestmark = pytest.mark.django_db

PLANS = "{ stripeSubscriptionPlans { edges { node { name } } } }"


def error(body):
    assert len(body["errors"]) == 1, body
    return body["errors"][0]


# ---------------------------------------------------------------------------------------------
# The view itself
# ---------------------------------------------------------------------------------------------


def test_csrf_token_is_required_and_works():
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("alice"))
    refused = client.post(GRAPHQL_URL, json.dumps({"query": PLANS}), content_type="application/json")
    assert refused.status_code == 403
    client.get(GRAPHQL_URL, HTTP_ACCEPT="application/json")  # the view sets the CSRF cookie
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    body = gql(client, PLANS, HTTP_X_CSRFTOKEN=token)
    assert body == {"data": {"stripeSubscriptionPlans": {"edges": []}}}


def test_view_is_non_atomic_on_every_database():
    view = resolve(GRAPHQL_URL).func
    assert view._non_atomic_requests == set(connections)


@pytest.fixture
def graphiql_templates():
    """GraphiQL's template ships with graphene_django, which a host lists in INSTALLED_APPS."""
    if "graphene_django" in settings.INSTALLED_APPS:
        yield
        return
    with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, "graphene_django"]):
        yield


def test_graphiql_is_served_in_debug(client, graphiql_templates):
    with override_settings(DEBUG=True):
        page = client.get(GRAPHQL_URL, HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    assert b"graphiql" in page.content.lower()
    without_debug = client.get(GRAPHQL_URL, HTTP_ACCEPT="text/html")
    assert without_debug["Content-Type"] == "application/json"
    assert error(json.loads(without_debug.content))["extensions"]["code"] == "BAD_REQUEST"


def test_get_runs_queries_but_not_mutations(client):
    make_plans()
    response = client.get(GRAPHQL_URL, {"query": PLANS}, HTTP_ACCEPT="application/json")
    assert (
        json.loads(response.content)["data"]["stripeSubscriptionPlans"]["edges"][0]["node"]["name"]
        == "plan 0"
    )
    refused = client.get(GRAPHQL_URL, {"query": "mutation { __typename }"}, HTTP_ACCEPT="application/json")
    assert refused.status_code == 405 and refused["Content-Type"] == "application/json"


def test_form_posts_work_too():
    """Django's CSRF check reads a form body first; the size check must then not read it again."""
    client = Client(enforce_csrf_checks=True)
    client.get(GRAPHQL_URL, HTTP_ACCEPT="application/json")
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    multipart = client.post(GRAPHQL_URL, {"query": "{ __typename }", "csrfmiddlewaretoken": token})
    urlencoded = client.post(
        GRAPHQL_URL,
        f"query=%7B__typename%7D&csrfmiddlewaretoken={token}",
        content_type="application/x-www-form-urlencoded",
    )
    for response in (multipart, urlencoded):
        assert json.loads(response.content) == {"data": {"__typename": "StripeQuery"}}


def test_other_methods_get_a_json_405(client):
    response = client.put(GRAPHQL_URL, "{}", content_type="application/json")
    assert response.status_code == 405 and "errors" in json.loads(response.content)


def test_invalid_json_is_a_json_400(client):
    response = client.post(GRAPHQL_URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert error(json.loads(response.content)) == {
        "message": "POST body sent invalid JSON.",
        "extensions": {"code": "BAD_REQUEST"},
    }


def test_introspection_works_under_the_limits(client):
    body = gql(client, get_introspection_query(descriptions=True))
    assert "errors" not in body
    assert body["data"]["__schema"]["queryType"]["name"] == "StripeQuery"
    with override_settings(STRIPE_GRAPHQL_MAX_DEPTH=1):
        assert "errors" not in gql(client, get_introspection_query())


def test_unexpected_failure_in_a_list_is_masked(client, monkeypatch, caplog):
    owner = make_user("alice")
    make_charges(owner, None)
    original = QuerySet.count

    def exploding_count(self):
        if self.model is StripeCharge:
            raise RuntimeError("secret sk_test_xyz in SELECT ...")
        return original(self)

    monkeypatch.setattr(QuerySet, "count", exploding_count)
    client.force_login(owner)
    body = gql(client, "{ stripeCharges { edges { node { id } } } }")
    assert error(body)["message"] == "Internal error."
    assert error(body)["extensions"] == {"code": "INTERNAL_ERROR"} and body["data"] == {"stripeCharges": None}
    assert "sk_test" not in str(body) and "SELECT" not in str(body)
    assert "sk_test_xyz" in caplog.text  # full detail in the log only


def test_unexpected_failure_in_node_and_coupon_is_masked(client, monkeypatch):
    plan_id = to_global_id("StripeSubscriptionPlan", make_plans()[0].pk)
    client.force_login(make_user("alice"))

    def explode(self, *args, **kwargs):
        raise RuntimeError("secret sk_test_xyz")

    monkeypatch.setattr(QuerySet, "first", explode)
    for query in [f'{{ node(id: "{plan_id}") {{ id }} }}', '{ stripeCoupon(couponId: "SAVE0") { id } }']:
        body = gql(client, query)
        assert error(body)["extensions"] == {"code": "INTERNAL_ERROR"} and "sk_test" not in str(body)


def test_plan_queryset_failure_is_masked(client, monkeypatch):
    monkeypatch.setattr(StripeSubscriptionPlan.objects, "filter", lambda *a, **k: 1 / 0)
    body = gql(client, "{ stripeSubscriptionPlans { edges { node { id } } } }")
    assert error(body)["extensions"] == {"code": "INTERNAL_ERROR"} and "division" not in str(body)


def test_failure_while_validating_is_masked(client, monkeypatch, caplog):
    def explode(self, *args):
        raise RuntimeError("secret sk_test_xyz")

    monkeypatch.setattr(MaxDepthRule, "enter_document", explode)
    body = gql(client, PLANS)
    assert body["_status"] == 400 and error(body)["extensions"] == {"code": "INTERNAL_ERROR"}
    assert "sk_test" not in str(body) and "sk_test_xyz" in caplog.text


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------

DEEP = "{ stripeCharges { edges { node { customer { defaultSourceCard { id } } } } } }"  # 5 levels


def test_depth_limit(client):
    client.force_login(make_user("alice"))
    assert gql(client, DEEP) == {"data": {"stripeCharges": {"edges": []}}}  # anonymous: an empty list
    with override_settings(STRIPE_GRAPHQL_MAX_DEPTH=4):
        body = gql(client, DEEP)
    assert body["_status"] == 400 and "data" not in body
    assert error(body)["message"] == (
        "Operation 'anonymous' is nested deeper than the limit of 4 levels (STRIPE_GRAPHQL_MAX_DEPTH)."
    )
    assert error(body)["extensions"] == {
        "code": "MAX_DEPTH_EXCEEDED",
        "setting": "STRIPE_GRAPHQL_MAX_DEPTH",
        "limit": 4,
    }


def test_depth_counts_through_fragments(client):
    query = (
        "query Deep { stripeCharges { ...C } } fragment C on StripeChargeConnection { edges { ...E } } "
        "fragment E on StripeChargeEdge { node { customer { ... on StripeCustomer { sources { id } } } } }"
    )
    with override_settings(STRIPE_GRAPHQL_MAX_DEPTH=4):
        body = gql(client, query)
    assert error(body)["message"].startswith("Operation 'Deep' is nested deeper than the limit of 4")


def test_depth_rule_measures_each_fragment_once(client):
    """graphene's depth_limit_validator walked each spread again: this took seconds there."""
    client.force_login(make_user("alice"))
    spreads = {i: " ".join([f"...F{i + 1}"] * 8) for i in range(7)}
    fragments = " ".join(
        f"fragment F{i} on StripeCharge {{ customer {{ id }} {spreads[i]} }}" for i in range(7)
    )
    last = "fragment F7 on StripeCharge { id }"
    query = f"{{ stripeCharges {{ edges {{ node {{ ...F0 }} }} }} }} {fragments} {last}"
    body = gql(client, query)
    assert "errors" not in body


ALIASED = "{{ {} }}"


def aliases(count):
    return ALIASED.format(" ".join(f"a{i}: stripeSubscriptionPlans {{ totalCount }}" for i in range(count)))


def test_alias_limit(client):
    assert "errors" not in gql(client, aliases(30))
    body = gql(client, aliases(31))
    assert body["_status"] == 400
    assert (
        error(body)["message"] == "The document has 31 aliases; the limit is 30 (STRIPE_GRAPHQL_MAX_ALIASES)."
    )
    assert error(body)["extensions"]["code"] == "MAX_ALIASES_EXCEEDED"
    with override_settings(STRIPE_GRAPHQL_MAX_ALIASES=2):
        assert error(gql(client, aliases(3)))["extensions"]["limit"] == 2


def operations(count):
    return " ".join(f"query Q{i} {{ __typename }}" for i in range(count))


def test_operation_limit(client):
    response = client.post(
        GRAPHQL_URL,
        json.dumps({"query": operations(5), "operationName": "Q4"}),
        content_type="application/json",
    )
    assert json.loads(response.content) == {"data": {"__typename": "StripeQuery"}}
    response = client.post(
        GRAPHQL_URL,
        json.dumps({"query": operations(6), "operationName": "Q0"}),
        content_type="application/json",
    )
    body = json.loads(response.content)
    assert response.status_code == 400
    assert (
        error(body)["message"]
        == "The request has 6 operations; the limit is 5 (STRIPE_GRAPHQL_MAX_OPERATIONS)."
    )
    assert error(body)["extensions"]["code"] == "MAX_OPERATIONS_EXCEEDED"


def test_operation_limit_counts_batch_entries():
    view = StripeGraphQLView.as_view(batch=True)
    entries = [{"id": i, "query": "{ __typename }"} for i in range(6)]

    def post(entries):
        request = RequestFactory().post(GRAPHQL_URL, json.dumps(entries), content_type="application/json")
        request._dont_enforce_csrf_checks = True  # as Client() does: the view checks CSRF itself
        return view(request)

    response = post(entries)
    assert response.status_code == 400
    assert error(json.loads(response.content))["extensions"]["code"] == "MAX_OPERATIONS_EXCEEDED"
    response = post(entries[:5])
    assert [entry["data"] for entry in json.loads(response.content)] == [{"__typename": "StripeQuery"}] * 5


def test_body_size_limit_is_answered_before_parsing(client):
    padding = " " * (100 * 1024)
    body = gql(client, "{ __typename }" + padding + "{ broken")
    assert body["_status"] == 413
    assert error(body)["message"].endswith("the limit is 102400 (STRIPE_GRAPHQL_MAX_BODY_BYTES).")
    assert error(body)["extensions"] == {
        "code": "MAX_BODY_BYTES_EXCEEDED",
        "setting": "STRIPE_GRAPHQL_MAX_BODY_BYTES",
        "limit": 102400,
    }
    with override_settings(STRIPE_GRAPHQL_MAX_BODY_BYTES=50):
        response = client.get(GRAPHQL_URL, {"query": "{ __typename }" + " " * 60})
        assert response.status_code == 413 and response["Content-Type"] == "application/json"
        assert gql(client, "{ __typename }") == {"data": {"__typename": "StripeQuery"}}


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10)
def test_body_size_limit_above_djangos_own_still_answers_json(client):
    with override_settings(STRIPE_GRAPHQL_MAX_BODY_BYTES=10**6):
        body = gql(client, "{ __typename }" + " " * 100)
    assert body["_status"] == 413 and error(body)["extensions"]["code"] == "MAX_BODY_BYTES_EXCEEDED"


# ---------------------------------------------------------------------------------------------
# A host's own view and schema
# ---------------------------------------------------------------------------------------------


class Tree(graphene.ObjectType):
    """A recursive type of the host's, to nest as deep as one likes."""

    child = graphene.Field(lambda: Tree)
    name = graphene.String()

    def resolve_child(root, info):
        return Tree()

    def resolve_name(root, info):
        return "leaf"


class HostQuery(StripeQuery, graphene.ObjectType):
    tree = graphene.Field(Tree)

    def resolve_tree(root, info):
        return Tree()


HOST_SCHEMA = graphene.Schema(query=HostQuery)


def nested(levels):
    return "{ tree " + "{ child " * (levels - 1) + "{ name }" + " }" * (levels - 1) + " }"


def host_view():
    return GraphQLView.as_view(schema=HOST_SCHEMA, validation_rules=aa_stripe_graphql.validation_rules())


def run(view, query):
    request = RequestFactory().post(
        GRAPHQL_URL, json.dumps({"query": query}), content_type="application/json"
    )
    request.user = AnonymousUser()
    request._dont_enforce_csrf_checks = True
    response = view(request)
    return response.status_code, json.loads(response.content)


def test_validation_rules_in_a_hosts_own_graphqlview():
    view = host_view()
    assert run(view, nested(10)) == (200, {"data": {"tree": tree_data(10)}})
    status, body = run(view, nested(11))
    assert status == 400 and error(body)["extensions"]["code"] == "MAX_DEPTH_EXCEEDED"
    assert error(body)["extensions"]["limit"] == 10  # the default
    status, body = run(
        view, "{ a1: tree { name } " + " ".join(f"a{i}: tree {{ name }}" for i in range(2, 32)) + " }"
    )
    assert status == 400 and error(body)["extensions"]["code"] == "MAX_ALIASES_EXCEEDED"
    status, body = run(view, "{ nope }")  # graphql-core's standard rules still apply
    assert status == 400 and "Cannot query field 'nope'" in error(body)["message"]
    status, body = run(view, PLANS)
    assert (status, body) == (200, {"data": {"stripeSubscriptionPlans": {"edges": []}}})


def tree_data(levels):
    return {"name": "leaf"} if levels == 1 else {"child": tree_data(levels - 1)}


def test_validation_rules_with_explicit_limits():
    view = GraphQLView.as_view(
        schema=HOST_SCHEMA, validation_rules=aa_stripe_graphql.validation_rules(max_depth=2)
    )
    assert run(view, nested(2))[0] == 200
    status, body = run(view, nested(3))
    assert status == 400 and error(body)["extensions"]["limit"] == 2
    assert "errors" not in run(view, get_introspection_query())[1]


def fragment_bomb(width=10):
    """``width`` aliased lists each spreading E, whose ``width`` aliased ``edges`` each spread N, whose
    ``width`` aliased ``node``s select a field: 3 * width aliases written, width**3 + ... once inlined."""
    lists = " ".join(f"l{i}: stripeSubscriptionPlans(first: 100) {{ ...E }}" for i in range(width))
    edges = " ".join(f"e{i}: edges {{ ...N }}" for i in range(width))
    nodes = " ".join(f"n{i}: node {{ name }}" for i in range(width))
    return (
        f"{{ {lists} }} fragment E on StripeSubscriptionPlanConnection {{ {edges} }} "
        f"fragment N on StripeSubscriptionPlanEdge {{ {nodes} }}"
    )


def test_alias_limit_counts_fragments_at_every_spread(client):
    """Written once, E and N are repeated at every spread: 10 + 10 * (10 + 10 * 10) = 1110 aliases."""
    make_plans(2)
    body = gql(client, fragment_bomb())
    assert body["_status"] == 400 and "data" not in body
    assert error(body)["message"] == (
        "The document has 1110 aliases; the limit is 30 (STRIPE_GRAPHQL_MAX_ALIASES)."
    )
    assert error(body)["extensions"]["code"] == "MAX_ALIASES_EXCEEDED"
    # 3 + 3 * (3 + 3 * 3) = 39 with three of each; two of each make 2 + 2 * (2 + 4) = 14, allowed.
    assert error(gql(client, fragment_bomb(3)))["extensions"]["code"] == "MAX_ALIASES_EXCEEDED"
    allowed = gql(client, fragment_bomb(2))
    assert "errors" not in allowed and len(allowed["data"]["l1"]["e1"]) == 2


def test_alias_limit_passes_ordinary_fragments(client):
    client.force_login(make_user("alice"))
    query = (
        "{ mine: stripeCharges { ...Page } recent: stripeCharges(first: 5) { ...Page } "
        "plans: stripeSubscriptionPlans { edges { node { ...Plan } } } } "
        "fragment Page on StripeChargeConnection { total: totalCount edges { node { ...Charge } } } "
        "fragment Charge on StripeCharge { chargeId: id amount customer { cardsOnFile: sources { last4 } } } "
        "fragment Plan on StripeSubscriptionPlan { planName: name }"
    )
    body = gql(client, query)
    assert "errors" not in body, body
    with override_settings(STRIPE_GRAPHQL_MAX_ALIASES=10):  # 3 + 2 * (1 + 2) + 1 = 10
        assert "errors" not in gql(client, query)
    with override_settings(STRIPE_GRAPHQL_MAX_ALIASES=9):
        assert "The document has 10 aliases" in error(gql(client, query))["message"]


def test_alias_limit_survives_fragment_cycles(client):
    query = "{ a: __typename ...A } fragment A on StripeQuery { b: __typename ...B } "
    query += "fragment B on StripeQuery { c: __typename ...A }"
    body = gql(client, query)
    assert body["_status"] == 400
    assert any("Cannot spread fragment" in e["message"] for e in body["errors"]), body


def test_depth_through_a_fragment_spread_at_several_depths(client):
    """A fragment measured once still adds its depth wherever it is spread."""
    client.force_login(make_user("alice"))
    query = (
        "{ stripeCustomers { ...Cards } stripeCharges { edges { node { customer { ...Deep } } } } } "
        "fragment Cards on StripeCustomerConnection { edges { node { defaultSourceCard { id } } } } "
        "fragment Deep on StripeCustomer { defaultSourceCard { id } }"
    )  # stripeCharges > edges > node > customer > defaultSourceCard: 5 levels
    with override_settings(STRIPE_GRAPHQL_MAX_DEPTH=5):
        assert "errors" not in gql(client, query)
    with override_settings(STRIPE_GRAPHQL_MAX_DEPTH=4):
        assert error(gql(client, query))["extensions"]["code"] == "MAX_DEPTH_EXCEEDED"
    bomb = fragment_bomb()  # the alias trick adds no depth: 3 levels (leaves are not counted)
    with override_settings(STRIPE_GRAPHQL_MAX_DEPTH=3, STRIPE_GRAPHQL_MAX_ALIASES=2000):
        assert "errors" not in gql(client, bomb)
    with override_settings(STRIPE_GRAPHQL_MAX_DEPTH=2, STRIPE_GRAPHQL_MAX_ALIASES=2000):
        assert error(gql(client, bomb))["extensions"]["code"] == "MAX_DEPTH_EXCEEDED"


def test_alias_count_of_nested_spreads_is_quick_and_capped(client):
    """Each of F0..F7 spreads the next eight times: 8**8 aliases written out, counted in an instant."""
    spreads = {i: " ".join([f"...F{i + 1}"] * 8) for i in range(8)}
    fragments = " ".join(f"fragment F{i} on StripeQuery {{ a: __typename {spreads[i]} }}" for i in range(8))
    query = f"{{ ...F0 }} {fragments} fragment F8 on StripeQuery {{ b: __typename }}"
    body = gql(client, query)
    assert error(body)["message"] == (
        "The document has more than 1000000 aliases; the limit is 30 (STRIPE_GRAPHQL_MAX_ALIASES)."
    )
