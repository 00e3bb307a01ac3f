"""Tests of the fake-Stripe harness itself (aa_stripe/testing/fakestripe), driven by the real stripe SDK."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import stripe

from aa_stripe.testing.fakestripe.plugin import FakeStripe
from aa_stripe.testing.fakestripe.proxy import FaultProxy
from tests import fakestripe_helpers

# The shared fixtures (pytest finds them under these names).
make_client = fakestripe_helpers.make_client
client = fakestripe_helpers.client


@pytest.fixture
def customer(fake_stripe: FakeStripe, client: stripe.StripeClient) -> stripe.Customer:
    token = fake_stripe.card_token()
    return client.v1.customers.create(params={"source": token["id"], "email": "jane@example.com"})


def charge_params(customer: stripe.Customer, **extra) -> dict:
    return {"amount": 1000, "currency": "usd", "customer": customer.id, **extra}


def test_customer_and_charge_with_metadata(fake_stripe, client, customer):
    assert customer.id.startswith("cus_")
    assert customer.default_source.startswith("card_")

    charge = client.v1.charges.create(params=charge_params(customer, metadata={"order": "42"}))

    assert charge.to_dict()["metadata"] == {"order": "42"}
    assert charge.paid is True
    listed = client.v1.charges.list(params={"customer": customer.id})
    assert [c.id for c in listed.data] == [charge.id]
    recorded = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert recorded[0].params["metadata[order]"] == "42"
    assert recorded[0].status == 200


def test_refund_metadata_and_list_by_charge(client, customer):
    charge = client.v1.charges.create(params=charge_params(customer))
    refund = client.v1.refunds.create(
        params={"charge": charge.id, "amount": 300, "metadata": {"why": "test"}, "reason": "duplicate"}
    )

    assert refund.to_dict()["metadata"] == {"why": "test"}
    assert refund.reason == "duplicate"
    assert [r.id for r in client.v1.refunds.list(params={"charge": charge.id}).data] == [refund.id]
    assert client.v1.charges.retrieve(charge.id).amount_refunded == 300


def test_a_refund_larger_than_what_is_left_is_refused_as_stripe_does(client, customer):
    charge = client.v1.charges.create(params=charge_params(customer))
    client.v1.refunds.create(params={"charge": charge.id, "amount": charge.amount - 100})

    with pytest.raises(stripe.InvalidRequestError) as too_large:
        client.v1.refunds.create(params={"charge": charge.id, "amount": 101})
    client.v1.refunds.create(params={"charge": charge.id})  # the remaining 100
    with pytest.raises(stripe.InvalidRequestError) as nothing_left:
        client.v1.refunds.create(params={"charge": charge.id})

    assert (too_large.value.code, too_large.value.param) == ("amount_too_large", "amount")
    assert nothing_left.value.code == "charge_already_refunded"
    assert client.v1.charges.retrieve(charge.id).amount_refunded == charge.amount


def test_card_declined_on_charge(fake_stripe, client):
    token = fake_stripe.card_token("4000000000000341")
    customer = client.v1.customers.create(params={"source": token["id"]})

    with pytest.raises(stripe.CardError) as excinfo:
        client.v1.charges.create(params=charge_params(customer), options={"idempotency_key": "decl"})
    assert excinfo.value.code == "card_declined"
    # Card errors are stored like at Stripe: the retry is a replay, not a second attempt.
    with pytest.raises(stripe.CardError):
        client.v1.charges.create(params=charge_params(customer), options={"idempotency_key": "decl"})
    assert [r.replayed for r in fake_stripe.proxy.calls("POST", "/v1/charges")] == [False, True]


def test_card_declined_on_attach_creates_no_customer(fake_stripe, client):
    token = fake_stripe.card_token("4000000000000002")

    with pytest.raises(stripe.CardError) as excinfo:
        client.v1.customers.create(params={"source": token["id"]})
    assert excinfo.value.json_body["error"]["type"] == "card_error"
    assert excinfo.value.json_body["error"]["decline_code"] == "generic_decline"
    assert fake_stripe.get("/v1/customers")["data"] == []


def test_missing_object_is_resource_missing(client):
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.customers.retrieve("cus_nope")
    assert (excinfo.value.http_status, excinfo.value.code) == (404, "resource_missing")


def test_idempotent_replay(fake_stripe, client):
    params = {"email": "once@example.com"}
    first = client.v1.customers.create(params=params, options={"idempotency_key": "k1"})
    second = client.v1.customers.create(params=params, options={"idempotency_key": "k1"})

    assert second.to_dict() == first.to_dict()
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(fake_stripe.get("/v1/customers")["data"]) == 1
    assert [(r.idempotency_key, r.replayed) for r in fake_stripe.proxy.calls()] == [
        ("k1", False),
        ("k1", True),
    ]


def test_idempotency_key_reused_with_other_params(fake_stripe, client):
    client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "k1"})

    with pytest.raises(stripe.IdempotencyError) as excinfo:
        client.v1.customers.create(params={"email": "b@example.com"}, options={"idempotency_key": "k1"})
    assert excinfo.value.http_status == 400
    assert "same parameters" in excinfo.value.user_message
    assert len(fake_stripe.get("/v1/customers")["data"]) == 1


def test_idempotency_key_in_use_while_first_request_runs(fake_stripe):
    # A "delay" fault holds a request *before* it reaches Stripe, so it holds no key yet. To keep a
    # request in flight at "Stripe", put a slow upstream behind a second proxy.
    slow = _SlowUpstream(fake_stripe.direct_url, seconds=0.5)
    with slow, FaultProxy(slow.url) as proxy:
        url = f"{proxy.url}/v1/customers"
        headers = {"Authorization": f"Bearer {fake_stripe.api_key}", "Idempotency-Key": "same"}
        first: dict = {}
        thread = threading.Thread(
            target=lambda: first.update(
                r=requests.post(url, data={"email": "x@y.z"}, headers=headers, timeout=5)
            )
        )
        thread.start()
        time.sleep(0.2)
        second = requests.post(url, data={"email": "x@y.z"}, headers=headers, timeout=5)
        thread.join()
        third = requests.post(url, data={"email": "x@y.z"}, headers=headers, timeout=5)

    assert first["r"].status_code == 200
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "idempotency_key_in_use"
    assert third.headers["Idempotent-Replayed"] == "true"
    assert third.json()["id"] == first["r"].json()["id"]


def test_drop_after_then_retry_replays(fake_stripe, client, customer):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")

    with pytest.raises(stripe.APIConnectionError):
        client.v1.charges.create(params=charge_params(customer), options={"idempotency_key": "ch-1"})
    charges = fake_stripe.get("/v1/charges")["data"]
    assert len(charges) == 1  # Stripe acted, we never heard

    retried = client.v1.charges.create(params=charge_params(customer), options={"idempotency_key": "ch-1"})
    assert retried.id == charges[0]["id"]
    assert len(fake_stripe.get("/v1/charges")["data"]) == 1
    calls = fake_stripe.proxy.calls("POST", "/v1/charges")
    assert [(c.fault, c.replayed, c.status) for c in calls] == [("drop_after", False, 200), (None, True, 200)]


def test_drop_after_with_sdk_retries(fake_stripe, make_client, customer):
    client = make_client(retries=1)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")

    charge = client.v1.charges.create(params=charge_params(customer))  # the SDK adds a key when retrying

    assert [c.id for c in client.v1.charges.list().data] == [charge.id]
    assert [c.replayed for c in fake_stripe.proxy.calls("POST", "/v1/charges")] == [False, True]


def test_drop_before_creates_nothing(fake_stripe, client, customer):
    fake_stripe.proxy.inject("drop_before", path_prefix="/v1/charges")

    with pytest.raises(stripe.APIConnectionError):
        client.v1.charges.create(params=charge_params(customer), options={"idempotency_key": "ch-2"})
    assert fake_stripe.get("/v1/charges")["data"] == []

    charge = client.v1.charges.create(params=charge_params(customer), options={"idempotency_key": "ch-2"})
    assert charge.paid
    assert [c.replayed for c in fake_stripe.proxy.calls("POST", "/v1/charges")] == [False, False]


def test_status_500_then_success_with_one_retry(fake_stripe, make_client):
    client = make_client(retries=1)
    fake_stripe.proxy.inject("status", status=500, method="POST", path_prefix="/v1/customers")

    created = client.v1.customers.create(params={"email": "r@example.com"})

    assert created.email == "r@example.com"
    assert [(c.status, c.fault) for c in fake_stripe.proxy.calls()] == [(500, "status"), (200, None)]
    keys = {c.idempotency_key for c in fake_stripe.proxy.calls()}
    assert len(keys) == 1 and None not in keys  # the SDK reused its generated key


def test_status_500_without_retries(fake_stripe, client):
    fake_stripe.proxy.inject("status", status=502, times=2)

    for _ in range(2):
        with pytest.raises(stripe.APIError) as excinfo:
            client.v1.customers.list()
        assert excinfo.value.http_status == 502
    assert client.v1.customers.list().data == []


def test_rate_limited(fake_stripe, make_client):
    fake_stripe.proxy.inject("status", status=429, retry_after=7)
    with pytest.raises(stripe.RateLimitError) as excinfo:
        make_client().v1.customers.list()
    assert excinfo.value.headers["Retry-After"] == "7"
    assert excinfo.value.json_body["error"]["type"] == "rate_limit_error"

    # The SDK retries a 429 only when Stripe says so.
    fake_stripe.proxy.inject("status", status=429, should_retry=True)
    assert make_client(retries=1).v1.customers.list().data == []
    assert [c.status for c in fake_stripe.proxy.calls()] == [429, 429, 200]


def test_delay_beyond_client_timeout(fake_stripe, make_client):
    fake_stripe.proxy.inject("delay", seconds=3, method="POST", path_prefix="/v1/customers")

    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        make_client(timeout=0.5).v1.customers.create(params={"email": "slow@example.com"})
    assert time.monotonic() - started < 2
    # reset() (which the fixture also runs at teardown) kills the sleeping request before it forwards.
    fake_stripe.proxy.reset()
    time.sleep(0.1)
    assert fake_stripe.get("/v1/customers")["data"] == []


def test_faults_match_method_and_prefix_in_order(fake_stripe, client):
    proxy = fake_stripe.proxy
    proxy.inject("status", status=503, method="POST", path_prefix="/v1/coupons")
    proxy.inject("status", status=500, method="GET")

    with pytest.raises(stripe.APIError):
        client.v1.customers.list()
    client.v1.customers.create()  # POST /v1/customers: no fault matches
    with pytest.raises(stripe.APIError):
        client.v1.coupons.create(params={"duration": "once", "percent_off": 5})
    client.v1.coupons.list()

    assert [(c.method, c.path, c.status) for c in proxy.calls()] == [
        ("GET", "/v1/customers", 500),
        ("POST", "/v1/customers", 200),
        ("POST", "/v1/coupons", 503),
        ("GET", "/v1/coupons", 200),
    ]
    with pytest.raises(ValueError):
        proxy.inject("explode")


def test_current_api_coupon_plan_subscription(client, customer):
    redeem_by = int(time.time()) + 3600
    coupon = client.v1.coupons.create(
        params={
            "id": "TENOFF",
            "duration": "once",
            "percent_off": 10,
            "max_redemptions": 1,
            "redeem_by": redeem_by,
        }
    )
    assert (coupon.max_redemptions, coupon.redeem_by, coupon.times_redeemed, coupon.valid) == (
        1,
        redeem_by,
        0,
        True,
    )
    plan = client.v1.plans.create(
        params={
            "id": "monthly",
            "amount": 500,
            "currency": "usd",
            "interval": "month",
            "product": {"name": "Gold", "statement_descriptor": "GOLD PLAN"},
        }
    )
    assert plan.product.startswith("prod_")
    product = client.v1.products.retrieve(plan.product)
    assert (product.name, product.statement_descriptor) == ("Gold", "GOLD PLAN")

    subscription = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"plan": plan.id}], "discounts": [{"coupon": coupon.id}]}
    )

    assert subscription.status == "active"
    assert subscription.to_dict()["items"]["data"][0]["plan"]["id"] == "monthly"
    assert subscription.discount.source.coupon == "TENOFF"
    assert subscription.discount.coupon.id == "TENOFF"
    assert subscription.discounts == [subscription.discount.id]
    used_up = client.v1.coupons.retrieve("TENOFF")
    assert (used_up.times_redeemed, used_up.valid) == (1, False)
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.subscriptions.create(
            params={
                "customer": customer.id,
                "items": [{"plan": plan.id}],
                "discounts": [{"coupon": "TENOFF"}],
            }
        )
    assert excinfo.value.code == "coupon_expired"


def test_customer_expand_sources(fake_stripe, client):
    token = fake_stripe.card_token()
    created = client.v1.customers.create(params={"source": token["id"], "expand": ["sources"]})
    retrieved = client.v1.customers.retrieve(created.id, params={"expand": ["sources"]})
    updated = client.v1.customers.update(created.id, params={"description": "x", "expand": ["sources"]})

    for customer in (created, retrieved, updated):
        assert [s.id for s in customer.sources.data] == [customer.default_source]


def test_customer_update_source_replaces_default(fake_stripe, client, customer):
    old = customer.default_source
    updated = client.v1.customers.update(customer.id, params={"source": fake_stripe.card_token()["id"]})

    assert updated.default_source != old
    assert [s.id for s in updated.sources.data] == [updated.default_source]


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.put((body, self.headers["Stripe-Signature"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@contextmanager
def webhook_receiver(fake_stripe: FakeStripe, events: list[str]) -> Iterator[queue.Queue]:
    """A local endpoint registered at the fake for ``events``; yields the queue of (body, signature)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = queue.Queue()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        fake_stripe.register_webhook("hook", url, "whsec_test", events=events)
        yield server.received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_webhook_delivery_is_signed_and_scoped_to_the_test(fake_stripe, client):
    before_wipe = client.v1.customers.create()  # its event is still waiting to be delivered...
    fake_stripe.wipe()  # ...and the wipe cancels it, as the fixture's wipe does between tests
    with webhook_receiver(fake_stripe, ["customer.created"]) as received:
        created = client.v1.customers.create()
        body, signature = received.get(timeout=5)
        time.sleep(0.2)

    event = stripe.Webhook.construct_event(body, signature, "whsec_test")
    assert (event.type, event.data.object.id) == ("customer.created", created.id)
    assert received.empty()  # nothing for before_wipe, nothing else
    assert before_wipe.id != created.id
    assert fake_stripe._webhooks == ["hook"]  # re-registered with no events at teardown


