"""Schemathesis against the example project's /graphql/, on the demo's throwaway database.

The demo is started as ``make demo`` starts it (its own fake Stripe, a fresh SQLite file) and the
fuzzer signs in as its staff superuser: the session cookie and the CSRF token go in every request's
headers, so generated queries and mutations pass the permission checks and reach the resolvers
(and, through them, the fake Stripe). GraphQL's ordinary answers to bad input (validation errors,
payload ``errors``, PERMISSION_DENIED, limits) are fine; a failure is any 5xx, a body that is not
JSON, a traceback in a body or in the server's log, or an ``INTERNAL_ERROR`` (an exception that
escaped a resolver). ``AA_STRIPE_FUZZ_EXAMPLES`` (default 100 per operation) bounds the run; the
examples are derandomized so CI is repeatable, ``AA_STRIPE_FUZZ_RANDOM=1`` explores new ones.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.graphql import nodes

from tests.demo_helpers import ARTIFACTS, DEMO_PASSWORD, Demo, start_demo, stop_demo

EXAMPLES = int(os.environ.get("AA_STRIPE_FUZZ_EXAMPLES", "100"))
RANDOM = os.environ.get("AA_STRIPE_FUZZ_RANDOM") == "1"
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', '.py", line ')

# graphene's scalars that schemathesis has no strategy for: valid values, near misses and junk.
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_token = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["tok_visa", "tok_chargeDeclined", "tok_", ""]) | st.text(max_size=12),
        "object": st.sampled_from(["token", "card", "coupon"]),
    },
    optional={
        "card": st.dictionaries(st.sampled_from(["id", "brand", "last4", "exp_year"]), _json, max_size=4)
    },
)
schemathesis.graphql.scalar(
    "JSONString",
    st.one_of(_json.map(json.dumps), _token.map(json.dumps), st.text(max_size=30)).map(nodes.String),
)
schemathesis.graphql.scalar(
    "Decimal",
    st.one_of(
        st.decimals(places=3, allow_nan=False, allow_infinity=False).map(str),
        st.sampled_from(["NaN", "Infinity", "-0", "1e9", "100.0001", "", "ten"]),
        st.text(max_size=10),
    ).map(nodes.String),
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    running = start_demo(tmp_path_factory.mktemp("fuzz"))
    yield running
    stop_demo(running.process)


def signed_in_headers(demo: Demo, username: str) -> dict[str, str]:
    session = requests.Session()
    session.get(f"{demo.url}/accounts/login/", timeout=10).raise_for_status()
    answer = session.post(
        f"{demo.url}/accounts/login/",
        data={
            "username": username,
            "password": DEMO_PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=10,
    )
    answer.raise_for_status()
    cookies = session.cookies.get_dict()
    assert "sessionid" in cookies, "the sign-in did not work"
    session.close()
    return {
        "Cookie": f"sessionid={cookies['sessionid']}; csrftoken={cookies['csrftoken']}",
        "X-CSRFToken": cookies["csrftoken"],
    }


def fuzz(
    operation: schemathesis.APIOperation,
    headers: dict[str, str],
    cases: Counter[str],
    outcomes: Counter[str],
    failures: list[str],
) -> None:
    """Send EXAMPLES generated requests for one query or mutation; the first failure stops it."""
    label = operation.label

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not RANDOM,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: schemathesis.Case) -> None:
        response = case.call(headers=headers, timeout=30)
        cases[label] += 1
        outcomes[str(response.status_code)] += 1
        problem = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 500:
            problem = f"HTTP {response.status_code}"
        elif not isinstance(body, dict):
            problem = "the body is not a JSON object"
        elif any(marker in response.text for marker in TRACEBACK_MARKERS):
            problem = "a traceback in the body"
        else:
            codes = {(e.get("extensions") or {}).get("code") for e in body.get("errors") or []}
            outcomes.update(f"error {code}" for code in codes if code)
            if "INTERNAL_ERROR" in codes:
                problem = "INTERNAL_ERROR (an exception escaped a resolver)"
        if problem:
            failures.append(f"{label}: {problem}\n{case.body}\n-> {response.text[:500]}")
            raise AssertionError(failures[-1])

    run()


def test_fuzzed_graphql_never_answers_5xx_or_a_traceback(demo: Demo) -> None:
    headers = signed_in_headers(demo, "admin")
    schema = schemathesis.graphql.from_url(f"{demo.url}/graphql/", headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18  # every query and mutation of the demo's schema (incl. its own viewer)

    cases: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    failures: list[str] = []

    for operation in operations:
        fuzz(operation, headers, cases, outcomes, failures)

    server_log = demo.log()
    total = sum(cases.values())
    summary = {
        "examples_per_operation": EXAMPLES,
        "cases": total,
        "by_operation": dict(cases),
        "outcomes": dict(outcomes),
        "5xx": sum(n for status, n in outcomes.items() if status.startswith("5")),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    Path(ARTIFACTS / "fuzz-graphql.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    assert failures == []
    assert summary["5xx"] == 0
    assert "Internal Server Error" not in server_log
    assert not any(marker in server_log for marker in TRACEBACK_MARKERS)
    assert all(cases[op.label] > 0 for op in operations)
