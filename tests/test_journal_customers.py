"""The operations journal for customers: create_at_stripe(), add_new_source(), change_description()
and reconcile_stripe_operations.

A customer is made from a single-use stripe.js token, so the token names the operation
(``customer:create:<token>``): whoever asks with it again (the same row, a new instance as GraphQL
makes, a row a host saved again) finishes that one operation. The fault proxy plays Stripe: a lost
answer after Stripe acted (``drop_after``), a stored 5xx replayed for the key (``status_after``),
keys forgotten after 24 hours (``forget_keys``). Every test runs with the transaction guard raising.
"""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from aa_stripe.exceptions import (
    StripeCardError,
    StripeInternalError,
    StripeMethodNotAllowed,
    StripeOperationInProgress,
)
from aa_stripe.models import StripeCustomer, StripeOperation, customer_operations
from aa_stripe.operations import journal

pytestmark = pytest.mark.django_db


def customers_at_fake(fake_stripe) -> list[dict]:
    return fake_stripe.get("/v1/customers", limit=100)["data"]


def creations(fake_stripe) -> list:
    return [call for call in fake_stripe.proxy.calls("POST", "/v1/customers") if call.path == "/v1/customers"]


def updates(fake_stripe, customer) -> list:
    return fake_stripe.proxy.calls("POST", f"/v1/customers/{customer.stripe_customer_id}")


def reconcile() -> str:
    out = StringIO()
    call_command("reconcile_stripe_operations", stdout=out, stderr=out)
    return out.getvalue()


def lost_creation(fake_stripe, user, fault: str = "drop_after", **options) -> StripeCustomer:
    """A new customer (as GraphQL makes it: unsaved) whose creation answer never arrived."""
    customer = StripeCustomer(user=user, stripe_js_response=fake_stripe.card_token())
    fake_stripe.proxy.inject(fault, method="POST", path_prefix="/v1/customers", **options)
    with pytest.raises(StripeInternalError):
        customer.create_at_stripe()
    return customer


def assert_created_once(fake_stripe, customer: StripeCustomer) -> None:
    customer.refresh_from_db()
    [made] = customers_at_fake(fake_stripe)
    assert customer.is_created_at_stripe and customer.stripe_customer_id == made["id"]
    assert customer.default_source_data["last4"] == "4242"
    operation = StripeOperation.objects.get(kind="customer.create")
    assert operation.state == StripeOperation.SUCCEEDED and operation.stripe_id == made["id"]
    assert made["metadata"]["operation"] == str(operation.uuid)


# --- creation: planned and committed before Stripe is called ----------------------------------------


def test_the_creation_is_committed_with_its_key_before_stripe_is_called(fake_stripe, user):
    token = fake_stripe.card_token()
    customer = StripeCustomer(user=user, stripe_js_response=token)
    seen = {}

    def at_send(service, method, *ids, params=None, idempotency_key=None):
        # What another process would find while the request is on its way.
        [operation] = StripeOperation.objects.filter(kind="customer.create")
        row = StripeCustomer.objects.get(pk=operation.object_id)
        seen.update(state=operation.state, key=operation.key, params=operation.params, row=row)
        return original(service, method, *ids, params=params, idempotency_key=idempotency_key)

    original = journal.stripe_api.call
    journal.stripe_api.call = at_send  # observes only: the request still goes to the fake
    try:
        customer.create_at_stripe()
    finally:
        journal.stripe_api.call = original

    assert seen["state"] == StripeOperation.SENDING and seen["key"] == f"customer:create:{token['id']}"
    assert seen["row"].pk == customer.pk and not seen["row"].is_created_at_stripe
    assert seen["params"]["source"] == token["id"]
    assert_created_once(fake_stripe, customer)


def test_a_lost_creation_keeps_its_row_out_of_use_until_it_is_finished(fake_stripe, user):
    customer = lost_creation(fake_stripe, user)

    row = StripeCustomer.objects.get()
    assert row.pk == customer.pk and not row.is_created_at_stripe and row.stripe_customer_id == ""
    assert StripeCustomer.get_latest_active_customer_for_user(user) is None
    operation = StripeOperation.objects.get(kind="customer.create")
    assert operation.state == StripeOperation.UNKNOWN and operation.object_id == str(row.pk)
    assert len(customers_at_fake(fake_stripe)) == 1  # Stripe acted


# --- finished by asking again, or by reconcile ----------------------------------------------------


def test_a_new_instance_with_the_same_token_becomes_the_row_and_finishes_it(fake_stripe, user):
    customer = lost_creation(fake_stripe, user)

    again = StripeCustomer(user=user, stripe_js_response=customer.stripe_js_response)
    assert again.create_at_stripe() is again

    assert again.pk == customer.pk and StripeCustomer.objects.count() == 1
    assert_created_once(fake_stripe, again)
    first, retry = creations(fake_stripe)
    assert retry.idempotency_key == first.idempotency_key and retry.replayed