def test_customer_created_event_shows_the_card_it_was_created_with(fake_stripe, client):
    # localstripe snapshots customer.created before attaching `source`; Stripe's event has the card.
    with webhook_receiver(fake_stripe, ["customer.created"]) as received:
        created = client.v1.customers.create(params={"source": fake_stripe.card_token()["id"]})
        body, signature = received.get(timeout=5)

    event = stripe.Webhook.construct_event(body, signature, "whsec_test")
    assert event.data.object.id == created.id
    assert created.default_source
    assert event.data.object.default_source == created.default_source


def test_config_paths_are_not_recorded(fake_stripe):
    requests.delete(f"{fake_stripe.url}/_config/data", timeout=5).raise_for_status()
    assert requests.get(f"{fake_stripe.url}/js.stripe.com/v3/", timeout=5).status_code == 200
    assert fake_stripe.proxy.requests == []


def test_settings_point_at_the_proxy(fake_stripe, settings):
    assert fake_stripe.url == settings.STRIPE_API_BASE
    assert settings.STRIPE_API_KEY == "sk_test_aa_stripe_tests"


# --- hold, status_after, forget_keys ------------------------------------------------------------


def test_hold_acts_stores_and_answers_nothing_until_the_client_hangs_up(
    fake_stripe, make_client, client, customer
):
    proxy = fake_stripe.proxy
    proxy.inject("hold", method="POST", path_prefix="/v1/charges")
    impatient = make_client(timeout=2)

    with ThreadPoolExecutor(1) as pool:
        held_call = pool.submit(
            impatient.v1.charges.create, params=charge_params(customer), options={"idempotency_key": "ch-h"}
        )
        [held] = proxy.wait_held()
        assert (held.fault, held.replayed, held.status) == ("hold", False, 200)
        assert proxy.held == [held]
        [charge] = fake_stripe.get("/v1/charges")["data"]  # Stripe acted before the hold
        # Other requests go on meanwhile; the same key replays the stored answer (no 409: not in flight).
        assert client.v1.customers.retrieve(customer.id).id == customer.id
        retried = client.v1.charges.create(
            params=charge_params(customer), options={"idempotency_key": "ch-h"}
        )
        assert retried.id == charge["id"]
        assert retried.last_response.headers["Idempotent-Replayed"] == "true"
        assert isinstance(held_call.exception(timeout=10), stripe.APIConnectionError)  # its own timeout
    proxy.wait_released(timeout=5)  # the client closed its connection and the proxy noticed

    assert len(fake_stripe.get("/v1/charges")["data"]) == 1
    calls = proxy.calls("POST", "/v1/charges")
    assert [(c.fault, c.replayed, c.status) for c in calls] == [("hold", False, 200), (None, True, 200)]


