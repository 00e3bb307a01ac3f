"""The demo as a newcomer runs it (``example/run_demo.py``, what ``make demo`` calls), and its page
driven end to end in Chromium through Playwright.

The demo runs in its own process group, with its own fake Stripe server and a throwaway SQLite
file, exactly as ``make demo`` starts it; it is stopped with SIGINT, as Ctrl-C stops it. The
browser test skips where no Chromium is installed (``apt-get install chromium``), unless
``AA_STRIPE_REQUIRE_BROWSER=1`` (set by ``.ci/run``) turns that skip into a failure. A failing
browser test leaves a screenshot in ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
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
    assert "price Demo Basic: 500 usd per month" in log
    assert "price Demo Pro: 4800 usd per year" in log
    assert "coupon DEMO10: 10% off" in log
    # Offline, the page loads the fake server's stand-in stripe.js.
    assert f'src="{demo.fake_stripe_url}/js.stripe.com/v3/"' in page


def test_demo_graphql_is_the_host_schema_with_the_library_inside(demo: Demo) -> None:
    query = "{ viewer { isAuthenticated } stripePrices { totalCount } }"
    # A GET query needs no CSRF token: the host's own field and the library's answer side by side.
    status, answer = _get(
        f"{demo.url}/graphql/?{urllib.parse.urlencode({'query': query})}", "application/json"
    )
    assert status == 200
    assert json.loads(answer) == {
        "data": {"viewer": {"isAuthenticated": False}, "stripePrices": {"totalCount": 2}}
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


def _sign_in(page: object, url: str, username: str, password: str, form: str) -> None:
    page.fill(f"{form} input[name=username]", username)
    page.fill(f"{form} input[name=password]", password)
    page.click(f"{form} [type=submit]")


class Shopper:
    """One signed-in browser context on the demo page, as a customer (or staff) sees it.

    It records what the page's JavaScript asks of the demo's own server (only the GraphQL API may be
    called) and any uncaught JavaScript error; the bank's dialog is answered with :meth:`bank`, which
    keeps a screenshot of the dialog for the failure report."""

    def __init__(self, browser: object, demo: Demo, username: str, shots: dict[str, bytes]) -> None:
        from playwright.sync_api import expect

        self.demo, self.username, self.shots = demo, username, shots
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.calls: list[tuple[str, str]] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", self._record)
        self.page.goto(demo.url + "/")
        _sign_in(self.page, demo.url, username, DEMO_PASSWORD, "#sign-in")
        expect(self.page.locator("#username")).to_have_text(username)
        self.ready()
        self.messages = self.page.locator("#messages")

    def _record(self, request: object) -> None:
        if request.resource_type in ("fetch", "xhr") and request.url.startswith(self.demo.url):
            self.calls.append((request.method, request.url.removeprefix(self.demo.url)))

    def ready(self) -> None:
        from playwright.sync_api import expect

        expect(self.page.locator("body")).to_have_attribute("data-ready", "true")

    def reload(self) -> None:
        self.page.reload()
        self.ready()

    def section(self, name: str) -> object:
        return self.page.locator(f"#{name}-list")

    def row(self, name: str, text: str) -> object:
        return self.section(name).locator("li", has_text=text)

    def enter_card(self, number: str) -> None:
        card = self.page.locator("#card-element")
        card.locator("input[placeholder=number]").fill(number)
        card.locator("input[placeholder=exp_month]").fill("12")
        card.locator("input[placeholder=exp_year]").fill("30")
        card.locator("input[placeholder=cvc]").fill("123")
        card.locator("input[placeholder=postal_code]").fill("10001")
        self.page.click("#save-card")

    def bank(self, step: str, passed: bool) -> None:
        """The bank's 3-D Secure dialog (the fake stripe.js's): wait for it, keep a screenshot, answer."""
        from playwright.sync_api import expect

        complete = self.page.get_by_role("button", name="Complete authentication")
        expect(complete).to_be_visible()
        self.shots[f"{self.username}-{step}"] = self.page.screenshot(full_page=True)
        self.page.get_by_role(
            "button", name="Complete authentication" if passed else "Fail authentication"
        ).click()
        expect(complete).to_have_count(0)

    def finish(self) -> None:
        assert self.errors == [], self.errors
        # The page's JavaScript called nothing of the server but the GraphQL API.
        assert self.calls, "the page made no GraphQL call"
        assert set(self.calls) == {("POST", "/graphql/")}, self.calls
        self.context.close()


@pytest.fixture
def shoppers(
    demo: Demo, browser: object, request: pytest.FixtureRequest
) -> Iterator[tuple[list[Shopper], dict[str, bytes]]]:
    """Shoppers of one test; on failure their pages and every bank dialog they met go to test-artifacts/."""
    opened: list[Shopper] = []
    shots: dict[str, bytes] = {}
    yield opened, shots
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        for name, png in shots.items():
            (ARTIFACTS / f"{request.node.name}-dialog-{name}.png").write_bytes(png)
        for shopper in opened:
            with contextlib.suppress(Exception):
                shopper.page.screenshot(
                    path=str(ARTIFACTS / f"{request.node.name}-{shopper.username}.png"), full_page=True
                )
    for shopper in opened:
        with contextlib.suppress(Exception):
            shopper.context.close()


def _new_customer(demo: Demo, browser: object, username: str) -> None:
    """A user added in the admin by staff, as a host's sign-up would (the demo seeds only ``demo``)."""
    from playwright.sync_api import expect

    context = browser.new_context()
    admin = context.new_page()
    admin.goto(demo.url + "/admin/login/?next=/admin/auth/user/add/")
    _sign_in(admin, demo.url, "admin", DEMO_PASSWORD, "#login-form")
    admin.fill("#id_username", username)
    admin.fill("#id_password1", DEMO_PASSWORD)
    admin.fill("#id_password2", DEMO_PASSWORD)
    admin.click("input[name=_save]")
    expect(admin).to_have_url(re.compile(r"/admin/auth/user/\d+/change/"))
    context.close()