def test_reconcile_finishes_a_lost_creation(fake_stripe, user):
    customer = lost_creation(fake_stripe, user)

    assert "1 succeeded, 0 refused, 0 still unresolved" in reconcile()

    assert_created_once(fake_stripe, customer)
    assert StripeCustomer.get_latest_active_customer_for_user(user) == customer
    with pytest.raises(StripeMethodNotAllowed, match="already created"):
        StripeCustomer.objects.get(pk=customer.pk).create_at_stripe()
    assert "0 succeeded, 0 refused, 0 still unresolved" in reconcile()


def test_a_stored_5xx_is_looked_up_not_replayed_forever(fake_stripe, user):
    """Stripe made the customer, then stored a 500 for the key: re-sending alone never succeeds."""
    customer = lost_creation(fake_stripe, user, "status_after", status=500)
    assert StripeOperation.objects.get(kind="customer.create").needs_lookup

    StripeCustomer(user=user, stripe_js_response=customer.stripe_js_response).create_at_stripe()

    assert_created_once(fake_stripe, customer)
    assert len(creations(fake_stripe)) == 1  # found, not sent again


def test_a_5xx_before_stripe_acted_is_sent_again_under_a_new_key(fake_stripe, user):
    customer = lost_creation(fake_stripe, user, "status", status=503)
    assert customers_at_fake(fake_stripe) == []

    customer.create_at_stripe()

    first, second = creations(fake_stripe)
    assert second.idempotency_key == f"{first.idempotency_key}~2"
    assert_created_once(fake_stripe, customer)


def test_after_25_hours_a_lost_creation_is_found_not_made_twice(fake_stripe, user):
    customer = lost_creation(fake_stripe, user)
    fake_stripe.proxy.forget_keys()  # Stripe keeps keys 24 hours

    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        assert "1 succeeded" in reconcile()

    assert_created_once(fake_stripe, customer)
    assert len(creations(fake_stripe)) == 1


def test_a_host_saving_a_new_row_for_the_same_token_gets_the_customer(fake_stripe, user):
    """README's pattern (objects.create, then create_at_stripe) retried as a whole: the token's
    unfinished operation moves to the row asking now; the first row stays out of use."""
    token = fake_stripe.card_token()
    first = StripeCustomer.objects.create(user=user, stripe_js_response=token)
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/customers")
    with pytest.raises(StripeInternalError):
        first.create_at_stripe()

    second = StripeCustomer.objects.create(user=user, stripe_js_response=token)
    second.create_at_stripe()

    first.refresh_from_db()
    assert not first.is_created_at_stripe
    assert_created_once(fake_stripe, second)
    assert StripeOperation.objects.get(kind="customer.create").object_id == str(second.pk)
    assert StripeCustomer.get_latest_active_customer_for_user(user) == second
    with pytest.raises(StripeMethodNotAllowed, match="from this token already"):
        first.create_at_stripe()


def test_a_row_given_another_token_while_its_first_is_unknown_finishes_the_first(fake_stripe, user):
    """Stripe may have made the customer from the first token: never a second customer for one row."""
    customer = StripeCustomer.objects.create(user=user, stripe_js_response=fake_stripe.card_token())
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/customers")
    with pytest.raises(StripeInternalError):
        customer.create_at_stripe()
    customer.stripe_js_response = fake_stripe.card_token("5555555555554444")

    with pytest.raises(StripeMethodNotAllowed, match="earlier token"):
        customer.create_at_stripe()

    assert_created_once(fake_stripe, customer)  # from the first card (4242)
    assert len(creations(fake_stripe)) == 2  # the first request, and its replay


def test_a_deleted_row_whose_creation_was_lost_is_still_finished(fake_stripe, user):
    customer = lost_creation(fake_stripe, user)
    StripeCustomer.objects.filter(pk=customer.pk).delete()

    assert "1 succeeded" in reconcile()

    [made] = customers_at_fake(fake_stripe)
    assert StripeOperation.objects.get(kind="customer.create").stripe_id == made["id"]
    assert not StripeCustomer.objects.exists()


# --- asking again once it is done ------------------------------------------------------------------


def test_the_same_token_again_after_success_is_the_same_customer_without_a_request(fake_stripe, user):
    token = fake_stripe.card_token()
    made = StripeCustomer(user=user, stripe_js_response=token).create_at_stripe()

    again = StripeCustomer(user=user, stripe_js_response=token).create_at_stripe()

    assert again.pk == made.pk and again.stripe_customer_id == made.stripe_customer_id
    assert again.is_created_at_stripe and StripeCustomer.objects.count() == 1
    assert len(creations(fake_stripe)) == 1


