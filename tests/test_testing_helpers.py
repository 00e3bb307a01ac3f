"""aa_stripe.testing: what host projects use to fake Stripe's webhook deliveries in their tests."""

from __future__ import annotations

import json
import time

import pytest
import stripe

from aa_stripe.models import StripeWebhook
from aa_stripe.testing import make_event, post_webhook, sign_payload, signed_webhook_request

PAYLOADS = [b"{}", b'{"id": "evt_1", "object": "event"}', '{"name": "Zażółć gęślą jaźń ☃"}'.encode()]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_sign_payload_is_what_stripe_python_generates_and_verifies(payload):
    header = sign_payload(payload, "whsec_x", timestamp=1_700_000_000)

    assert header == stripe.WebhookSignature.generate_signature_header(
        payload.decode(), "whsec_x", timestamp=1_700_000_000
    )
    assert stripe.WebhookSignature.verify_header(payload, header, "whsec_x", tolerance=None) is True
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload, header, "whsec_y", tolerance=None)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload + b" ", header, "whsec_x", tolerance=None)


def test_sign_payload_defaults_to_now_and_passes_the_tolerance():
    before = int(time.time())
    header = sign_payload(b"{}", "whsec_x")

    timestamp = int(header.split(",")[0].removeprefix("t="))
    assert before <= timestamp <= int(time.time())
    assert stripe.WebhookSignature.verify_header(b"{}", header, "whsec_x", tolerance=300) is True
    stale = sign_payload(b"{}", "whsec_x", timestamp=before - 301)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.WebhookSignature.verify_header(b"{}", stale, "whsec_x", tolerance=300)


def test_make_event_is_a_stripe_event_around_the_object():
    coupon = {"id": "SPRING", "object": "coupon", "percent_off": 10}

    event = make_event("coupon.created", coupon)

    assert event["id"].startswith("evt_") and event["id"] != make_event("coupon.created", coupon)["id"]
    assert event["object"] == "event"
    assert event["type"] == "coupon.created"
    assert event["data"] == {"object": coupon}
    assert abs(event["created"] - time.time()) < 5 and isinstance(event["created"], int)
    assert event["livemode"] is False
    assert {"api_version", "pending_webhooks", "request"} <= event.keys()
    fixed = make_event("coupon.created", coupon, id="evt_fixed", created=5)
    assert (fixed["id"], fixed["created"], fixed["type"]) == ("evt_fixed", 5, "coupon.created")
    json.dumps(event)  # a JSON-able dict, as Stripe sends it


def test_signed_webhook_request_signs_with_the_configured_secret_by_default(settings):
    event = make_event("ping", {})

    body, headers = signed_webhook_request(event, timestamp=1_700_000_000)

    assert json.loads(body) == event
    assert headers == {"Stripe-Signature": sign_payload(body, "whsec_aa_stripe_tests", 1_700_000_000)}
    settings.STRIPE_WEBHOOK_ENDPOINT_SECRET = ["", "whsec_new", "whsec_old"]  # rotating: the first one
    assert signed_webhook_request(event, timestamp=1)[1]["Stripe-Signature"] == sign_payload(
        body, "whsec_new", 1
    )
    assert signed_webhook_request(event, "whsec_given", 1)[1]["Stripe-Signature"] == sign_payload(
        body, "whsec_given", 1
    )


@pytest.mark.parametrize("configured", ["", None, [], ["", " "]])
def test_signed_webhook_request_without_any_secret_raises_value_error(settings, configured):
    settings.STRIPE_WEBHOOK_ENDPOINT_SECRET = configured

    with pytest.raises(ValueError, match="STRIPE_WEBHOOK_ENDPOINT_SECRET"):
        signed_webhook_request(make_event("ping", {}))
    assert signed_webhook_request(make_event("ping", {}), secret="whsec_x")[1]["Stripe-Signature"]


@pytest.mark.django_db
def test_post_webhook_round_trip(client):
    event = make_event("ping", {"id": "thing_1", "object": "thing"})

    response = post_webhook(client, event)

    assert (response.status_code, response.json()) == (200, {"id": event["id"], "status": "parsed"})
    webhook = StripeWebhook.objects.get()
    assert (webhook.id, webhook.event_type, webhook.raw_data, webhook.is_parsed) == (
        event["id"],
        "ping",
        event,
        True,
    )
    again = post_webhook(client, event, timestamp=int(time.time()) - 10)
    assert again.json()["status"] == "duplicate"
    stale = post_webhook(client, make_event("ping", {}), timestamp=int(time.time()) - 3600)
    assert (stale.status_code, stale.json()) == (400, {"error": "timestamp outside the tolerance zone"})
    wrong = post_webhook(client, make_event("ping", {}), secret="whsec_not_ours")
    assert (wrong.status_code, wrong.json()) == (400, {"error": "no signature matches the payload"})
    assert StripeWebhook.objects.count() == 1
