"""The gateway: one configured client, plain JSON-safe dicts out, library exceptions out."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from aa_stripe import stripe_api
from aa_stripe.exceptions import (
    StripeAuthenticationError,
    StripeCardError,
    StripeIdempotencyError,
    StripeInternalError,
    StripeInvalidRequestError,
)


def test_answers_are_plain_json_safe_dicts(fake_stripe):
    token = fake_stripe.card_token()
    customer = stripe_api.call("customers", "create", params={"source": token["id"], "expand": ["sources"]})
    assert type(customer) is dict
    json.dumps(customer)  # no Decimal, no StripeObject


def test_missing_resource_is_an_invalid_request_with_its_code(fake_stripe):
    with pytest.raises(StripeInvalidRequestError) as raised:
        stripe_api.call("customers", "retrieve", "cus_missing")
    assert raised.value.code == "resource_missing"
    assert raised.value.http_status == 404


def test_declined_card_is_a_card_error_with_code(fake_stripe):
    with pytest.raises(StripeCardError) as raised:
        stripe_api.call(
            "customers", "create", params={"source": fake_stripe.card_token("4000000000000002")["id"]}
        )
    assert raised.value.code == "card_declined"
    assert raised.value.json_body["error"]["type"] == "card_error"


def test_rejected_key_is_an_authentication_error(fake_stripe, settings):
    settings.STRIPE_API_KEY = "rk_not_a_secret_key"
    with pytest.raises(StripeAuthenticationError):
        stripe_api.call("customers", "list")


def test_missing_key_is_a_configuration_error(settings):
    settings.STRIPE_API_KEY = ""
    with pytest.raises(ImproperlyConfigured, match="STRIPE_API_KEY"):
        stripe_api.call("customers", "list")


@pytest.mark.parametrize("fault", ["drop_before", "drop_after"])
def test_connection_failures_are_transient_errors(fake_stripe, fault):
    fake_stripe.proxy.inject(fault, method="POST", path_prefix="/v1/customers")
    with pytest.raises(StripeInternalError) as raised:
        stripe_api.call("customers", "create", params={"description": "x"}, idempotency_key="k1")
    assert raised.value.http_status is None


def test_timeout_is_a_transient_error(fake_stripe, settings):
    settings.STRIPE_HTTP_TIMEOUT = 0.3
    fake_stripe.proxy.inject("delay", method="GET", path_prefix="/v1/customers", seconds=2)
    with pytest.raises(StripeInternalError):
        stripe_api.call("customers", "list")


def test_rate_limit_is_retried_after_retry_after(fake_stripe, settings):
    settings.STRIPE_MAX_NETWORK_RETRIES = 1
    fake_stripe.proxy.inject("status", method="GET", path_prefix="/v1/customers", status=429, retry_after="0")
    assert stripe_api.call("customers", "list")["object"] == "list"
    assert [c.status for c in fake_stripe.proxy.calls("GET", "/v1/customers")] == [429, 200]


def test_persistent_rate_limit_is_a_transient_error(fake_stripe, settings):
    settings.STRIPE_MAX_NETWORK_RETRIES = 1
    fake_stripe.proxy.inject(
        "status", method="GET", path_prefix="/v1/customers", status=429, retry_after="0", times=2
    )
    with pytest.raises(StripeInternalError) as raised:
        stripe_api.call("customers", "list")
    assert raised.value.http_status == 429


def test_key_reused_with_other_parameters_is_an_idempotency_error(fake_stripe):
    stripe_api.call("customers", "create", params={"description": "one"}, idempotency_key="same")
    with pytest.raises(StripeIdempotencyError):
        stripe_api.call("customers", "create", params={"description": "two"}, idempotency_key="same")


def test_iterate_pages_through_every_object(fake_stripe):
    for n in range(5):
        stripe_api.call("customers", "create", params={"description": f"c{n}"})
    seen = [c["description"] for c in stripe_api.iterate("customers", {"limit": 2})]
    assert sorted(seen) == [f"c{n}" for n in range(5)]
    assert len(fake_stripe.proxy.calls("GET", "/v1/customers")) == 3


def test_settings_changes_build_a_new_client(fake_stripe, settings):
    first = stripe_api.get_client()
    settings.STRIPE_API_VERSION = "2024-06-20"
    second = stripe_api.get_client()
    assert first is not second
    assert stripe_api.api_version() == "2024-06-20"
    settings.STRIPE_API_VERSION = None
    assert stripe_api.api_version() == stripe_api.SDK_API_VERSION


def test_every_call_sends_the_pinned_api_version(fake_stripe, settings):
    stripe_api.call("customers", "list")
    settings.STRIPE_API_VERSION = "2025-01-27.acacia"
    stripe_api.call("customers", "create", params={"description": "x"})
    versions = [c.stripe_version for c in fake_stripe.proxy.calls()]
    assert versions == [stripe_api.SDK_API_VERSION, "2025-01-27.acacia"]
