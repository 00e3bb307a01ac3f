"""Client secrets never reach the database, the admin or the logs.

A PaymentIntent's or SetupIntent's ``client_secret`` (and an invoice's
``confirmation_secret.client_secret``) lets whoever holds it confirm the intent with the
publishable key. The rule:

- a client secret is handed to its owner at request time only (the journal's
  :class:`~aa_stripe.operations.journal.Outcome` keeps Stripe's answer as it came);
- it is never stored in plain JSON: stored webhook events (``StripeWebhook.raw_data``), every
  model's ``stripe_response`` and other JSON columns (``StripeBasicModel.save``), the journal's
  ``StripeOperation.result`` (answers and error bodies, whose ``error.payment_intent`` and
  ``error.setup_intent`` carry the intent) go through :func:`redact_secrets` first;
- so the admin, which shows what is stored, never shows one; the library logs ids, never
  Stripe's bodies, and stripe-python's own ``stripe`` logger (which writes whole response bodies
  at DEBUG) gets :class:`RedactSecretsFilter`.

An ephemeral key's ``secret`` (``{"object": "ephemeral_key", "secret": "ek_..."}``) is treated the
same way. A secret needed again later is fetched from Stripe (retrieve the intent), never read
back from the database.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from aa_stripe.stripe_api import to_plain

#: What a redacted secret reads in stored JSON.
REDACTED = "[redacted]"

#: Keys whose (non-empty string) value is a secret, wherever they are.
SECRET_KEYS = frozenset({"client_secret"})

#: ``object`` types whose ``secret`` key is a secret.
SECRET_OBJECTS = frozenset({"ephemeral_key"})

# A client secret inside text: "<object id>_secret_<secret>" (pi_..., seti_..., cs_test_...); the
# id stays. Strict enough that a host's "top_secret_plan" in metadata is not taken for one.
_CLIENT_SECRET_TEXT = re.compile(r"\b([a-z]{2,5}_(?:(?:test|live)_)?[A-Za-z0-9]{8,})_secret_[A-Za-z0-9]{8,}")
# An ephemeral key's secret inside text.
_EPHEMERAL_KEY_TEXT = re.compile(r"\bek_(?:test|live)_[A-Za-z0-9]{8,}")

# Text that any structure holding a secret contains once serialized (the fast path's test).
_MARKERS = ("client_secret", "ephemeral_key", "_secret_", "ek_test_", "ek_live_")


def redact_secrets(value: Any) -> Any:
    """``value`` (a JSON-like structure, or a Stripe object) with every secret replaced by
    :data:`REDACTED`, at any depth.

    A ``client_secret`` key's value is replaced when it is a non-empty string (None and ``""``
    stay as they are), and so is the ``secret`` of an ``ephemeral_key`` object; a secret inside
    any other string (an error message quoting one) is cut as :func:`redact_text` does.
    ``value`` itself is never changed: the answer is a copy, or, when nothing in ``value`` can
    hold a secret (its JSON text has none of the markers, e.g. no ``client_secret``), ``value``
    itself.
    """
    if isinstance(value, str):
        return redact_text(value)
    if not isinstance(value, dict | list | tuple):
        value = to_plain(value)  # a Stripe object: a dict; anything else as it is
        if not isinstance(value, dict):
            return value
    return _redacted(value) if _may_hold_secret(value) else value


def redact_text(text: str) -> str:
    """``text`` with the secret part of every client secret (``pi_123_secret_abc`` ->
    ``pi_123_secret_[redacted]``) and every ephemeral key's secret cut out."""
    if "_secret_" not in text and "ek_" not in text:
        return text
    text = _CLIENT_SECRET_TEXT.sub(rf"\1_secret_{REDACTED}", text)
    return _EPHEMERAL_KEY_TEXT.sub(f"ek_{REDACTED}", text)


def _may_hold_secret(value: dict[str, Any] | list[Any] | tuple[Any, ...]) -> bool:
    try:
        text = json.dumps(value, default=str)
    except TypeError:  # keys JSON cannot write: look at every item instead
        return True
    return any(marker in text for marker in _MARKERS)


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        kind = value.get("object")
        secret_object = isinstance(kind, str) and kind in SECRET_OBJECTS
        secret_keys = SECRET_KEYS | {"secret"} if secret_object else SECRET_KEYS
        return {
            key: REDACTED if key in secret_keys and isinstance(item, str) and item else _redacted(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_redacted(item) for item in value)
    if isinstance(value, str):
        return redact_text(value)
    plain = to_plain(value)  # a Stripe object inside plain data
    return value if plain is value else _redacted(plain)


class RedactSecretsFilter(logging.Filter):
    """A logging filter that cuts secrets out of a record's message (see :func:`redact_text`).

    Installed on stripe-python's ``stripe`` logger by the app's ``ready()``: at DEBUG that
    logger writes whole request and response bodies. (``STRIPE_LOG=debug`` makes stripe-python
    print them to stderr besides, past any logging filter: never set it in production.)
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


#: The filter on stripe-python's ``stripe`` logger.
STRIPE_LOG_FILTER = RedactSecretsFilter()


def install_log_filter() -> None:
    """Put :data:`STRIPE_LOG_FILTER` on the ``stripe`` logger (once; called by the app's ``ready()``)."""
    logging.getLogger("stripe").addFilter(STRIPE_LOG_FILTER)
