"""The demo project's own GraphQL fields are masked like the library's, and its readiness URL.

The requests go through Django's test client in a separate process with the demo's own settings
(``demo_project.settings``, DEBUG on as in the demo) over a database that is broken on purpose, so
no demo server and no fake Stripe are needed: a database outage must never reach a client as
exception text (it once answered ``no such table: django_session``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.demo_helpers import ROOT, STRIPE_ENV

EXAMPLE = ROOT / "example"
CLIENT = """
import json, sys
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
answers = []
for request in json.loads(sys.argv[1]):
    client = Client(HTTP_ACCEPT="application/json")
    for name, value in request.get("cookies", {}).items():
        client.cookies[name] = value
    if "body" in request:
        response = client.post(request["path"], json.dumps(request["body"]), content_type="application/json")
    else:
        response = client.get(request["path"], request.get("params", {}))
    answers.append({"status": response.status_code, "body": response.content.decode()})
print(json.dumps(answers))
"""
# Any syntactically valid session key: with one, the first look at request.user reads django_session.
SESSION = {"sessionid": "z" * 32}
LEAKS = ("no such table", "django_session", "unable to open", "OperationalError", "Traceback", "sqlite")


def demo_requests(requests: list[dict[str, Any]], database: Path, **env: str) -> tuple[list[dict], str]:
    """The demo project's answers to ``requests``, and what it logged."""
    environ = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_project.settings",
        "DEMO_DATABASE": str(database),
    }
    for name in (*STRIPE_ENV, "DEMO_READY_TOKEN"):
        environ.pop(name, None)
    environ["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE), str(ROOT)])
    environ.update(env)
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, json.dumps(requests)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


OUTAGES = {
    # Tables missing: the demo's database was deleted under the running server (the reported case).
    "no tables": lambda tmp_path: tmp_path / "empty.sqlite3",
    # Cannot even be opened.
    "no database": lambda tmp_path: tmp_path / "missing-directory" / "demo.sqlite3",
}
OPERATIONS = {
    "the host's viewer": {"params": {"query": "{ viewer { username isAuthenticated } }"}},
    "the library's query": {"params": {"query": "{ stripeSubscriptionPlans { totalCount } }"}},
    "the library's mutation": {
        "body": {
            "query": 'mutation { createStripeCustomer(input: {stripeJsResponse: "{}"}) { errors { code } } }'
        }
    },
}


@pytest.mark.parametrize("outage", list(OUTAGES))
def test_a_database_outage_answers_internal_error_without_its_text(outage: str, tmp_path: Path) -> None:
    requests = [{"path": "/graphql/", "cookies": SESSION, **operation} for operation in OPERATIONS.values()]
    answers, log = demo_requests(requests, OUTAGES[outage](tmp_path))
    for name, answer in zip(OPERATIONS, answers, strict=True):
        assert answer["status"] == 200, (name, answer)
        for leak in LEAKS:
            assert leak.lower() not in answer["body"].lower(), (name, answer)
        errors = json.loads(answer["body"])["errors"]
        assert [(e["message"], e["extensions"]) for e in errors] == [
            ("Internal error.", {"code": "INTERNAL_ERROR"})
        ], name
    # The operator still sees what happened, in the server's log.
    assert "Unexpected error in Query.resolve_viewer" in log
    assert ("no such table: django_session" if outage == "no tables" else "unable to open") in log


def test_every_field_the_host_schema_adds_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    from aa_stripe_graphql.errors import masked
    from aa_stripe_graphql.schema import StripeMutation, StripeQuery

    monkeypatch.syspath_prepend(str(EXAMPLE))
    from demo_project.schema import Mutation, Query

    masked_code = masked(lambda: None).__code__
    own = [
        (host, name, field)
        for host, library in ((Query, StripeQuery), (Mutation, StripeMutation))
        for name, field in host._meta.fields.items()
        if name not in library._meta.fields
    ]
    assert "viewer" in [name for _, name, _ in own]
    for host, name, field in own:
        resolver = field.resolver or getattr(host, f"resolve_{name}", None)
        assert getattr(resolver, "__code__", None) is masked_code, f"{host.__name__}.{name} is not @masked"


def test_the_readiness_url_answers_the_token_of_its_own_run(tmp_path: Path) -> None:
    # Needs no database: it answers while the database is still being prepared, and in an outage.
    database = tmp_path / "missing-directory" / "demo.sqlite3"
    ready = [{"path": "/_demo/ready"}]
    answers, _ = demo_requests(ready, database, DEMO_READY_TOKEN="token-of-this-run")
    assert answers == [{"status": 200, "body": "token-of-this-run"}]
    # Started without run_demo.py (manage.py runserver): there is nothing to answer.
    answers, _ = demo_requests(ready, database)
    assert answers[0]["status"] == 404