# A worker process that sends one request and waits for its answer as long as it takes.
_WORKER = """
import sys, requests
url, key, api_key = sys.argv[1:]
requests.post(url, data={"email": "w@example.com"}, headers={"Authorization": f"Bearer {api_key}",
              "Idempotency-Key": key}, timeout=60)
"""


@pytest.mark.parametrize(("fault", "stripe_acted"), [("hold", True), ("hold_before", False)])
def test_held_request_of_a_killed_process_is_released(fake_stripe, client, fault, stripe_acted):
    proxy = fake_stripe.proxy
    proxy.inject(fault, method="POST", path_prefix="/v1/customers")
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, f"{fake_stripe.url}/v1/customers", "w-1", fake_stripe.api_key],
        stdin=subprocess.DEVNULL,
    )
    try:
        proxy.wait_held(timeout=20)
    finally:
        worker.kill()  # SIGKILL: no goodbye, the kernel closes its socket
        worker.wait(timeout=10)
    proxy.wait_released(timeout=5)

    assert len(fake_stripe.get("/v1/customers")["data"]) == (1 if stripe_acted else 0)
    again = client.v1.customers.create(params={"email": "w@example.com"}, options={"idempotency_key": "w-1"})
    [customer] = fake_stripe.get("/v1/customers")["data"]
    assert again.id == customer["id"]
    assert [(c.fault, c.replayed, c.status) for c in proxy.calls()] == [
        (fault, False, 200 if stripe_acted else None),
        (None, stripe_acted, 200),  # a replay only if Stripe had acted
    ]


