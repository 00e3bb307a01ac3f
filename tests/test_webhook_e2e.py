"""End to end: the fake Stripe signs and POSTs its events to the endpoint on a live server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from aa_stripe.models import StripeCustomer, StripeWebhook

POLL_SECONDS = 10.0


def serialize_requests(live_server: Any) -> threading.Lock:
    """A lock the live server holds while it handles a request.

    With SQLite in memory the server thread shares the test's connection, and two threads in it at
    once break each other's transactions: the test takes the lock around its own queries.
    """
    app = live_server.thread.httpd.get_app()
    if isinstance(app.base_url.path, bytes):
        # Without STATIC_URL (None) Django's live server compares paths with b"" and answers
        # nothing (TypeError); a no-op once tests/settings.py sets STATIC_URL.
        app.base_url = urlparse("/static/")
    lock = threading.Lock()

    def locked_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with lock:
            return list(app(environ, start_response))

    live_server.thread.httpd.set_app(locked_app)
    return lock


def wait_for(lock: threading.Lock, condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + POLL_SECONDS
    while time.monotonic() < deadline:
        with lock:
            if result := condition():
                return result
        time.sleep(0.1)
    raise AssertionError(f"not within {POLL_SECONDS:.0f}s: {what}")


def parsed_events(customer_id: str) -> dict[str, StripeWebhook]:
    return {
        webhook.event_type: webhook
        for webhook in StripeWebhook.objects.order_by("created")
        if webhook.is_parsed
        and customer_id in (webhook.data_object.get("id"), webhook.data_object.get("customer"))
    }


def test_events_from_the_fake_stripe_are_verified_stored_parsed_and_applied(
    live_server, fake_stripe, settings, django_user_model
):
    lock = serialize_requests(live_server)
    fake_stripe.register_webhook(
        "e2e", live_server.url + "/aa-stripe/webhooks", secret=settings.STRIPE_WEBHOOK_ENDPOINT_SECRET
    )
    with lock:
        user = django_user_model.objects.create_user(username="e2e", email="e2e@example.com", password="pw")
        customer = StripeCustomer.objects.create(user=user, stripe_js_response=fake_stripe.card_token())
        customer.create_at_stripe()
    first_card = customer.default_source

    events = wait_for(
        lock,
        lambda: (
            (found := parsed_events(customer.stripe_customer_id)).keys()
            >= {"customer.created", "customer.source.created"}
            and found
        ),
        "customer.created and customer.source.created stored and parsed",
    )
    with lock:
        customer.refresh_from_db()
    assert customer.last_event_at == events["customer.created"].stripe_created_at
    assert [s["id"] for s in customer.sources] == [first_card]

    # A new card at Stripe, and a row that forgot it: only the webhook can set the row right.
    new_token = fake_stripe.card_token("5555555555554444")
    with lock:
        customer.add_new_source(new_token["id"])
        StripeCustomer.objects.filter(pk=customer.pk).update(
            sources=[], default_source="", last_event_at=None
        )

    updated = wait_for(
        lock,
        lambda: parsed_events(customer.stripe_customer_id).get("customer.updated"),
        "customer.updated stored and parsed",
    )
    with lock:
        customer.refresh_from_db()
        webhooks = list(StripeWebhook.objects.all())
    assert customer.default_source == new_token["card"]["id"]
    assert new_token["card"]["id"] in [s["id"] for s in customer.sources]
    assert customer.last_event_at == updated.stripe_created_at
    assert {w.event_type for w in webhooks} >= {
        "customer.created",
        "customer.source.created",
        "customer.updated",
    }
    assert all(w.is_parsed and w.parse_error == "" and w.parse_attempts == 1 for w in webhooks)