def test_another_users_token_is_refused_without_a_request(fake_stripe, user, other_user):
    token = fake_stripe.card_token()
    StripeCustomer(user=user, stripe_js_response=token).create_at_stripe()

    with pytest.raises(StripeMethodNotAllowed, match="another user"):
        StripeCustomer(user=other_user, stripe_js_response=token).create_at_stripe()

    assert len(creations(fake_stripe)) == 1 and not StripeCustomer.objects.filter(user=other_user).exists()


def test_a_declined_card_keeps_a_saved_row_uncreated_and_asking_again_says_so_again(fake_stripe, user):
    customer = StripeCustomer.objects.create(
        user=user, stripe_js_response=fake_stripe.card_token("4000000000000002")
    )
    with pytest.raises(StripeCardError) as declined:
        customer.create_at_stripe()

    with pytest.raises(StripeCardError) as again:
        customer.create_at_stripe()
    with pytest.raises(StripeCardError):
        StripeCustomer(user=user, stripe_js_response=customer.stripe_js_response).create_at_stripe()

    assert (again.value.code, again.value.decline_code, again.value.message) == (
        declined.value.code,
        declined.value.decline_code,
        declined.value.message,
    )
    customer.refresh_from_db()
    assert not customer.is_created_at_stripe and StripeCustomer.objects.count() == 1
    assert StripeCustomer.get_latest_active_customer_for_user(user) is None
    assert StripeOperation.objects.get(kind="customer.create").state == StripeOperation.REFUSED
    assert len(creations(fake_stripe)) == 1 and customers_at_fake(fake_stripe) == []


def test_a_declined_new_instance_leaves_no_row_but_the_operation_keeps_the_answer(fake_stripe, user):
    customer = StripeCustomer(user=user, stripe_js_response=fake_stripe.card_token("4000000000000002"))

    with pytest.raises(StripeCardError) as declined:
        customer.create_at_stripe()

    assert customer.pk is None and not StripeCustomer.objects.exists()
    operation = StripeOperation.objects.get(kind="customer.create")
    assert operation.state == StripeOperation.REFUSED and operation.error_code == declined.value.decline_code


def test_a_double_submit_whose_second_request_looked_too_early_makes_one_customer(
    fake_stripe, user, monkeypatch
):
    """Two requests with the same new token at once: the second looked for the token's operation
    before the first committed it, so its insert of the same key fails; it looks again and is the
    first one's customer."""
    token = fake_stripe.card_token()
    first = StripeCustomer(user=user, stripe_js_response=token).create_at_stripe()
    looks: list[str] = []

    def too_early_once(key: str) -> StripeOperation | None:
        looks.append(key)
        return None if len(looks) == 1 else look(key)

    look = customer_operations.token_operation
    monkeypatch.setattr(customer_operations, "token_operation", too_early_once)

    second = StripeCustomer(user=user, stripe_js_response=token).create_at_stripe()

    assert len(looks) == 2 and second.pk == first.pk and StripeCustomer.objects.count() == 1
    assert StripeOperation.objects.count() == 1 and len(creations(fake_stripe)) == 1


# --- in progress elsewhere ---------------------------------------------------------------------------


@pytest.mark.parametrize("saved", [False, True], ids=["new-instance", "another-saved-row"])
def test_a_creation_another_worker_is_sending_is_not_sent_again(fake_stripe, user, saved):
    token = fake_stripe.card_token()
    first = StripeCustomer.objects.create(user=user, stripe_js_response=token)
    operation = journal.plan(
        first,
        kind="customer.create",
        service="customers",
        method="create",
        params={"source": token["id"]},
        key=f"customer:create:{token['id']}",
    )
    journal.claim(operation)  # another worker holds it, its lease running

    other = StripeCustomer(user=user, stripe_js_response=token)
    if saved:
        other.save()
    with pytest.raises(StripeOperationInProgress):
        other.create_at_stripe()

    assert creations(fake_stripe) == []
    assert StripeCustomer.objects.count() == (2 if saved else 1)
    assert StripeOperation.objects.get().object_id == str(first.pk)


# --- updates: a new card, a description ----------------------------------------------------------------


