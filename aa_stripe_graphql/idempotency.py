"""``idempotencyKey`` on every mutation: the same key from the same user for the same mutation
returns the first call's payload instead of acting twice (GRAPHQL.md, "Idempotent mutations").

The first call claims the key (one committed insert of a :class:`StripeRequestKey`: a concurrent
call with the same key waits for that insert, then finds it), acts, and stores its payload as the
global ids of the objects it returned plus its ``errors``. A later call with the key replays
that payload with the objects as they are now; a call while the first is still running waits up
to ``STRIPE_GRAPHQL_IDEMPOTENCY_WAIT`` seconds, then replays or answers ``IN_PROGRESS``; the same
key with another input answers ``IDEMPOTENCY_KEY_REUSED``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models import Model
from graphql import GraphQLError

from aa_stripe.models import StripeRequestKey

from .errors import StripeErrorCode, internal_error, stripe_error
from .permissions import stripe_user

#: Seconds a second call with the same key waits for the first (STRIPE_GRAPHQL_IDEMPOTENCY_WAIT).
DEFAULT_WAIT = 5.0
_POLL = 0.05
KEY_DESCRIPTION = (
    "Optional, 1-255 printable characters: the same key from the same user for this mutation returns "
    "the first call's payload instead of acting twice; with another input it is refused "
    "(IDEMPOTENCY_KEY_REUSED). Kept at least 24 hours."
)


def owner_of(request: Any) -> str:
    """The signed-in user and the Stripe user the request acts for (a host's
    STRIPE_GRAPHQL_GET_STRIPE_USER may map one login to several): a key is theirs together."""
    owner = StripeRequestKey.owner_of(request.user)
    acting = stripe_user(request)
    if acting is not None and acting.pk is not None and acting != request.user:
        owner += f"|{StripeRequestKey.owner_of(acting)}"
    return owner


def wait_seconds() -> float:
    return float(getattr(settings, "STRIPE_GRAPHQL_IDEMPOTENCY_WAIT", DEFAULT_WAIT))


def key_error(key: Any) -> dict[str, Any] | None:
    """INVALID on idempotencyKey unless it is 1-255 printable characters."""
    if isinstance(key, str) and 1 <= len(key) <= 255 and key.isprintable():
        return None
    return stripe_error(
        StripeErrorCode.INVALID, "An idempotency key is 1 to 255 printable characters.", "idempotencyKey"
    )


def fingerprint(data: dict[str, Any]) -> str:
    """SHA-256 of the input that decides what the mutation does (clientMutationId aside)."""
    relevant = {name: value for name, value in data.items() if name != "client_mutation_id"}
    text = json.dumps(relevant, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def run_once(
    owner: str, scope: str, key: str, data: dict[str, Any], act: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """The payload values for this call: ``act()``'s on the first call with the key, else a replay.
    ``owner`` names who sent it (see :func:`owner_of`)."""
    row, first = StripeRequestKey.claim(owner, scope, key, fingerprint(data))
    if not first:
        return _answer_later_call(row, data)
    return _act_and_store(row, act)


def _act_and_store(row: StripeRequestKey, act: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        payload = act()
    except GraphQLError:
        row.release()  # refused before acting (not signed in, no permission): the key may be reused
        raise
    except BaseException:
        # Something failed after the mutation may have acted (a signal receiver, the database):
        # the key keeps that answer, so sending it again never acts twice.
        row.finish({"internal": True})
        raise
    if payload.get("errors") and all(e.get("code") == "in_progress" for e in payload["errors"]):
        row.release()  # nothing was done: another write was in flight; the key may be sent again
        return payload
    row.finish(_stored(payload))
    return payload


def _answer_later_call(row: StripeRequestKey, data: dict[str, Any]) -> dict[str, Any]:
    if row.fingerprint != fingerprint(data):
        return {"errors": [_reused()]}
    deadline = time.monotonic() + wait_seconds()
    while row.state != StripeRequestKey.DONE:
        if time.monotonic() >= deadline:
            # Still running, or its process died after acting: acting again could charge twice, so
            # the key answers IN_PROGRESS (the journal's reconcile finishes what the first call sent).
            return {"errors": [_in_progress()]}
        time.sleep(_POLL)
        fresh = StripeRequestKey.objects.filter(pk=row.pk).first()
        if fresh is None:  # the first call failed before acting and gave the key back
            return {"errors": [_in_progress()]}
        row = fresh
    return _replayed(row.response)


def _stored(payload: dict[str, Any]) -> dict[str, Any]:
    objects = {
        name: [value._meta.label_lower, str(value.pk)]
        for name, value in payload.items()
        if isinstance(value, Model) and value.pk is not None
    }
    return {"objects": objects, "errors": payload.get("errors") or []}


def _replayed(response: dict[str, Any]) -> dict[str, Any]:
    from django.apps import apps

    if response.get("internal"):
        raise internal_error()  # the first call failed unexpectedly; its answer stays that

    payload: dict[str, Any] = {"errors": response.get("errors") or []}
    for name, (label, pk) in (response.get("objects") or {}).items():
        model = apps.get_model(label)
        payload[name] = model._base_manager.filter(pk=pk).first()
    return payload


def _in_progress() -> dict[str, Any]:
    return stripe_error(
        StripeErrorCode.IN_PROGRESS,
        "A request with this idempotencyKey is still running; send it again in a moment.",
        "idempotencyKey",
    )


def _reused() -> dict[str, Any]:
    return stripe_error(
        StripeErrorCode.IDEMPOTENCY_KEY_REUSED,
        "This idempotencyKey was used for another input; use a new key for a new request.",
        "idempotencyKey",
    )
