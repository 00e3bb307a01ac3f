"""One Stripe customer per user when two requests ask at once (PostgreSQL: real row locks).

``createStripeSetupIntent`` calls ``StripeCustomer.get_or_create_for_user()`` for a user who may have
no customer yet: two tabs, or a double click, must not make two customers at Stripe. The fault proxy
holds the first creation at Stripe (Stripe acted, the answer has not arrived) while a second request
asks.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections

from aa_stripe.exceptions import StripeInternalError, StripeOperationInProgress
from aa_stripe.models import StripeCustomer

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL"),
]


def _in_thread(user_pk: int) -> StripeCustomer:
    try:
        return StripeCustomer.get_or_create_for_user(user_pk)
    finally:
        connections.close_all()


def test_two_requests_at_once_make_one_customer(fake_stripe, user, settings):
    settings.STRIPE_HTTP_TIMEOUT = 2
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    fake_stripe.proxy.inject("hold", method="POST", path_prefix="/v1/customers")

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_in_thread, user.pk)
        fake_stripe.proxy.wait_held()
        with pytest.raises(StripeOperationInProgress):  # the first is being sent: not a second customer
            StripeCustomer.get_or_create_for_user(user)
        with pytest.raises(StripeInternalError):  # its answer never came
            first.result(timeout=20)

    customer = StripeCustomer.get_or_create_for_user(user)  # finishes the first (Stripe replays it)

    [at_stripe] = fake_stripe.get("/v1/customers")["data"]
    assert customer.stripe_customer_id == at_stripe["id"]
    assert StripeCustomer.objects.filter(user=user).count() == 1
    creations = [c for c in fake_stripe.proxy.calls("POST", "/v1/customers") if c.path == "/v1/customers"]
    assert len({c.idempotency_key for c in creations}) == 1
