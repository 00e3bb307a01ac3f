"""The demo as a newcomer runs it (``example/run_demo.py``, what ``make demo`` calls), and its page
driven end to end in Chromium through Playwright.

The demo runs in its own process group, with its own fake Stripe server and a throwaway SQLite
file, exactly as ``make demo`` starts it; it is stopped with SIGINT, as Ctrl-C stops it. The
browser test skips where no Chromium is installed (``apt-get install chromium``), unless
``AA_STRIPE_REQUIRE_BROWSER=1`` (set by ``.ci/run``) turns that skip into a failure. A failing
browser test leaves a screenshot in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.demo_helpers import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    DEMO_PASSWORD,
    ROOT,
    RUN_DEMO,
    Demo,
    free_port,
    port_open,
    start_demo,
    stop_demo,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    running = start_demo(tmp_path_factory.mktemp("demo"))
    yield running
    code = stop_demo(running.process)
    assert code == 0, f"the demo exited with {code} on SIGINT:\n{running.log()}"
    assert "Demo stopped." in running.log()
    # Ctrl-C stops both servers it started.
    assert not port_open(running.url)
    assert not port_open(running.fake_stripe_url)


def _get(url: str, accept: str = "text/html") -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode()


def test_demo_serves_the_page_graphiql_and_admin(demo: Demo) -> None:
    status, page = _get(demo.url + "/")
    assert status == 200
    assert "Sign in" in page
    status, graphiql = _get(demo.url + "/graphql/")
    assert status == 200
    assert "graphiql" in graphiql.lower()
    status, admin = _get(demo.url + "/admin/login/")
    assert status == 200
    assert "Django administration" in admin
    # The seeded users' passwords, plans and coupon are printed for the person running it.
    log = demo.log()
    assert f"user demo / password {DEMO_PASSWORD}" in log
    assert f"user admin / password {DEMO_PASSWORD}" in log
    assert "plan Demo Basic: 500 usd per month" in log
    assert "coupon DEMO10: 10% off" in log
    # Offline, the page loads the fake server's stand-in stripe.js.
    assert f'src="{demo.fake_stripe_url}/js.stripe.com/v3/"' in page


def test_demo_graphql_is_the_host_schema_with_the_library_inside(demo: Demo) -> None:
    query = "{ viewer { isAuthenticated } stripeSubscriptionPlans { totalCount } }"
    # A GET query needs no CSRF token: the host's own field and the library's answer side by side.
    status, answer = _get(
        f"{demo.url}/graphql/?{urllib.parse.urlencode({'query': query})}", "application/json"
    )
    assert status == 200
    assert json.loads(answer) == {
        "data": {"viewer": {"isAuthenticated": False}, "stripeSubscriptionPlans": {"totalCount": 2}}
    }


def test_demo_graphql_keeps_csrf_on(demo: Demo) -> None:
    body = json.dumps({"query": "{ viewer { isAuthenticated } }"}).encode()
    request = urllib.request.Request(
        demo.url + "/graphql/", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    # No CSRF token: Django refuses the POST before GraphQL runs (the ready view keeps CSRF on).
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 403


def test_demo_refuses_a_live_key(tmp_path: Path) -> None:
    env = {**os.environ, "STRIPE_API_KEY": "sk_live_not_a_real_key", "STRIPE_PUBLISHABLE_KEY": "pk_live_x"}
    result = subprocess.run(
        [*RUN_DEMO, "--port", str(free_port()), "--database", str(tmp_path / "x.sqlite3")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "must be a test-mode key" in result.stderr
    assert "sk_live_not_a_real_key" not in result.stdout + result.stderr
    assert not (tmp_path / "x.sqlite3").exists()


# --- The page in a browser ---------------------------------------------------------------------
def _chromium() -> str | None:
    for candidate in (os.environ.get("AA_STRIPE_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    path = _chromium()
    if path is None:
        if os.environ.get("AA_STRIPE_REQUIRE_BROWSER") == "1":
            pytest.fail("AA_STRIPE_REQUIRE_BROWSER=1 but no Chromium is installed (apt-get install chromium)")
        pytest.skip(
            "no Chromium (apt-get install chromium); AA_STRIPE_REQUIRE_BROWSER=1 makes this a failure"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def screenshot_on_failure(request: pytest.FixtureRequest) -> Iterator[list]:
    """Tests append their pages; a failing test saves a screenshot of each."""
    pages: list = []
    yield pages
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        for i, page in enumerate(pages):
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{i}.png"), full_page=True)


def _sign_in(page: object, url: str, username: str, password: str, form: str) -> None:
    page.fill(f"{form} input[name=username]", username)
    page.fill(f"{form} input[name=password]", password)
    page.click(f"{form} [type=submit]")


def test_demo_page_flow_in_chromium(demo: Demo, browser: object, screenshot_on_failure: list) -> None:
    from playwright.sync_api import expect

    context = browser.new_context()
    page = context.new_page()
    screenshot_on_failure.append(page)
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    messages = page.locator("#messages")

    page.goto(demo.url + "/")
    _sign_in(page, demo.url, "demo", DEMO_PASSWORD, "#sign-in")
    expect(page.locator("#username")).to_have_text("demo")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#plan-list")).to_contain_text("Demo Basic: $5.00 every month")
    expect(page.locator("#plan-list")).to_contain_text("Demo Pro: $48.00 every year")
    basic = page.locator("#plan-list li", has_text="Demo Basic").get_by_role("button", name="Subscribe")

    # No card yet: the API says so, and the page shows it.
    basic.click()
    expect(messages).to_contain_text("NO_ACTIVE_CUSTOMER")

    def enter_card(number: str) -> None:
        card = page.locator("#card-element")
        card.locator("input[placeholder=number]").fill(number)
        card.locator("input[placeholder=exp_month]").fill("12")
        card.locator("input[placeholder=exp_year]").fill("30")
        card.locator("input[placeholder=cvc]").fill("123")
        card.locator("input[placeholder=postal_code]").fill("10001")
        page.click("#save-card")

    # A declined card: stripe.js makes a token, Stripe refuses the card, nothing is saved.
    enter_card("4000000000000002")
    expect(messages).to_contain_text("CARD_DECLINED")
    expect(page.locator("#card-status")).to_have_text("No card yet.")

    enter_card("4242424242424242")
    expect(messages).to_have_text("Card saved.")
    expect(page.locator("#card-status")).to_contain_text("Visa •••• 4242, expires 12/2030")

    # An unknown coupon is refused before anything happens at Stripe.
    page.fill("#coupon", "NOPE")
    basic.click()
    expect(messages).to_contain_text("NOT_FOUND, coupon")
    expect(page.locator("#subscription-list")).to_have_text("None yet.")

    page.fill("#coupon", "DEMO10")
    basic.click()
    expect(messages).to_have_text("Subscribed to Demo Basic (active).")
    subscriptions = page.locator("#subscription-list")
    expect(subscriptions).to_contain_text("Demo Basic: active, coupon DEMO10")

    subscriptions.get_by_role("button", name="Cancel now").click()
    expect(messages).to_have_text("Demo Basic canceled.")
    expect(subscriptions).to_contain_text("Demo Basic: canceled, coupon DEMO10")
    expect(subscriptions.get_by_role("button")).to_have_count(0)

    # Staff: sign in to admin, charge the demo user through GraphQL, see the webhooks parsed.
    staff = browser.new_context()
    admin = staff.new_page()
    screenshot_on_failure.append(admin)
    admin.goto(demo.url + "/admin/login/?next=/admin/")
    _sign_in(admin, demo.url, "admin", DEMO_PASSWORD, "#login-form")
    admin.goto(demo.url + "/admin/auth/user/?q=demo")
    href = admin.locator("#result_list a", has_text=re.compile(r"^demo$")).get_attribute("href")
    user_pk = re.search(r"/user/(\d+)/change/", href).group(1)
    csrf = next(c["value"] for c in staff.cookies() if c["name"] == "csrftoken")
    answer = admin.request.post(
        demo.url + "/graphql/",
        headers={"X-CSRFToken": csrf, "Content-Type": "application/json", "Referer": demo.url + "/admin/"},
        data=json.dumps(
            {
                "query": "mutation($user: ID!) { createStripeCharge(input: {user: $user, amount: 1250, "
                'currency: "usd", description: "Demo order"}) { errors { code } charge { isCharged } } }',
                "variables": {"user": user_pk},
            }
        ),
    )
    assert answer.status == 200, answer.text()
    assert answer.json()["data"]["createStripeCharge"] == {"errors": [], "charge": {"isCharged": True}}

    page.reload()
    expect(page.locator("#charge-list")).to_contain_text("$12.50: Demo order, paid")
    # The webhooks parsed meanwhile (customer.created, customer.source.created, ...) kept the card.
    expect(page.locator("#card-status")).to_contain_text("Visa •••• 4242")

    # The fake Stripe delivered customer.subscription.created, signed; it is stored and parsed.
    listing = (
        demo.url
        + "/admin/aa_stripe/stripewebhook/?event_type=customer.subscription.created&is_parsed__exact=1"
    )
    deadline = time.monotonic() + 20
    while True:
        admin.goto(listing)
        if admin.locator("#result_list tbody tr").count() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expect(admin.locator("#result_list tbody tr")).to_have_count(1)
    expect(admin.locator("#result_list")).to_contain_text("customer.subscription.created")

    assert page_errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-page.png"), full_page=True)
    admin.screenshot(path=str(ARTIFACTS / "demo-admin-webhooks.png"), full_page=True)
    staff.close()
    context.close()


def test_a_signal_to_the_demo_process_alone_stops_both_servers(tmp_path: Path) -> None:
    # As `kill PID` or a process manager stops it: only run_demo.py gets the signal.
    running = start_demo(tmp_path)
    try:
        os.kill(running.process.pid, signal.SIGTERM)
        assert running.process.wait(timeout=30) == 0
        assert "Demo stopped." in running.log()
        assert not port_open(running.url)
        assert not port_open(running.fake_stripe_url)
    finally:
        stop_demo(running.process)


def test_the_demo_settings_refuse_a_live_key_without_run_demo(tmp_path: Path) -> None:
    # `python example/manage.py runserver` with a live key in the environment never starts.
    env = {
        **os.environ,
        "STRIPE_API_KEY": "sk_live_not_a_real_key",
        "DEMO_DATABASE": str(tmp_path / "x.sqlite3"),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "example/manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "test-mode keys only" in result.stderr
    assert "sk_live_not_a_real_key" not in result.stdout + result.stderr
