"""Helpers for host projects' own tests.

- :func:`make_event` builds a Stripe event dict around a Stripe object;
- :func:`signed_webhook_request` signs it exactly as Stripe does (``Stripe-Signature: t=...,v1=...``);
- :func:`post_webhook` posts it to the webhook endpoint with Django's test client;
- ``aa_stripe.testing.fakestripe`` runs a fake Stripe server (localstripe, which you install
  yourself: it is GPL-3.0 and a test tool, never a dependency of this package) with the pytest
  plugin ``-p aa_stripe.testing.fakestripe.plugin`` providing the ``fake_stripe`` fixture.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from django.urls import reverse

from aa_stripe.conf import webhook_secrets


def make_event(event_type: str, data_object: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A Stripe event of ``event_type`` carrying ``data_object`` (a Stripe object as a dict)."""
    event = {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "data": {"object": data_object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    event.update(overrides)
    return event


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload`` (HMAC-SHA256 of ``t.payload``)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    signature = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"


def signed_webhook_request(
    event: dict[str, Any], secret: str | None = None, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """``(body, headers)`` of a webhook delivery of ``event``, signed with ``secret``.

    ``secret`` defaults to the (first) configured ``STRIPE_WEBHOOK_ENDPOINT_SECRET``.
    """
    secret = secret or next(iter(webhook_secrets()), None)
    if not secret:
        raise ValueError("No secret given and STRIPE_WEBHOOK_ENDPOINT_SECRET is not set.")
    body = json.dumps(event).encode()
    return body, {"Stripe-Signature": sign_payload(body, secret, timestamp)}


def post_webhook(
    client: Any, event: dict[str, Any], secret: str | None = None, timestamp: int | None = None
) -> Any:
    """Deliver ``event`` to ``aa-stripe/webhooks`` through Django's test ``client``; returns the response."""
    body, headers = signed_webhook_request(event, secret, timestamp)
    return client.post(
        reverse("stripe-webhooks"), data=body, content_type="application/json", headers=headers
    )
