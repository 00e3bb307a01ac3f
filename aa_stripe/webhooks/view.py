"""The webhook endpoint: verify, store (always first), parse, answer 2xx.

Flow, in this order:
1. refuse what is not a signed Stripe event: 400 (405 for another method than POST) with a
   short JSON reason, nothing stored, a warning logged (never Django's HTML error page);
2. store the event in a transaction of its own; a duplicate delivery answers 200 and is
   neither stored nor parsed again;
3. parse it (unless STRIPE_WEBHOOK_DEFERRED_PARSING); a failure is recorded on the row and
   still answered 200: the event is safe and ``parse_stripe_webhooks --failed`` retries it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from aa_stripe import stripe_api
from aa_stripe.conf import stripe_settings, webhook_secrets
from aa_stripe.exceptions import StripeWebhookRejected
from aa_stripe.models import StripeWebhook
from aa_stripe.models.base import timestamp_to_datetime

logger = logging.getLogger("aa_stripe")

# Stripe's events nest a few levels deep; far deeper JSON is refused before the database sees it.
MAX_NESTING = 100
# NUL and lone surrogates: valid in JSON text, but PostgreSQL can store neither (text nor jsonb).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _non_atomic_everywhere(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """``transaction.non_atomic_requests`` for every database (the router may put webhooks anywhere)."""
    for alias in connections:
        view = transaction.non_atomic_requests(using=alias)(view)
    return view


@csrf_exempt
@_non_atomic_everywhere
def stripe_webhook_view(request: HttpRequest) -> JsonResponse:
    """Receive one Stripe event (mounted at ``aa-stripe/webhooks`` by ``aa_stripe.api_urls``)."""
    if request.method != "POST":
        logger.warning(
            "Stripe webhook refused (method %s) from %s", request.method, request.META.get("REMOTE_ADDR")
        )
        response = JsonResponse({"error": "method not allowed, use POST"}, status=405)
        response["Allow"] = "POST"
        return response
    try:
        event = verified_event(request)
    except StripeWebhookRejected as err:
        logger.warning("Stripe webhook refused (%s) from %s", err.message, request.META.get("REMOTE_ADDR"))
        return JsonResponse({"error": err.message}, status=413 if isinstance(err, BodyTooLarge) else 400)
    webhook, created = StripeWebhook.store_event(event)
    if not created:
        return JsonResponse({"id": webhook.id, "status": "duplicate"})
    if stripe_settings.WEBHOOK_DEFERRED_PARSING:
        return JsonResponse({"id": webhook.id, "status": "stored"})
    # The same claim as parse_stripe_webhooks workers (row lock, SKIP LOCKED): a cron worker that
    # picked the fresh row first parses it, and it is never parsed twice.
    parsed = webhook.process_unless_claimed()
    if parsed is None:
        return JsonResponse({"id": webhook.id, "status": "stored"})
    return JsonResponse({"id": webhook.id, "status": "parsed" if parsed else "stored, parse failed"})


def verified_event(request: HttpRequest) -> dict[str, Any]:
    """The Stripe event in ``request``, or :class:`StripeWebhookRejected` saying why not."""
    body = _read_body(request)
    secrets = webhook_secrets()
    if secrets:
        header = request.headers.get("Stripe-Signature")
        if header and not header.isascii():
            # stripe-python would compare it with hmac.compare_digest, which raises TypeError.
            raise StripeWebhookRejected("malformed Stripe-Signature header")
        stripe_api.verify_webhook_signature(body, header, secrets, int(stripe_settings.WEBHOOK_TOLERANCE))
    elif not (settings.DEBUG and stripe_settings.WEBHOOK_ALLOW_UNSIGNED_IN_DEBUG):
        raise StripeWebhookRejected("no webhook secret is configured: events are refused")
    return _decode_event(body)


class BodyTooLarge(StripeWebhookRejected):
    """The body is over STRIPE_WEBHOOK_MAX_BODY_BYTES (answered 413 Content Too Large)."""


def _read_body(request: HttpRequest) -> bytes:
    limit = int(stripe_settings.WEBHOOK_MAX_BODY_BYTES)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise StripeWebhookRejected("invalid Content-Length") from None
    if declared > limit:
        raise BodyTooLarge(f"body larger than {limit} bytes")
    # Read past the limit by one byte at most, without Django's own (HTML-page) size error.
    body = request.read(limit + 1)
    if len(body) > limit:
        raise BodyTooLarge(f"body larger than {limit} bytes")
    if not body:
        raise StripeWebhookRejected("empty body")
    return body


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999: json.loads makes it inf, which no database stores as JSON
        raise ValueError(text)
    return number


def _no_constant(text: str) -> Any:
    raise ValueError(text)  # NaN, Infinity, -Infinity: not JSON, though json.loads accepts them


def _decode_event(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body.decode("utf-8"), parse_float=_finite_float, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise StripeWebhookRejected("body is not JSON") from None
    if not isinstance(event, dict):
        raise StripeWebhookRejected("body is not a JSON object")
    event_id, event_type, created = event.get("id"), event.get("type"), event.get("created", 0)
    if event.get("object", "event") != "event":
        raise StripeWebhookRejected("body is not a Stripe event object")
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 255:
        raise StripeWebhookRejected("event has no valid id")
    if not isinstance(event_type, str) or not event_type.strip() or len(event_type) > 255:
        raise StripeWebhookRejected("event has no valid type")
    if not _is_timestamp(created):
        raise StripeWebhookRejected("event has no valid created time")
    if _may_be_unstorable(body):
        _check_storable(event)
    return event


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        timestamp_to_datetime(value)
    except (OverflowError, ValueError, OSError):  # out of datetime's range
        return False
    return True


# In valid UTF-8 JSON, NUL and lone surrogates can only come from \u escapes.
_SUSPICIOUS_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def _may_be_unstorable(body: bytes) -> bool:
    """Cheap screen before walking the whole event: only bodies with a NUL or surrogate escape, or
    with more brackets than the nesting limit, can fail :func:`_check_storable`."""
    return bool(_SUSPICIOUS_ESCAPE.search(body)) or body.count(b"{") + body.count(b"[") > MAX_NESTING


def _check_storable(event: dict[str, Any]) -> None:
    """Refuse what would make the database fail on insert (a 500 that Stripe retries forever)."""
    pending: list[tuple[Any, int]] = [(event, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                raise StripeWebhookRejected("event has NUL or unpaired surrogate characters")
        elif isinstance(value, dict | list):
            if depth > MAX_NESTING:
                raise StripeWebhookRejected(f"event is nested deeper than {MAX_NESTING} levels")
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
