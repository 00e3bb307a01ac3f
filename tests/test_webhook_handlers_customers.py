"""customer.updated / customer.deleted / customer.source.*: the local customer's cards stay true."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from aa_stripe import stripe_api
from aa_stripe.models import StripeCustomer
from aa_stripe.testing import make_event
from tests.stripe_fixtures import stripe_object
from tests.test_webhook_handlers import StripeCalls, deliver, deliver_again, now, sent_a_minute_ago

pytestmark = pytest.mark.django_db


def dt(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def customer_object(customer: StripeCustomer, **overrides: Any) -> dict[str, Any]:
    """Stripe's customer in the current shape: no ``sources`` unless expanded."""
    values = {
        "id": customer.stripe_customer_id,
        "created": customer.stripe_response["created"],
        "default_source": customer.default_source or None,
        "description": f"{customer.user} id: {customer.user.pk}",
        "discount": None,
    }
    data = stripe_object("customer", **{**values, **overrides})
    assert "sources" not in data
    return data


def card_object(customer: StripeCustomer, card_id: str = "card_1Q2w3e4r5t6y7u8i", **overrides: Any) -> dict:
    return stripe_object("card", id=card_id, customer=customer.stripe_customer_id, **overrides)


def card_ids(customer: StripeCustomer) -> list[str]:
    customer.refresh_from_db()
    return [card["id"] for card in customer.sources]


# --- customer.updated / customer.deleted -----------------------------------------------------------


@pytest.mark.parametrize("default", ["card_1Q2w3e4r5t6y7u8i", None])
def test_customer_updated_without_sources_keeps_them_and_sets_the_default(
    client, fake_stripe, customer, default
):
    [card] = customer.sources
    sent_a_minute_ago()  # the customer was made earlier; the default is changed in the dashboard now
    data = customer_object(customer, default_source=default)
    event = make_event(
        "customer.updated", data, data={"object": data, "previous_attributes": {"default_source": card["id"]}}
    )
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, event)

    customer.refresh_from_db()
    assert customer.sources == [card]  # the event carried no sources: they are not emptied
    assert customer.default_source == (default or "")
    assert customer.default_source_data is None
    assert customer.last_event_at == dt(event["created"]) and customer.is_active
    assert stripe_calls() == []


@pytest.mark.parametrize("shape", ["customer", "deleted_customer"])
def test_customer_deleted_makes_the_customer_inactive(client, fake_stripe, customer, user, shape):
    data = (
        customer_object(customer)
        if shape == "customer"
        else stripe_object("deleted_customer", id=customer.stripe_customer_id)
    )
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("customer.deleted", data))

    customer.refresh_from_db()
    assert customer.is_active is False
    assert StripeCustomer.get_latest_active_customer_for_user(user) is None
    assert stripe_calls() == []


def test_unknown_customers_are_ignored(client, fake_stripe, user):
    stranger = StripeCustomer(
        user=user, stripe_customer_id="cus_NotOursAtAll1", stripe_response={"created": 1}
    )
    stripe_calls = StripeCalls(fake_stripe)

    for event_type in ("customer.created", "customer.updated", "customer.deleted"):
        deliver(client, make_event(event_type, customer_object(stranger)))
    deliver(client, make_event("customer.source.created", card_object(stranger)))

    assert not StripeCustomer.objects.exists()
    assert stripe_calls() == []


# --- customer.source.* ---------------------------------------------------------------------------


def test_source_created_adds_the_card(client, fake_stripe, customer):
    [old_card] = card_ids(customer)
    new_card = card_object(customer, brand="MasterCard", last4="4444")
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("customer.source.created", new_card))

    assert card_ids(customer) == [old_card, new_card["id"]]
    assert customer.sources[1] == new_card
    assert customer.default_source == old_card  # customer.updated says when the default changes
    assert stripe_calls() == []


def test_source_updated_replaces_the_card(client, fake_stripe, customer):
    [old_card] = customer.sources
    updated = {**old_card, "exp_year": old_card["exp_year"] + 3, "name": "Alice A."}
    event = make_event(
        "customer.source.updated",
        updated,
        data={"object": updated, "previous_attributes": {"exp_year": old_card["exp_year"], "name": None}},
    )
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, event)

    customer.refresh_from_db()
    assert customer.sources == [updated]
    assert customer.default_source == old_card["id"]
    assert stripe_calls() == []


def test_source_deleted_removes_the_card_and_clears_the_default(client, fake_stripe, customer):
    [card] = customer.sources
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("customer.source.deleted", card))

    customer.refresh_from_db()
    assert (customer.sources, customer.default_source, customer.is_active) == ([], "", True)
    assert stripe_calls() == []


def test_deleting_another_card_keeps_the_default(client, fake_stripe, customer):
    [card] = customer.sources
    t0 = now()
    other = card_object(customer, last4="0005")
    deliver(client, make_event("customer.source.created", other, created=t0))

    deliver(client, make_event("customer.source.deleted", other, created=t0 + 1))

    assert card_ids(customer) == [card["id"]] and customer.default_source == card["id"]


# --- order, ties, replays -----------------------------------------------------------------------


def test_an_older_update_after_a_newer_one_is_skipped(client, fake_stripe, customer):
    [card] = customer.sources
    t0 = now()
    stripe_calls = StripeCalls(fake_stripe)

    deliver(
        client,
        make_event("customer.updated", customer_object(customer, default_source=None), created=t0 + 10),
    )
    deliver(client, make_event("customer.updated", customer_object(customer), created=t0 + 5))
    deliver(client, make_event("customer.source.created", card, created=t0 + 4))
    deliver(client, make_event("customer.source.deleted", card, created=t0 + 5))
    deliver(client, make_event("customer.source.updated", card, created=t0 + 3))  # older: skipped

    customer.refresh_from_db()
    # Cards keep their own clock: the later customer.updated (no cards in current API versions)
    # does not hide the card's deletion, and the card's older update cannot bring it back.
    assert customer.default_source == "" and customer.sources == []
    assert customer.last_event_at == dt(t0 + 10)
    assert stripe_calls() == []


