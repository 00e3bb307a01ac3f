"""The first hour with the GraphQL layer: ``manage.py check`` names a missing graphene_django
(aa_stripe_graphql.E001); a CSRF refusal is answered as GraphQL JSON and refuses what it refused
before; a JSON body sent as a form says to send Content-Type: application/json; the plan list says
what it leaves out; ``python -m aa_stripe_graphql.export_schema`` works with and without settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import graphene
import pytest
from django.conf import settings
from django.core.checks import Error, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.middleware.csrf import CsrfViewMiddleware, RejectRequest
from django.test import Client, override_settings
from graphql_relay import to_global_id

from aa_stripe.models import StripeCoupon, StripeCustomer
from aa_stripe_graphql.queries import StripeQuery

from .graphql_helpers import GRAPHQL_URL, gql, make_plans, make_user, make_viewer, signed_in, staff

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "schema.graphql"
PLANS = "{ stripeSubscriptionPlans { edges { node { name } } } }"
NO_PLANS = {"data": {"stripeSubscriptionPlans": {"edges": []}}}
CREATE_CUSTOMER = (
    "mutation($input: CreateStripeCustomerInput!) "
    "{ createStripeCustomer(input: $input) { errors { code } customer { id } } }"
)


def post(client, query, variables=None, **extra):
    payload = {"query": query} if variables is None else {"query": query, "variables": variables}
    return client.post(GRAPHQL_URL, json.dumps(payload), content_type="application/json", **extra)


def only_error(response):
    body = json.loads(response.content)
    assert set(body) == {"errors"} and len(body["errors"]) == 1, body
    return body["errors"][0]


# ---------------------------------------------------------------------------------------------
# manage.py check: aa_stripe_graphql.E001
# ---------------------------------------------------------------------------------------------

WITHOUT_GRAPHENE_DJANGO = [app for app in settings.INSTALLED_APPS if app != "graphene_django"]


def graphql_check_messages():
    return [message for message in run_checks() if message.id.startswith("aa_stripe_graphql.")]


# Django 6's model checks ask the database what it supports, so running all checks needs it.
CHECKS_READ_THE_DATABASE = pytest.mark.django_db


@CHECKS_READ_THE_DATABASE
def test_check_passes_with_graphene_django_installed():
    assert graphql_check_messages() == []
    call_command("check", stdout=StringIO())


@CHECKS_READ_THE_DATABASE
def test_check_names_the_missing_graphene_django():
    with override_settings(INSTALLED_APPS=WITHOUT_GRAPHENE_DJANGO):
        (message,) = graphql_check_messages()
        with pytest.raises(SystemCheckError, match=r"aa_stripe_graphql\.E001"):
            call_command("check")
        call_command("check", "aa_stripe", stdout=StringIO())  # checks of another app only
    assert isinstance(message, Error) and message.id == "aa_stripe_graphql.E001"
    assert "'graphene_django'" in message.msg and "INSTALLED_APPS" in message.msg
    assert "TemplateDoesNotExist" in message.hint


@CHECKS_READ_THE_DATABASE
def test_check_is_silent_when_the_graphql_app_is_not_installed_either():
    """The check is registered for good once aa_stripe_graphql was ready; it must not speak for it
    in a project (or an override) without it."""
    without_both = [app for app in WITHOUT_GRAPHENE_DJANGO if app != "aa_stripe_graphql"]
    with override_settings(INSTALLED_APPS=without_both):
        assert graphql_check_messages() == []


# ---------------------------------------------------------------------------------------------
# CSRF refusals as GraphQL JSON
# ---------------------------------------------------------------------------------------------


def csrf_client(user=None):
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def csrf_token(client):
    client.get(GRAPHQL_URL, HTTP_ACCEPT="application/json")  # any GET of the view sets the cookie
    return client.cookies[settings.CSRF_COOKIE_NAME].value


def assert_csrf_failed(response):
    assert response.status_code == 403 and response["Content-Type"] == "application/json"
    error = only_error(response)
    assert error["extensions"]["code"] == "CSRF_FAILED"
    return error


@pytest.mark.django_db
@pytest.mark.parametrize("signed_in", [True, False], ids=["session", "curl"])
def test_a_post_without_token_gets_graphql_json_saying_what_to_send(signed_in):
    client = csrf_client(make_user("alice") if signed_in else None)
    error = assert_csrf_failed(post(client, PLANS))
    assert error["extensions"] == {"code": "CSRF_FAILED"}  # Django's reason only in DEBUG
    message = error["message"]
    assert "'csrftoken' cookie" in message and "'X-CSRFToken' header" in message
    assert "aa_stripe_graphql.validation_rules()" in message


@pytest.mark.django_db
def test_session_and_token_pass():
    client = csrf_client(make_user("alice"))
    token = csrf_token(client)
    response = post(client, PLANS, HTTP_X_CSRFTOKEN=token)
    assert (response.status_code, json.loads(response.content)) == (200, NO_PLANS)


@pytest.mark.django_db
def test_a_wrong_token_fails_and_debug_adds_djangos_reason():
    client = csrf_client(make_user("alice"))
    csrf_token(client)
    assert_csrf_failed(post(client, PLANS, HTTP_X_CSRFTOKEN="x" * 32))
    with override_settings(DEBUG=True):
        error = assert_csrf_failed(post(client, PLANS, HTTP_X_CSRFTOKEN="x" * 32))
    assert error["extensions"]["reason"] == "CSRF token from the 'X-Csrftoken' HTTP header incorrect."


@pytest.mark.django_db
def test_the_origin_is_still_checked():
    """Django's whole check runs, not only the token: a right token from a foreign origin fails."""
    client = csrf_client(make_user("alice"))
    token = csrf_token(client)
    evil = post(client, PLANS, HTTP_X_CSRFTOKEN=token, HTTP_ORIGIN="https://evil.example")
    assert_csrf_failed(evil)
    with override_settings(CSRF_TRUSTED_ORIGINS=["https://evil.example"]):
        trusted = post(client, PLANS, HTTP_X_CSRFTOKEN=token, HTTP_ORIGIN="https://evil.example")
    assert trusted.status_code == 200