def _open(
    shoppers: tuple[list[Shopper], dict[str, bytes]], demo: Demo, browser: object, username: str
) -> Shopper:
    opened, shots = shoppers
    shopper = Shopper(browser, demo, username, shots)
    opened.append(shopper)
    return shopper


def _save_authenticated_card(shopper: Shopper, number: str, last4: str) -> None:
    from playwright.sync_api import expect

    shopper.enter_card(number)
    shopper.bank(f"save-{last4}", passed=True)
    expect(shopper.messages).to_have_text(f"Card saved: Visa •••• {last4}, expires 12/2030.")


def test_demo_saves_cards_through_setup_intents(demo: Demo, browser: object, shoppers: tuple) -> None:
    from playwright.sync_api import expect

    _new_customer(demo, browser, "cards")
    me = _open(shoppers, demo, browser, "cards")
    expect(me.section("card")).to_have_text("No card yet.")

    # Declined while being saved: stripe.js reports it, nothing is saved.
    me.enter_card("4000000000000002")
    expect(me.messages).to_have_text("Card not saved: Your card was declined.")
    expect(me.section("card")).to_have_text("No card yet.")

    # A plain card: saved at once, and the default as it is the first.
    me.enter_card("4242424242424242")
    expect(me.messages).to_have_text("Card saved: Visa •••• 4242, expires 12/2030.")
    expect(me.section("card")).to_contain_text("Visa •••• 4242, expires 12/2030 (default)")

    # A card whose bank asks when it is saved: the check failed, nothing is saved.
    me.enter_card("4000002500003155")
    me.bank("save-3155-failed", passed=False)
    expect(me.messages).to_contain_text("Card not saved:")
    expect(me.messages).to_contain_text("authentication failed")
    expect(me.section("card").locator("li")).to_have_count(1)

    # The check passed: saved, not the default (the customer has one).
    _save_authenticated_card(me, "4000002500003155", "3155")
    expect(me.section("card").locator("li")).to_have_count(2)
    expect(me.row("card", "3155")).not_to_contain_text("(default)")

    me.row("card", "3155").get_by_role("button", name="Make default").click()
    expect(me.messages).to_have_text("Visa •••• 3155, expires 12/2030 is your default card.")
    expect(me.row("card", "3155")).to_contain_text("(default)")
    expect(me.row("card", "4242")).not_to_contain_text("(default)")

    me.row("card", "4242").get_by_role("button", name="Remove").click()
    expect(me.messages).to_have_text("Visa •••• 4242, expires 12/2030 removed.")
    expect(me.section("card").locator("li")).to_have_count(1)
    # What the page shows is what the library keeps: the same after a reload.
    me.reload()
    expect(me.section("card")).to_have_text("Visa •••• 3155, expires 12/2030 (default)Remove")
    me.finish()


def test_demo_charge_waits_for_the_customers_bank(demo: Demo, browser: object, shoppers: tuple) -> None:
    from playwright.sync_api import expect

    _new_customer(demo, browser, "payer")
    me = _open(shoppers, demo, browser, "payer")
    _save_authenticated_card(me, "4000002760003184", "3184")  # its bank asks on every payment

    # Staff charge the customer from the page: off-session, the bank wants the customer. The first
    # answer is lost on its way back (the charge was made): clicking again sends the same request
    # with the same idempotency key, answered once, so there is one charge.
    staff = _open(shoppers, demo, browser, "admin")
    staff.page.select_option("#charge-user", label="payer")
    staff.page.fill("#charge-amount", "1250")
    staff.page.fill("#charge-description", "Demo order")
    lost: list[str] = []

    def lose_the_answer(route: object) -> None:
        if "createStripeCharge" in (route.request.post_data or "") and not lost:
            route.fetch()  # the server does the work; its answer never reaches the page
            lost.append(route.request.post_data)
            route.abort("connectionreset")
        else:
            route.continue_()

    staff.page.route("**/graphql/", lose_the_answer)
    staff.page.click("#create-charge")
    expect(staff.messages).to_contain_text("Failed to fetch")
    staff.page.click("#create-charge")
    expect(staff.messages).to_have_text(
        "Charged payer $12.50: it waits for payer to confirm it with their bank."
    )
    assert len(lost) == 1

    me.reload()
    charge = me.row("charge", "Demo order")
    expect(charge).to_contain_text("$12.50: Demo order, unpaid: your bank asks you to confirm it")
    expect(me.section("charge").locator("li")).to_have_count(1)  # one charge, not two

    # The customer fails the bank's check: not paid, and the page says why.
    charge.get_by_role("button", name="Pay").click()
    me.bank("pay-failed", passed=False)
    expect(me.messages).to_contain_text(
        "$12.50 (Demo order) not paid: The provided PaymentMethod has failed authentication."
    )
    expect(charge).to_contain_text("unpaid: the bank's check failed")

    # Again, passed: paid.
    charge.get_by_role("button", name="Pay").click()
    me.bank("pay-passed", passed=True)
    expect(me.messages).to_have_text("Paid $12.50 (Demo order).")
    expect(charge).to_have_text("$12.50: Demo order, paid")
    me.reload()
    expect(me.row("charge", "Demo order")).to_have_text("$12.50: Demo order, paid")
    me.finish()
    staff.finish()


