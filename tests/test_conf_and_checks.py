"""Settings (aa_stripe.conf), system checks (aa_stripe.checks) and what the gateway sends to Stripe."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe
from django.contrib.auth import get_user_model
from django.core.checks import Error, Warning, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from aa_stripe import stripe_api
from aa_stripe.conf import SETTINGS, StripeSettings, default_currency, stripe_settings, user_model_label
from aa_stripe.models import StripeCharge, StripeCoupon, StripeCustomer
from tests.conftest import make_customer

# --- settings ---------------------------------------------------------------------------------

EXPECTED_DEFAULTS = {
    "API_KEY": ("STRIPE_API_KEY", ""),
    "CHARGE_API": ("STRIPE_CHARGE_API", "payment_intents"),
    "STATEMENT_DESCRIPTOR_PREFIX": ("STRIPE_STATEMENT_DESCRIPTOR_PREFIX", ""),
    "WEBHOOK_ENDPOINT_SECRET": ("STRIPE_WEBHOOK_ENDPOINT_SECRET", ""),
    "USER_MODEL": ("STRIPE_USER_MODEL", "testapp.User"),  # AUTH_USER_MODEL
    "PENDING_WEBHOOKS_THRESHOLD": ("STRIPE_PENDING_WEBHOOKS_THRESHOLD", 20),
    "ENV_PREFIX": ("ENV_PREFIX", ""),
    "API_VERSION": ("STRIPE_API_VERSION", None),
    "API_BASE": ("STRIPE_API_BASE", None),
    "DEFAULT_CURRENCY": ("STRIPE_DEFAULT_CURRENCY", "usd"),
    "MAX_NETWORK_RETRIES": ("STRIPE_MAX_NETWORK_RETRIES", 2),
    "HTTP_TIMEOUT": ("STRIPE_HTTP_TIMEOUT", 30),
    "WEBHOOK_TOLERANCE": ("STRIPE_WEBHOOK_TOLERANCE", 300),
    "WEBHOOK_MAX_BODY_BYTES": ("STRIPE_WEBHOOK_MAX_BODY_BYTES", 1024 * 1024),
    "WEBHOOK_ALLOW_UNSIGNED_IN_DEBUG": ("STRIPE_WEBHOOK_ALLOW_UNSIGNED_IN_DEBUG", False),
    "WEBHOOK_DEFERRED_PARSING": ("STRIPE_WEBHOOK_DEFERRED_PARSING", False),
    "WEBHOOK_ENQUEUE_WINDOW": ("STRIPE_WEBHOOK_ENQUEUE_WINDOW", 0.5),
    "PAYMENT_ORIGIN": ("PAYMENT_ORIGIN", None),
    "OPERATION_LEASE": ("STRIPE_OPERATION_LEASE", 300),
    "OPERATIONS_ALERT_AFTER": ("STRIPE_OPERATIONS_ALERT_AFTER", 3600),
    "TRANSACTION_GUARD": ("STRIPE_TRANSACTION_GUARD", None),
}


def test_every_setting_has_an_expected_default_here():
    assert set(SETTINGS) == set(EXPECTED_DEFAULTS)
    assert {attr: name for attr, (name, _) in SETTINGS.items()} == {
        attr: name for attr, (name, _) in EXPECTED_DEFAULTS.items()
    }


@pytest.mark.parametrize("attr", sorted(EXPECTED_DEFAULTS))
def test_default_when_the_setting_is_absent(settings, attr):
    setting_name, expected = EXPECTED_DEFAULTS[attr]
    if hasattr(settings, setting_name):
        delattr(settings, setting_name)

    # A fresh reader: deleting a setting sends no setting_changed, so the shared stripe_settings
    # would keep a value it cached before (and must not cache the default for later tests).
    assert getattr(StripeSettings(), attr) == expected


def test_an_unknown_setting_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NO_SUCH"):
        _ = stripe_settings.NO_SUCH


def test_override_is_seen_at_once(settings):
    assert stripe_settings.PENDING_WEBHOOKS_THRESHOLD == 20  # cached now

    settings.STRIPE_PENDING_WEBHOOKS_THRESHOLD = 5
    assert stripe_settings.PENDING_WEBHOOKS_THRESHOLD == 5

    with override_settings(STRIPE_PENDING_WEBHOOKS_THRESHOLD=7, ENV_PREFIX="staging"):
        assert stripe_settings.PENDING_WEBHOOKS_THRESHOLD == 7
        assert stripe_settings.ENV_PREFIX == "staging"
    assert stripe_settings.PENDING_WEBHOOKS_THRESHOLD == 5
    assert stripe_settings.ENV_PREFIX == ""


def test_default_currency_is_lower_cased(settings):
    settings.STRIPE_DEFAULT_CURRENCY = "EUR"

    assert stripe_settings.DEFAULT_CURRENCY == "eur"
    assert default_currency() == "eur"


def test_user_model_defaults_to_auth_user_model(settings):
    assert not hasattr(settings, "STRIPE_USER_MODEL")

    assert stripe_settings.USER_MODEL == settings.AUTH_USER_MODEL == "testapp.User"
    assert user_model_label() == "testapp.User"
    for model in (StripeCustomer, StripeCharge):
        assert model._meta.get_field("user").related_model is get_user_model()


def test_user_model_setting_is_read(settings):
    settings.STRIPE_USER_MODEL = "auth.Group"

    assert stripe_settings.USER_MODEL == "auth.Group"
    assert user_model_label() == "auth.Group"


# --- PAYMENT_ORIGIN ---------------------------------------------------------------------------


def charge_once(fake_stripe, user) -> dict:
    customer = make_customer(fake_stripe, user)
    charge = StripeCharge.objects.create(user=user, customer=customer, amount=700, description="origin")
    charge.charge()
    charge.refresh_from_db()
    (sent,) = fake_stripe.proxy.calls("POST", "/v1/payment_intents")
    at_stripe = stripe_api.call("payment_intents", "retrieve", charge.payment_intent_id)
    return {"sent": sent.params, "at_stripe": at_stripe}


def test_no_payment_origin_sends_no_origin(fake_stripe, user):
    result = charge_once(fake_stripe, user)

    assert "metadata[origin]" not in result["sent"]
    assert "origin" not in result["at_stripe"]["metadata"]


def test_payment_origin_is_sent_as_charge_metadata(fake_stripe, user, settings):
    settings.PAYMENT_ORIGIN = "web-shop"

    result = charge_once(fake_stripe, user)

    assert result["sent"]["metadata[origin]"] == "web-shop"
    assert result["at_stripe"]["metadata"]["origin"] == "web-shop"


# --- system checks ----------------------------------------------------------------------------


def aa_stripe_messages() -> list:
    return [message for message in run_checks() if message.id.startswith("aa_stripe.")]


# Django 6's model checks ask the database what it supports, so running all checks needs it.
CHECKS_READ_THE_DATABASE = pytest.mark.django_db


@CHECKS_READ_THE_DATABASE
def test_checks_pass_with_key_and_webhook_secret():
    assert aa_stripe_messages() == []
    call_command("check")


@CHECKS_READ_THE_DATABASE
def test_missing_api_key_is_an_error_outside_debug(settings):
    settings.STRIPE_API_KEY = ""
    settings.DEBUG = False

    (message,) = aa_stripe_messages()

    assert isinstance(message, Error)
    assert message.id == "aa_stripe.E001"
    assert "STRIPE_API_KEY" in message.msg
    with pytest.raises(SystemCheckError, match=r"aa_stripe\.E001"):
        call_command("check")


@CHECKS_READ_THE_DATABASE
def test_missing_api_key_is_fine_in_debug(settings):
    settings.STRIPE_API_KEY = ""
    settings.DEBUG = True

    assert aa_stripe_messages() == []


@CHECKS_READ_THE_DATABASE
def test_missing_webhook_secret_is_a_warning(settings):
    settings.STRIPE_WEBHOOK_ENDPOINT_SECRET = ""

    (message,) = aa_stripe_messages()

    assert isinstance(message, Warning)
    assert message.id == "aa_stripe.W001"
    call_command("check")  # a warning does not stop the command


@CHECKS_READ_THE_DATABASE
def test_both_missing_outside_debug(settings):
    settings.STRIPE_API_KEY = ""
    settings.STRIPE_WEBHOOK_ENDPOINT_SECRET = ""

    assert sorted(message.id for message in aa_stripe_messages()) == ["aa_stripe.E001", "aa_stripe.W001"]


# --- what the gateway sends -------------------------------------------------------------------


class _RecordingHandler(BaseHTTPRequestHandler):
    """Answers any GET with a customer and remembers the request headers (HTTP/1.0: no keep-alive)."""

    server: _RecordingServer

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers))
        body = json.dumps({"id": "cus_recorded", "object": "customer"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass


class _RecordingServer(ThreadingHTTPServer):
    seen: list[dict[str, str]]


@pytest.fixture
def recording_server(settings) -> Iterator[_RecordingServer]:
    """A one-endpoint stand-in for Stripe that records headers (the FaultProxy records none)."""
    server = _RecordingServer(("127.0.0.1", 0), _RecordingHandler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_sdk_api_version_is_sent_when_none_is_set(recording_server, settings):
    assert not hasattr(settings, "STRIPE_API_VERSION")

    assert stripe_api.call("customers", "retrieve", "cus_recorded")["id"] == "cus_recorded"

    (headers,) = recording_server.seen
    assert headers["Stripe-Version"] == stripe.api_version == stripe_api.SDK_API_VERSION
    assert stripe_api.api_version() == stripe.api_version


def test_pinned_api_version_is_sent(recording_server, settings):
    settings.STRIPE_API_VERSION = "2024-06-20"

    stripe_api.call("customers", "retrieve", "cus_recorded")

    (headers,) = recording_server.seen
    assert headers["Stripe-Version"] == "2024-06-20"
    assert stripe_api.api_version() == "2024-06-20"


def test_api_key_comes_from_the_current_settings(recording_server, settings):
    stripe_api.call("customers", "retrieve", "cus_recorded")
    settings.STRIPE_API_KEY = "sk_test_second_project"
    stripe_api.call("customers", "retrieve", "cus_recorded")

    assert [h["Authorization"] for h in recording_server.seen] == [
        "Bearer sk_test_aa_stripe_tests",
        "Bearer sk_test_second_project",
    ]
    assert stripe.api_key is None  # no global state of the SDK is touched


@pytest.mark.django_db
def test_missing_api_key_refuses_to_call_stripe(fake_stripe, settings):
    settings.STRIPE_API_KEY = ""

    with pytest.raises(ImproperlyConfigured, match="STRIPE_API_KEY"):
        stripe_api.call("customers", "retrieve", "cus_missing")
    with pytest.raises(ImproperlyConfigured):
        StripeCoupon.objects.create(coupon_id="NOKEY", duration="once", percent_off=10)

    assert fake_stripe.proxy.calls() == []
    assert StripeCoupon.objects.all_with_deleted().count() == 0
