"""Every code snippet of README.md is run here, or fenced as illustrative.

- ```python: run in order, in one namespace, against the fake Stripe. The namespace starts with
  ``user`` (a user of the project), ``token`` (what stripe.js returned for the test card
  4242 4242 4242 4242) and ``client`` (Django's test client).
- ```py settings / ```py urls: appended to the settings.py / urls.py of a new
  ``django-admin startproject``, which then migrates, passes ``check`` and answers its first
  requests, as a new user's project would.
- ```graphql: validated against the library's schema.
- ```js demo: the demo page's own code, found verbatim in its demo.js (which the browser test runs).
- anything else must say ``illustrative`` in its info string (```sh illustrative).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from graphql import parse, validate

from aa_stripe.signals import webhook_pre_parse

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCES = re.findall(r"^```([^\n]*)\n(.*?)^```", README.read_text(), flags=re.S | re.M)
BLOCKS = [code for info, code in FENCES if info == "python"]
RUN_ELSEWHERE = {"python", "py settings", "py urls", "graphql", "js demo", "py tasks rq", "py tasks db"}
DEMO_JS = ROOT / "example" / "demo_project" / "static" / "demo" / "demo.js"


def snippet(info: str) -> str:
    [code] = [code for fence, code in FENCES if fence == info]
    return code


def test_every_snippet_is_run_or_marked_illustrative():
    unaccounted = [info for info, _code in FENCES if info not in RUN_ELSEWHERE and "illustrative" not in info]
    assert unaccounted == []
    assert len(FENCES) > len(BLOCKS) + 2


def test_readme_has_examples():
    assert len(BLOCKS) >= 6


@pytest.fixture
def restore_receivers():
    """The examples connect signal receivers; leave no receiver behind for later tests."""
    before = list(webhook_pre_parse.receivers)
    yield
    webhook_pre_parse.receivers[:] = before
    webhook_pre_parse.sender_receivers_cache.clear()


@pytest.mark.django_db
def test_readme_examples_run_against_the_fake_stripe(fake_stripe, user, client, capsys, restore_receivers):
    namespace = {"user": user, "token": fake_stripe.card_token(), "client": client}
    for number, block in enumerate(BLOCKS, start=1):
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"README python block {number} failed:\n{block}") from err
    assert capsys.readouterr().out.strip().endswith("True")  # the coupon example's print


@pytest.mark.parametrize("fence", ["py tasks rq", "py tasks db"])
def test_readme_task_settings_give_a_worker_backend_that_passes_its_checks(fence, settings):
    """ "Running on several machines": each backend's settings, as a project would add them."""
    from django.core.checks import run_checks
    from django.test import override_settings

    from aa_stripe.task_framework import backend_runs_workers, default_backend

    namespace: dict = {"INSTALLED_APPS": []}
    exec(snippet(fence), namespace)
    assert set(namespace.pop("INSTALLED_APPS")) <= set(settings.INSTALLED_APPS)  # tests/settings.py has both
    values = {name: value for name, value in namespace.items() if name.isupper()}
    assert values["STRIPE_WEBHOOK_DEFERRED_PARSING"] is True
    with override_settings(**values):
        backend = default_backend()
        assert backend_runs_workers(backend)
        assert list(backend.check()) == []
        assert [
            m.id for m in run_checks() if m.id.startswith("aa_stripe.W00") and m.id != "aa_stripe.W001"
        ] == []


def test_readme_graphql_is_valid_against_the_schema():
    from aa_stripe_graphql.schema import schema

    documents = [code for info, code in FENCES if info == "graphql"]
    assert documents
    for document in documents:
        errors = validate(schema.graphql_schema, parse(document))
        assert errors == [], f"{errors}\n{document}"


def test_readme_front_end_snippets_are_the_demo_pages_own_code():
    page = DEMO_JS.read_text()
    snippets = [code for info, code in FENCES if info == "js demo"]
    assert len(snippets) >= 4
    for code in snippets:
        assert code in page, f"not in {DEMO_JS.relative_to(ROOT)}:\n{code}"


FIRST_REQUESTS = """
import json
from django.test import Client
from aa_stripe.testing import make_event, post_webhook
from aa_stripe.models import StripeWebhook

client = Client(SERVER_NAME="localhost")  # a new project allows only localhost in DEBUG
page = client.get("/graphql/", headers={"accept": "text/html"})
assert page.status_code == 200 and b"graphiql" in page.content.lower(), page.status_code
answer = client.post(
    "/graphql/", {"query": "{ stripeSubscriptionPlans { totalCount } }"}, content_type="application/json"
)
assert answer.status_code == 200, answer.content
assert answer.json() == {"data": {"stripeSubscriptionPlans": {"totalCount": 0}}}, answer.content
curl_like = Client(SERVER_NAME="localhost", enforce_csrf_checks=True).post(
    "/graphql/", {"query": "{ __typename }"}, content_type="application/json"
)
assert curl_like.status_code == 403, curl_like.content
assert curl_like.json()["errors"][0]["extensions"]["code"] == "CSRF_FAILED"
event = make_event("invoice.paid", {"id": "in_123", "object": "invoice"})
assert post_webhook(client, event).status_code == 200
assert StripeWebhook.objects.get(id=event["id"]).is_parsed
print("first requests: ok")
"""


def test_readme_install_snippets_work_in_a_new_startproject(tmp_path):
    """README's install section, followed literally in a new project (SQLite)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "STRIPE_", "DATABASE_URL"))
    }
    env.update(STRIPE_API_KEY="sk_test_readme", STRIPE_WEBHOOK_ENDPOINT_SECRET="whsec_readme")

    def run(*args: str, expect: int = 0) -> str:
        result = subprocess.run(
            [sys.executable, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == expect, f"{args}:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    run("-m", "django", "startproject", "mysite", ".")
    settings_py, urls_py = tmp_path / "mysite" / "settings.py", tmp_path / "mysite" / "urls.py"
    settings_py.write_text(settings_py.read_text() + "\n" + snippet("py settings"))
    urls_py.write_text(urls_py.read_text() + "\n" + snippet("py urls"))

    assert "System check identified no issues" in run("manage.py", "check")
    run("manage.py", "migrate", "--noinput", "--verbosity", "0")
    assert "first requests: ok" in run("manage.py", "shell", "-c", FIRST_REQUESTS)
    assert "0 would be charged" in run("manage.py", "charge_stripe", "--dry-run")

    # Without graphene_django the check says which app is missing (GraphiQL would answer 500).
    settings_py.write_text(settings_py.read_text().replace('    "graphene_django",', ""))
    assert "aa_stripe_graphql.E001" in run("manage.py", "check", expect=1)