@pytest.mark.django_db
def test_a_refusal_is_logged_once_as_django_logs_it(caplog):
    with caplog.at_level("WARNING"):
        assert_csrf_failed(post(csrf_client(), PLANS))
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("django.security.csrf", f"Forbidden (CSRF cookie not set.): {GRAPHQL_URL}")
    ]


@pytest.mark.django_db
def test_a_mutation_without_token_never_runs(fake_stripe):
    client = csrf_client(make_user("alice"))
    variables = {"input": {"stripeJsResponse": json.dumps(fake_stripe.card_token())}}

    assert_csrf_failed(post(client, CREATE_CUSTOMER, variables))

    assert not StripeCustomer.objects.exists() and fake_stripe.proxy.calls() == []
    accepted = post(client, CREATE_CUSTOMER, variables, HTTP_X_CSRFTOKEN=csrf_token(client))
    assert json.loads(accepted.content)["data"]["createStripeCustomer"]["errors"] == []
    assert StripeCustomer.objects.count() == 1


@pytest.mark.django_db
def test_get_queries_and_graphiql_need_no_token():
    make_plans()
    client = csrf_client()
    response = client.get(GRAPHQL_URL, {"query": PLANS}, HTTP_ACCEPT="application/json")
    assert json.loads(response.content) == {
        "data": {"stripeSubscriptionPlans": {"edges": [{"node": {"name": "plan 0"}}]}}
    }
    with override_settings(DEBUG=True):
        page = client.get(GRAPHQL_URL, HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"graphiql" in page.content.lower()


class RefuseEveryToken(CsrfViewMiddleware):
    """A host's stricter CSRF middleware: the view must apply it, not Django's stock one."""

    def _check_token(self, request):
        raise RejectRequest("this host takes no token")


class ReportOnlyCsrf(CsrfViewMiddleware):
    """A host's CSRF middleware that only reports: what it let through before still passes."""

    def _reject(self, request, reason):
        return None


def middleware_with_csrf(replacement):
    stock = "django.middleware.csrf.CsrfViewMiddleware"
    assert stock in settings.MIDDLEWARE
    return [m for m in (replacement if m == stock else m for m in settings.MIDDLEWARE) if m]


@pytest.mark.django_db
def test_the_hosts_own_csrf_middleware_decides():
    with override_settings(MIDDLEWARE=middleware_with_csrf(f"{__name__}.RefuseEveryToken"), DEBUG=True):
        client = csrf_client(make_user("alice"))
        error = assert_csrf_failed(post(client, PLANS, HTTP_X_CSRFTOKEN=csrf_token(client)))
    assert error["extensions"]["reason"] == "this host takes no token"
    with override_settings(MIDDLEWARE=middleware_with_csrf(f"{__name__}.ReportOnlyCsrf")):
        assert post(csrf_client(), PLANS).status_code == 200


@pytest.mark.django_db
def test_without_csrf_middleware_nothing_is_checked_as_before():
    with override_settings(MIDDLEWARE=middleware_with_csrf(None)):
        response = post(csrf_client(), PLANS)
    assert (response.status_code, json.loads(response.content)) == (200, NO_PLANS)


# ---------------------------------------------------------------------------------------------
# A body without a query: say what to send
# ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_json_sent_as_a_form_body_is_told_to_send_application_json(client):
    """What ``curl -d '{"query": ...}'`` sends: Content-Type application/x-www-form-urlencoded."""
    body = json.dumps({"query": "{ __typename }"})
    response = client.post(GRAPHQL_URL, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    error = only_error(response)
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert error["message"].startswith(
        "Must provide query string. The body looks like JSON but came as application/x-www-form-urlencoded"
    )
    assert '"Content-Type: application/json"' in error["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content_type", "start"),
    [
        ("text/plain", "The body came with text/plain: send it as JSON"),
        ("application/x-www-form-urlencoded", "A form body needs a field named query; or send it as JSON"),
    ],
)
def test_other_bodies_without_a_query_are_told_too(client, content_type, start):
    response = client.post(GRAPHQL_URL, "variables=%7B%7D", content_type=content_type)
    message = only_error(response)["message"]
    assert response.status_code == 400
    assert message.startswith(f"Must provide query string. {start}")
    assert '"Content-Type: application/json"' in message


@pytest.mark.django_db
def test_json_without_a_query_keeps_the_plain_message(client):
    response = client.post(GRAPHQL_URL, json.dumps({"variables": {}}), content_type="application/json")
    assert response.status_code == 400
    assert only_error(response)["message"] == "Must provide query string."
    response = client.get(GRAPHQL_URL, HTTP_ACCEPT="application/json")
    assert only_error(response)["message"] == "Must provide query string."


# ---------------------------------------------------------------------------------------------
# Lists say what they leave out
# ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_plan_list_says_and_does_leave_out_plans_not_created_at_stripe(client):
    (created,) = make_plans()
    (pending,) = make_plans(is_created_at_stripe=False)
    ids = "{ stripeSubscriptionPlans { edges { node { id } } } }"
    pending_node = f'{{ node(id: "{to_global_id("StripeSubscriptionPlan", pending.pk)}") {{ id }} }}'
    listed = [to_global_id("StripeSubscriptionPlan", created.pk)]

    def plan_ids():
        edges = json.loads(post(client, ids).content)["data"]["stripeSubscriptionPlans"]["edges"]
        return [edge["node"]["id"] for edge in edges]

    assert plan_ids() == listed
    assert json.loads(post(client, pending_node).content)["data"]["node"] is None
    client.force_login(make_viewer("staff"))
    assert plan_ids() == listed  # staff too
    assert json.loads(post(client, pending_node).content)["data"]["node"] is not None

    fields = '{ __type(name: "StripeQuery") { fields { name description } } }'
    described = json.loads(post(client, fields).content)["data"]["__type"]["fields"]
    description = next(f["description"] for f in described if f["name"] == "stripeSubscriptionPlans")
    assert "only plans created at Stripe" in description and "left out for everyone, staff too" in description
    assert "node(id)" in description


# ---------------------------------------------------------------------------------------------
# python -m aa_stripe_graphql.export_schema
# ---------------------------------------------------------------------------------------------


class HostQuery(StripeQuery, graphene.ObjectType):
    """A host's query type beside the Stripe fields."""

    host_only = graphene.String(description="A field of the host's own.")


HOST_SCHEMA = graphene.Schema(query=HostQuery)


def export(*args, cwd=ROOT, settings_module=None):
    """Run the command in a fresh interpreter, warnings as errors as in the suite."""
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONWARNINGS"] = "error"
    if settings_module:
        env["DJANGO_SETTINGS_MODULE"] = settings_module
    command = [sys.executable, "-m", "aa_stripe_graphql.export_schema", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_export_without_settings_writes_schema_graphql(tmp_path):
    """From a clone (or anywhere) with no settings at all: the checked-in file, byte for byte."""
    export(cwd=tmp_path)
    assert (tmp_path / "schema.graphql").read_bytes() == SCHEMA_FILE.read_bytes()
    out = tmp_path / "elsewhere.graphql"
    export("--out", str(out))
    assert out.read_bytes() == SCHEMA_FILE.read_bytes()


def test_export_with_a_hosts_settings_and_schema():
    plain = export("--out", "-", settings_module="tests.settings")
    assert plain.stdout == SCHEMA_FILE.read_text(encoding="utf-8")
    hosts = export("--schema", f"{__name__}.HOST_SCHEMA", "--out", "-", settings_module="tests.settings")
    assert "type HostQuery" in hosts.stdout and "hostOnly: String" in hosts.stdout
    assert "stripeSubscriptionPlans(" in hosts.stdout


def test_export_uses_django_settings_module_when_set():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "no_such_settings_module_here"}
    command = [sys.executable, "-m", "aa_stripe_graphql.export_schema", "--out", "-"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "No module named 'no_such_settings_module_here'" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_export_of_a_schema_that_cannot_be_imported_is_one_line(tmp_path):
    command = [sys.executable, "-m", "aa_stripe_graphql.export_schema", "--schema", "myproject.schema.schema"]
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("export_schema: cannot import --schema myproject.schema.schema: ")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "schema.graphql").exists()


# ---------------------------------------------------------------------------------------------
# Without STRIPE_API_KEY (allowed in DEBUG)
# ---------------------------------------------------------------------------------------------


KEYLESS_COUPON = """mutation($input: CreateStripeCouponInput!) {
  createStripeCoupon(input: $input) { errors { code message } coupon { id } }
}"""


@pytest.mark.django_db
def test_a_mutation_without_an_api_key_answers_a_stripe_error_not_an_internal_one(fake_stripe, settings):
    settings.STRIPE_API_KEY = ""
    client = signed_in(staff("keyless", "add_stripecoupon"))
    query = KEYLESS_COUPON

    body = gql(client, query, {"input": {"couponId": "SALE", "duration": "ONCE", "percentOff": "10"}})

    assert "errors" not in body
    payload = body["data"]["createStripeCoupon"]
    assert payload["coupon"] is None
    assert [error["code"] for error in payload["errors"]] == ["STRIPE_API_ERROR"]
    assert fake_stripe.proxy.calls() == [] and not StripeCoupon.objects.all_with_deleted().exists()


@pytest.mark.django_db
def test_a_mutation_over_get_is_refused_with_a_code(client):
    response = client.get(GRAPHQL_URL, {"query": "mutation { __typename }"})

    assert response.status_code == 405
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "METHOD_NOT_ALLOWED" and "POST" in error["message"]
