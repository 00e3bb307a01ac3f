"""The one module that imports ``stripe``: every call to Stripe goes through here.

- A ``StripeClient`` is built from the settings (API key, pinned API version, API base,
  retries, timeout); no global state of the SDK is touched, so two projects (or two tests)
  with different settings never leak keys into each other.
- Stripe objects leave this module as plain JSON-safe dicts (``to_dict(for_json=True)``):
  stripe-python 16 objects are not dicts and keep ``Decimal`` values a JSONField can't store.
- Errors leave it as :mod:`aa_stripe.exceptions` classes, so callers tell a declined card
  (:class:`StripeCardError`) from an outcome we never heard (:class:`StripeInternalError`)
  without importing ``stripe``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import stripe

from aa_stripe import exceptions, guard
from aa_stripe.conf import stripe_settings

logger = logging.getLogger("aa_stripe")

#: the API version stripe-python is pinned to; used when STRIPE_API_VERSION is not set.
SDK_API_VERSION: str = stripe.api_version

# A 429 without a ``Stripe-Should-Retry`` header is not retried by the SDK; we retry it ourselves
# (same idempotency key, STRIPE_MAX_NETWORK_RETRIES times), waiting Retry-After but at most this long.
# One with the header is the SDK's business: "true" was retried by it already, "false" must not be.
_MAX_RATE_LIMIT_WAIT = 5.0


#: Methods that only read; every other method of a service writes to Stripe.
READ_METHODS = frozenset({"retrieve", "list", "search"})


def api_version() -> str:
    """The Stripe API version sent on every call."""
    return stripe_settings.API_VERSION or SDK_API_VERSION


@functools.lru_cache(maxsize=8)
def _build_client(
    api_key: str, version: str, api_base: str | None, retries: int, timeout: float
) -> stripe.StripeClient:
    base_addresses: Any = {"api": api_base} if api_base else None
    return stripe.StripeClient(
        api_key,
        stripe_version=version,
        base_addresses=base_addresses,
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def get_client() -> stripe.StripeClient:
    """A client configured from the current settings (cached per configuration)."""
    api_key = stripe_settings.API_KEY
    if not api_key:
        raise exceptions.StripeNotConfigured()
    return _build_client(
        api_key,
        api_version(),
        stripe_settings.API_BASE,
        int(stripe_settings.MAX_NETWORK_RETRIES),
        float(stripe_settings.HTTP_TIMEOUT),
    )


def to_plain(obj: Any) -> Any:
    """A Stripe object (or list of them) as plain JSON-safe Python data."""
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict(for_json=True)
    if isinstance(obj, list):
        return [to_plain(item) for item in obj]
    return obj


def call(
    service: str,
    method: str,
    *ids: str,
    params: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Call ``client.v1.<service>.<method>(*ids, params=...)`` and return the answer as a dict.

    ``idempotency_key`` should name the logical operation (e.g. ``charge:<uuid>:<attempt>``)
    so that a retry after a lost answer, in this process or another one, replays it.
    """
    if method not in READ_METHODS:
        guard.check_write(f"{service}.{method}")
    target = getattr(getattr(get_client().v1, service), method)
    options: dict[str, Any] = {"idempotency_key": idempotency_key} if idempotency_key else {}
    return to_plain(_with_rate_limit_retries(target, ids, dict(params or {}), options))


