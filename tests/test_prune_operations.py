"""prune_stripe_operations: finished operations and expired idempotency keys go, unresolved ones stay."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from aa_stripe.models import StripeCharge, StripeOperation, StripeRequestKey

pytestmark = pytest.mark.django_db


def prune(*args: str) -> str:
    out = StringIO()
    call_command("prune_stripe_operations", *args, stdout=out)
    return out.getvalue()


def test_old_resolved_operations_and_day_old_keys_go_unresolved_ones_never(fake_stripe, customer, user):
    done = StripeCharge.objects.create(user=user, amount=1000, description="paid")
    done.charge()
    lost = StripeCharge.objects.create(user=user, amount=500, description="lost")
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/charges")
    with pytest.raises(Exception):  # noqa: B017 (StripeInternalError: the answer was lost)
        lost.charge()
    key = StripeRequestKey.objects.create(owner="x:1", scope="m", key="k", fingerprint="f", state="done")
    running = StripeRequestKey.objects.create(owner="x:1", scope="m", key="r", fingerprint="f")
    resolved = StripeOperation.objects.filter(state__in=["succeeded", "refused"]).count()
    assert resolved >= 1

    assert prune("--older-than", "1").startswith("Deleted 0 resolved operations and 0 idempotency keys")

    with time_machine.travel(timezone.now() + timedelta(days=40)):
        dry = prune("--older-than", "30", "--dry-run")
        assert f"would delete {resolved} resolved operations and 2 idempotency keys" in dry
        assert f"Deleted {resolved} resolved operations and 2 idempotency keys" in prune("--older-than", "30")

    left = StripeOperation.objects.all()
    assert [(op.kind, op.state) for op in left] == [("charge", "unknown")]
    assert not StripeRequestKey.objects.filter(pk=key.pk).exists()
    # A key still running after 24 hours belongs to a call that died: pruned too.
    assert not StripeRequestKey.objects.filter(pk=running.pk).exists()


def test_older_than_must_be_at_least_a_day():
    with pytest.raises(CommandError, match="at least 1 day"):
        prune("--older-than", "0")


@pytest.fixture(autouse=True)
def _on_the_charges_api(charges_api: None) -> None:
    """This module covers STRIPE_CHARGE_API = "charges" (the Charges API path, kept for hosts that
    need it); tests/test_payment_intents.py covers the default, PaymentIntents."""