def test_an_update_older_than_the_deletion_leaves_the_customer_inactive(client, fake_stripe, customer):
    t0 = now()

    deliver(client, make_event("customer.deleted", customer_object(customer), created=t0 + 10))
    deliver(client, make_event("customer.updated", customer_object(customer), created=t0 + 5))

    customer.refresh_from_db()
    assert customer.is_active is False


# customer.updated (current shape) carries no sources and customer.source.* one card, yet both share
# the row's one clock (last_event_at): a newer event of one kind makes an older one of the other kind
# look stale, though it carried state the newer one does not.
SHARED_CLOCK = (
    "BUG (model): StripeCustomer has one last_event_at for events that carry different parts of it; "
    "needs a per-card clock (e.g. a JSON map card id -> created of its last event, kept after deletion)"
)


def test_a_card_added_before_a_later_customer_update_is_not_lost(client, fake_stripe, customer):
    [card] = customer.sources
    t0 = now()
    new_card = card_object(customer)

    deliver(
        client, make_event("customer.updated", customer_object(customer, description="VIP"), created=t0 + 5)
    )
    deliver(client, make_event("customer.source.created", new_card, created=t0))

    assert card_ids(customer) == [card["id"], new_card["id"]]


def test_a_default_changed_before_a_later_card_event_is_not_lost(client, fake_stripe, customer):
    sent_a_minute_ago()  # the customer was made earlier; these changes are the dashboard's
    t0 = now()
    other = card_object(customer)
    deliver(client, make_event("customer.source.created", other, created=t0))

    deliver(client, make_event("customer.source.created", card_object(customer, "card_3rd"), created=t0 + 5))
    deliver(
        client,
        make_event("customer.updated", customer_object(customer, default_source=other["id"]), created=t0 + 2),
    )

    customer.refresh_from_db()
    assert customer.default_source == other["id"]


def test_a_tie_re_reads_the_customer_from_stripe(client, fake_stripe, customer):
    [old_card] = customer.sources
    t0 = now()
    # A card set at Stripe: two events about the new card come in the same second.
    at_stripe = stripe_api.call(
        "customers",
        "update",
        customer.stripe_customer_id,
        params={"source": fake_stripe.card_token("5555555555554444")["id"], "expand": ["sources"]},
    )
    new_card = at_stripe["sources"]["data"][-1]
    deliver(client, make_event("customer.source.created", new_card, created=t0))
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("customer.source.updated", new_card, created=t0))

    assert stripe_calls() == [("GET", f"/v1/customers/{customer.stripe_customer_id}")]
    assert fake_stripe.proxy.requests[-1].query == {"expand[0]": "sources"}
    customer.refresh_from_db()
    # Stripe's truth: passing ``source`` replaced the old default card (the events alone say "added").
    assert card_ids(customer) == [new_card["id"]] != [old_card["id"], new_card["id"]]
    assert customer.default_source == new_card["id"]


def test_a_tie_on_a_customer_deleted_at_stripe_makes_it_inactive(client, fake_stripe, customer):
    t0 = now()
    stripe_api.call("customers", "delete", customer.stripe_customer_id)
    deliver(client, make_event("customer.updated", customer_object(customer), created=t0))
    stripe_calls = StripeCalls(fake_stripe)

    deliver(client, make_event("customer.deleted", customer_object(customer), created=t0))

    assert stripe_calls() == [("GET", f"/v1/customers/{customer.stripe_customer_id}")]
    customer.refresh_from_db()
    assert customer.is_active is False


def test_a_replayed_source_event_changes_nothing_twice(client, fake_stripe, customer):
    # A second card added at Stripe (the default stays), so a re-read agrees with the event.
    response = requests.post(
        f"{fake_stripe.direct_url}/v1/customers/{customer.stripe_customer_id}/sources",
        data={"source": fake_stripe.card_token("5555555555554444")["id"]},
        headers={"Authorization": f"Bearer {fake_stripe.api_key}"},
        timeout=10,
    )
    response.raise_for_status()
    event = make_event("customer.source.created", response.json())
    deliver(client, event)
    before = StripeCustomer.objects.filter(pk=customer.pk).values().get()
    stripe_calls = StripeCalls(fake_stripe)

    deliver_again(client, event)

    after = StripeCustomer.objects.filter(pk=customer.pk).values().get()
    assert {**after, "updated": None} == {**before, "updated": None}
    assert len(before["sources"]) == 2
    assert stripe_calls.writes() == []


def test_an_old_shape_card_list_no_newer_than_a_card_event_is_re_read(client, fake_stripe, customer):
    """customer.created (older API versions list the cards) snapshotted before its card was added,
    delivered after that card's event of the same second: only Stripe knows the current list."""
    [card] = customer.sources
    t0 = now()
    deliver(client, make_event("customer.source.created", card, created=t0))
    stripe_calls = StripeCalls(fake_stripe)
    empty_list = {"object": "list", "data": [], "has_more": False}

    old_shape = {**customer_object(customer), "sources": empty_list}
    deliver(client, make_event("customer.created", old_shape, created=t0))

    assert stripe_calls() == [("GET", f"/v1/customers/{customer.stripe_customer_id}")]
    assert card_ids(customer) == [card["id"]]