def test_reset_and_stop_release_held_requests_and_their_threads(fake_stripe):
    headers = {"Authorization": f"Bearer {fake_stripe.api_key}"}
    with FaultProxy(fake_stripe.direct_url) as proxy, ThreadPoolExecutor(1) as pool:
        url = f"{proxy.url}/v1/customers"
        proxy.inject("hold")
        first = pool.submit(requests.post, url, headers=headers, timeout=30)
        proxy.wait_held()
        threads = list(proxy._server.connections.values())
        proxy.reset()
        assert isinstance(first.exception(timeout=5), requests.ConnectionError)
        proxy.wait_released(timeout=0)  # reset() forgot it at once

        proxy.inject("hold_before")
        second = pool.submit(requests.post, url, headers=headers, timeout=30)
        proxy.wait_held()
        threads += proxy._server.connections.values()
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 5
        assert isinstance(second.exception(timeout=5), requests.ConnectionError)

    for thread in threads:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in threads)
    assert len(fake_stripe.get("/v1/customers")["data"]) == 1  # the hold acted, the hold_before did not


def test_status_after_acts_then_fails_and_the_failure_is_replayed(fake_stripe, make_client):
    proxy = fake_stripe.proxy
    proxy.inject("status_after", method="POST", path_prefix="/v1/customers")

    with pytest.raises(stripe.APIError) as excinfo:  # the SDK retries a 500 with the same key...
        make_client(retries=1).v1.customers.create(
            params={"email": "a@example.com"}, options={"idempotency_key": "c-1"}
        )
    assert excinfo.value.http_status == 500
    assert excinfo.value.headers["Idempotent-Replayed"] == "true"  # ...and gets the saved 500 back
    assert len(fake_stripe.get("/v1/customers")["data"]) == 1  # Stripe acted, once
    assert [(c.fault, c.replayed, c.status) for c in proxy.calls()] == [
        ("status_after", False, 500),
        (None, True, 500),
    ]

    # Once the key expired, the same request acts again: a second customer.
    assert proxy.forget_keys() == 1
    created = make_client().v1.customers.create(
        params={"email": "a@example.com"}, options={"idempotency_key": "c-1"}
    )
    assert "Idempotent-Replayed" not in created.last_response.headers
    assert len(fake_stripe.get("/v1/customers")["data"]) == 2


