"""The webhook endpoint: verify, store (always first), parse, answer 2xx.

Flow, in this order:
1. refuse what is not a signed Stripe event: 400 with a short JSON reason, nothing stored,
   a warning logged (never Django's HTML error page);
2. store the event in a transaction of its own; a duplicate delivery answers 200 and is
   neither stored nor parsed again;
3. parse it (unless STRIPE_WEBHOOK_DEFERRED_PARSING); a failure is recorded on the row and
   still answered 200: the event is safe and ``parse_stripe_webhooks --failed`` retries it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from aa_stripe import stripe_api
from aa_stripe.conf import stripe_settings, webhook_secrets
from aa_stripe.exceptions import StripeWebhookRejected
from aa_stripe.models import StripeWebhook

logger = logging.getLogger("aa_stripe")


@csrf_exempt
@require_POST
@transaction.non_atomic_requests
def stripe_webhook_view(request: HttpRequest) -> JsonResponse:
    """Receive one Stripe event (mounted at ``aa-stripe/webhooks`` by ``aa_stripe.api_urls``)."""
    try:
        event = verified_event(request)
    except StripeWebhookRejected as err:
        logger.warning("Stripe webhook refused (%s) from %s", err.message, request.META.get("REMOTE_ADDR"))
        return JsonResponse({"error": err.message}, status=400)
    webhook, created = StripeWebhook.store_event(event)
    if not created:
        return JsonResponse({"id": webhook.id, "status": "duplicate"})
    if stripe_settings.WEBHOOK_DEFERRED_PARSING:
        return JsonResponse({"id": webhook.id, "status": "stored"})
    parsed = webhook.process()
    return JsonResponse({"id": webhook.id, "status": "parsed" if parsed else "stored, parse failed"})


def verified_event(request: HttpRequest) -> dict[str, Any]:
    """The Stripe event in ``request``, or :class:`StripeWebhookRejected` saying why not."""
    body = _read_body(request)
    secrets = webhook_secrets()
    if secrets:
        stripe_api.verify_webhook_signature(
            body, request.headers.get("Stripe-Signature"), secrets, int(stripe_settings.WEBHOOK_TOLERANCE)
        )
    elif not (settings.DEBUG and stripe_settings.WEBHOOK_ALLOW_UNSIGNED_IN_DEBUG):
        raise StripeWebhookRejected("no webhook secret is configured: events are refused")
    return _decode_event(body)


def _read_body(request: HttpRequest) -> bytes:
    limit = int(stripe_settings.WEBHOOK_MAX_BODY_BYTES)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise StripeWebhookRejected("invalid Content-Length") from None
    if declared > limit:
        raise StripeWebhookRejected(f"body larger than {limit} bytes")
    # Read past the limit by one byte at most, without Django's own (HTML-page) size error.
    body = request.read(limit + 1)
    if len(body) > limit:
        raise StripeWebhookRejected(f"body larger than {limit} bytes")
    if not body:
        raise StripeWebhookRejected("empty body")
    return body


def _decode_event(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise StripeWebhookRejected("body is not JSON") from None
    if not isinstance(event, dict):
        raise StripeWebhookRejected("body is not a JSON object")
    event_id, event_type = event.get("id"), event.get("type")
    if event.get("object", "event") != "event":
        raise StripeWebhookRejected("body is not a Stripe event object")
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 255:
        raise StripeWebhookRejected("event has no valid id")
    if not isinstance(event_type, str) or not event_type.strip() or len(event_type) > 255:
        raise StripeWebhookRejected("event has no valid type")
    if not isinstance(event.get("created", 0), int | float) or isinstance(event.get("created"), bool):
        raise StripeWebhookRejected("event has no valid created time")
    return event