def test_a_card_whose_answer_was_lost_is_added_once_by_asking_again(fake_stripe, customer):
    token = fake_stripe.card_token("5555555555554444")
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/customers/")
    with pytest.raises(StripeInternalError):
        customer.add_new_source(token["id"], stripe_js_response=token)
    customer.refresh_from_db()
    assert customer.default_source_data["last4"] == "4242"  # not known here yet

    customer.add_new_source(token["id"], stripe_js_response=token)

    customer.refresh_from_db()
    assert customer.default_source_data["last4"] == "4444" and customer.stripe_js_response == token
    first, retry = updates(fake_stripe, customer)
    assert first.idempotency_key == f"customer:source:{customer.stripe_customer_id}:{token['id']}"
    assert retry.idempotency_key == first.idempotency_key and retry.replayed


def test_a_card_behind_a_stored_5xx_is_found_by_reconcile(fake_stripe, customer):
    token = fake_stripe.card_token("5555555555554444")
    fake_stripe.proxy.inject("status_after", method="POST", path_prefix="/v1/customers/", status=500)
    with pytest.raises(StripeInternalError):
        customer.add_new_source(token["id"])

    assert "1 succeeded, 0 refused, 0 still unresolved" in reconcile()

    customer.refresh_from_db()
    at_fake = fake_stripe.get(f"/v1/customers/{customer.stripe_customer_id}")
    assert customer.default_source == at_fake["default_source"]
    assert customer.default_source_data["last4"] == "4444"
    assert len(updates(fake_stripe, customer)) == 1  # found by retrieving the customer, not re-sent


def test_a_second_card_while_the_first_is_unknown_finishes_the_first_before(fake_stripe, customer):
    """Updates reach Stripe in the order asked: the card asked last ends as the default."""
    first, second = fake_stripe.card_token("5555555555554444"), fake_stripe.card_token("4000056655665556")
    fake_stripe.proxy.inject("drop_before", method="POST", path_prefix="/v1/customers/")
    with pytest.raises(StripeInternalError):
        customer.add_new_source(first["id"])

    customer.add_new_source(second["id"])

    sources = [call.params["source"] for call in updates(fake_stripe, customer)]
    assert sources == [first["id"], first["id"], second["id"]]
    customer.refresh_from_db()
    at_fake = fake_stripe.get(f"/v1/customers/{customer.stripe_customer_id}")
    assert customer.default_source == at_fake["default_source"]
    assert customer.default_source_data["last4"] == "5556"
    assert set(StripeOperation.objects.filter(kind="customer.update").values_list("state", flat=True)) == {
        StripeOperation.SUCCEEDED
    }


def test_the_same_card_again_after_success_sends_nothing(fake_stripe, customer):
    token = fake_stripe.card_token("5555555555554444")
    answer = customer.add_new_source(token["id"])

    assert customer.add_new_source(token["id"]) == answer

    assert len(updates(fake_stripe, customer)) == 1


def test_a_description_whose_answer_was_lost_is_finished_by_reconcile(fake_stripe, customer):
    fake_stripe.proxy.inject("drop_after", method="POST", path_prefix="/v1/customers/")
    with pytest.raises(StripeInternalError):
        customer.change_description("VIP")
    operation = StripeOperation.objects.get(kind="customer.update")
    assert operation.state == StripeOperation.UNKNOWN and operation.params["description"] == "VIP"

    assert "1 succeeded" in reconcile()

    operation.refresh_from_db()
    first, retry = updates(fake_stripe, customer)
    assert retry.idempotency_key == first.idempotency_key and retry.replayed
    assert operation.state == StripeOperation.SUCCEEDED
    assert fake_stripe.get(f"/v1/customers/{customer.stripe_customer_id}")["description"] == "VIP"


def test_a_new_description_while_an_older_one_is_unknown_ends_with_the_new_one(fake_stripe, customer):
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/customers/", status=503)
    with pytest.raises(StripeInternalError):
        customer.change_description("old")

    customer.change_description("new")

    sent = [(call.params["description"], call.idempotency_key) for call in updates(fake_stripe, customer)]
    assert [description for description, _ in sent] == ["old", "old", "new"]
    assert sent[1][1] == f"{sent[0][1]}~2"  # looked up (a 503), not found: sent under a new key
    assert fake_stripe.get(f"/v1/customers/{customer.stripe_customer_id}")["description"] == "new"


def test_an_update_another_worker_is_sending_is_not_sent_twice(fake_stripe, customer):
    fake_stripe.proxy.reset()
    operation = journal.plan(
        customer,
        kind="customer.update",
        service="customers",
        method="update",
        params={"description": "VIP"},
        key="customer:update:held",
        ids=(customer.stripe_customer_id,),
    )
    journal.claim(operation)

    with pytest.raises(StripeOperationInProgress):
        customer.change_description("VIP")
    with pytest.raises(StripeOperationInProgress):
        customer.add_new_source(fake_stripe.card_token()["id"])

    assert fake_stripe.proxy.calls("POST") == []