def test_status_after_options_and_requests_it_leaves_alone(fake_stripe, make_client, client):
    proxy = fake_stripe.proxy
    proxy.inject("status_after", status=503, should_retry=False)
    with pytest.raises(stripe.APIError) as excinfo:
        make_client(retries=2).v1.customers.create(options={"idempotency_key": "c-2"})
    assert (excinfo.value.http_status, excinfo.value.headers["Stripe-Should-Retry"]) == (503, "false")

    # A replay is not executed, so the fault does not touch it (it is still used up and recorded).
    stored = client.v1.customers.create(options={"idempotency_key": "c-3"})
    proxy.inject("status_after")
    assert client.v1.customers.create(options={"idempotency_key": "c-3"}).id == stored.id

    assert [(c.fault, c.replayed, c.status) for c in proxy.calls()] == [
        ("status_after", False, 503),  # Stripe-Should-Retry: false, so no retry
        (None, False, 200),
        ("status_after", True, 200),
    ]
    assert len(fake_stripe.get("/v1/customers")["data"]) == 2
    with pytest.raises(ValueError, match="5xx"):
        proxy.inject("status_after", status=429)


def test_forget_keys_executes_old_keys_afresh(fake_stripe, client):
    proxy = fake_stripe.proxy
    first = client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "k1"})
    other = client.v1.customers.create(params={"email": "b@example.com"}, options={"idempotency_key": "k2"})

    assert proxy.forget_keys("k1", "never-used") == 1
    again = client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "k1"})
    assert again.id != first.id
    assert (
        client.v1.customers.create(params={"email": "b@example.com"}, options={"idempotency_key": "k2"}).id
        == other.id
    )
    assert proxy.forget_keys() == 2
    # A forgotten key carries no parameters either: other ones are no idempotency error.
    client.v1.customers.create(params={"email": "c@example.com"}, options={"idempotency_key": "k2"})

    assert [(c.idempotency_key, c.replayed) for c in proxy.calls()] == [
        ("k1", False),
        ("k2", False),
        ("k1", False),
        ("k2", True),
        ("k2", False),
    ]
    assert len(fake_stripe.get("/v1/customers")["data"]) == 4


class _SlowUpstream(FaultProxy):
    """A FaultProxy used as a slow upstream: every request is delayed by ``seconds``."""

    def __init__(self, upstream: str, seconds: float) -> None:
        super().__init__(upstream)
        self._seconds = seconds

    def start(self) -> _SlowUpstream:
        super().start()
        self.inject("delay", seconds=self._seconds, times=1000)
        return self