def test_demo_subscription_first_payment_asks_the_bank(demo: Demo, browser: object, shoppers: tuple) -> None:
    from playwright.sync_api import expect

    _new_customer(demo, browser, "subscriber")
    me = _open(shoppers, demo, browser, "subscriber")
    expect(me.section("price")).to_contain_text("Demo Basic: $5.00 every month")
    expect(me.section("price")).to_contain_text("Demo Pro: $48.00 every year")
    basic = me.row("price", "Demo Basic").get_by_role("button", name="Subscribe")

    # No card yet: the page asks for one first (nothing is subscribed).
    basic.click()
    expect(me.messages).to_have_text(
        "Demo Basic: save a card first (1. Your cards); it pays the first invoice."
    )
    _save_authenticated_card(me, "4000002760003184", "3184")

    # An unknown coupon is refused before anything happens at Stripe.
    me.page.fill("#coupon", "NOPE")
    basic.click()
    expect(me.messages).to_contain_text("NOT_FOUND, coupon")
    expect(me.section("subscription")).to_have_text("None yet.")
    me.page.fill("#coupon", "")

    # The first payment asks the bank: failed, the subscription waits (incomplete) for the payment.
    basic.click()
    me.bank("subscribe-failed", passed=False)
    expect(me.messages).to_contain_text(
        "Demo Basic: first payment not completed. The provided PaymentMethod has failed authentication."
    )
    subscription = me.row("subscription", "Demo Basic")
    expect(subscription).to_contain_text("Demo Basic: incomplete, waiting for your payment")

    # Completed later from the list: the check passed, the invoice is paid, the subscription active.
    subscription.get_by_role("button", name="Complete payment").click()
    me.bank("subscribe-passed", passed=True)
    expect(me.messages).to_have_text("Subscribed to Demo Basic (active).", timeout=30_000)
    expect(subscription).to_contain_text("Demo Basic: active")
    invoice = me.section("invoice").locator("li")
    expect(invoice).to_have_count(1)
    expect(invoice).to_contain_text(": $5.00, paid")
    for label in ("View", "PDF"):
        href = invoice.get_by_role("link", name=label).get_attribute("href")
        assert href.startswith("http"), href

    # With a coupon and the same card: the bank asks again (this card asks on every payment).
    me.page.fill("#coupon", "DEMO10")
    me.row("price", "Demo Pro").get_by_role("button", name="Subscribe").click()
    me.bank("subscribe-pro", passed=True)
    expect(me.messages).to_have_text("Subscribed to Demo Pro (active).", timeout=30_000)
    expect(me.row("subscription", "Demo Pro")).to_contain_text("Demo Pro: active, coupon DEMO10")
    expect(me.section("invoice").locator("li")).to_have_count(2)
    expect(me.section("invoice")).to_contain_text(": $43.20, paid")

    subscription.get_by_role("button", name="Cancel now").click()
    expect(me.messages).to_have_text("Demo Basic canceled.")
    expect(subscription).to_contain_text("Demo Basic: canceled")
    expect(subscription.get_by_role("button")).to_have_count(0)
    me.finish()

    # Staff see the events the fake Stripe delivered, signed, stored and parsed.
    staff = browser.new_context()
    admin = staff.new_page()
    admin.goto(demo.url + "/admin/login/?next=/admin/")
    _sign_in(admin, demo.url, "admin", DEMO_PASSWORD, "#login-form")
    listing = demo.url + "/admin/aa_stripe/stripewebhook/?event_type=invoice.paid&is_parsed__exact=1"
    deadline = time.monotonic() + 20
    while True:
        admin.goto(listing)
        if admin.locator("#result_list tbody tr").count() >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expect(admin.locator("#result_list tbody tr")).to_have_count(2)
    ARTIFACTS.mkdir(exist_ok=True)
    admin.screenshot(path=str(ARTIFACTS / "demo-admin-webhooks.png"), full_page=True)
    staff.close()


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