def iterate_pages(service: str, params: Mapping[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
    """Pages of a Stripe list endpoint (``limit=100`` by default), one request per page.

    Only one page is held at a time, so memory stays flat however many objects Stripe has.
    """
    query = {"limit": 100, **(params or {})}
    service_obj = getattr(get_client().v1, service)
    while True:
        page = _with_rate_limit_retries(service_obj.list, (), query, {})
        if page.data:
            yield [to_plain(item) for item in page.data]
        if not page.has_more or not page.data:
            return
        query = {**query, "starting_after": page.data[-1].id}


def iterate(service: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Every object of a Stripe list endpoint, fetched page by page (``limit=100`` by default)."""
    for page in iterate_pages(service, params):
        yield from page


def _with_rate_limit_retries(target: Any, ids: tuple[str, ...], params: dict, options: dict) -> Any:
    attempts = int(stripe_settings.MAX_NETWORK_RETRIES)
    for attempt in range(attempts + 1):
        try:
            return target(*ids, params=params, options=options)
        except stripe.RateLimitError as err:
            if attempt >= attempts or _header(err, "Stripe-Should-Retry") is not None:
                raise translate_error(err) from err
            time.sleep(_retry_after(err, attempt))
        except stripe.StripeError as err:
            raise translate_error(err) from err
    raise AssertionError("unreachable")  # pragma: no cover


def _header(err: stripe.StripeError, name: str) -> str | None:
    """The value of response header ``name`` (any case) of ``err``, or None."""
    wanted = name.lower()
    return next((value for key, value in (err.headers or {}).items() if key.lower() == wanted), None)


def _retry_after(err: stripe.StripeError, attempt: int) -> float:
    header = _header(err, "Retry-After")
    try:
        wait = float(header) if header is not None else 0.5 * 2**attempt
    except ValueError:
        wait = 0.5 * 2**attempt
    return max(0.0, min(wait, _MAX_RATE_LIMIT_WAIT))


def verify_webhook_signature(payload: bytes, header: str | None, secrets: list[str], tolerance: int) -> None:
    """Raise :class:`StripeWebhookRejected` unless ``header`` signs ``payload`` with one of ``secrets``.

    Several secrets are tried in turn (secret rotation); several ``v1=`` entries in the header
    are Stripe's own rotation and are handled by stripe-python.
    """
    if not secrets:
        raise exceptions.StripeWebhookRejected("no webhook secret is configured")
    reason = "invalid signature"
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance)
        except stripe.SignatureVerificationError as err:
            reason = _short_signature_reason(str(err))
        except UnicodeDecodeError:
            raise exceptions.StripeWebhookRejected("body is not UTF-8") from None
        except TypeError:  # hmac.compare_digest refuses non-ASCII text in the header
            raise exceptions.StripeWebhookRejected("malformed Stripe-Signature header") from None
        else:
            return
    raise exceptions.StripeWebhookRejected(reason)


def _short_signature_reason(message: str) -> str:
    if message.startswith("No Stripe-Signature header"):
        return "missing Stripe-Signature header"
    if message.startswith(("Unable to extract", "No signatures found with expected scheme")):
        return "malformed Stripe-Signature header"
    if message.startswith("Timestamp outside the tolerance zone"):
        return "timestamp outside the tolerance zone"
    return "no signature matches the payload"


def translate_error(err: stripe.StripeError) -> exceptions.StripeAPIError:
    """The :mod:`aa_stripe.exceptions` class for a stripe-python exception."""
    error_data = (err.json_body or {}).get("error", {}) if isinstance(err.json_body, dict) else {}
    status = err.http_status
    if isinstance(err, stripe.CardError):
        cls: type[exceptions.StripeAPIError] = exceptions.StripeCardError
    elif isinstance(err, stripe.IdempotencyError):
        cls = exceptions.StripeIdempotencyError
    elif isinstance(err, stripe.AuthenticationError | stripe.PermissionError):
        cls = exceptions.StripeAuthenticationError
    elif isinstance(err, stripe.InvalidRequestError):
        cls = exceptions.StripeInvalidRequestError
    elif isinstance(err, stripe.APIConnectionError | stripe.RateLimitError):
        cls = exceptions.StripeInternalError
    elif status is None or status >= 500 or status == 409:
        # 5xx, 409 (lock timeout, key in use) and unknown statuses: Stripe may or may not have acted.
        cls = exceptions.StripeInternalError
    else:
        cls = exceptions.StripeAPIError
    return cls(
        error_data.get("message") or err.user_message or str(err) or cls.details,
        code=error_data.get("code") or err.code,
        decline_code=error_data.get("decline_code"),
        http_status=status,
        json_body=err.json_body if isinstance(err.json_body, dict) else None,
        request_id=err.request_id,
        param=error_data.get("param"),
    )
