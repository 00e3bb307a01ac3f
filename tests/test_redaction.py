"""Client secrets are handed to their owner at request time, never stored, shown or logged.

Through the real parts: signed events posted to the webhook endpoint, a SetupIntent created at the
fake Stripe through the journal, the admin's change page; the database is checked whole (every
table serialized), the logs at DEBUG for every logger (stripe-python's own included).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.apps import apps
from django.contrib.admin.utils import quote
from django.core import serializers
from django.urls import reverse

from aa_stripe import stripe_api
from aa_stripe.exceptions import StripeCardError
from aa_stripe.models import StripeCustomer, StripeOperation, StripeWebhook
from aa_stripe.operations import journal
from aa_stripe.redaction import REDACTED, redact_secrets, redact_text
from aa_stripe.testing import make_event
from tests.stripe_fixtures import stripe_object
from tests.test_webhook_handlers import deliver

pytestmark = pytest.mark.django_db

CREATE_KIND = "test.setup_intent.create"
ADOPT_KIND = "test.setup_intent.adopt"


def a_secret(prefix: str) -> tuple[str, str]:
    """``(object id, its client secret)``, unique to the test, shaped as Stripe's."""
    object_id = f"{prefix}_{uuid.uuid4().hex[:24]}"
    return object_id, f"{object_id}_secret_{uuid.uuid4().hex}"


def database_text() -> str:
    """Every row of every table, serialized."""
    return "\n".join(
        serializers.serialize("json", model._base_manager.all())
        for model in apps.get_models()
        if model._meta.managed
    )


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    return caplog.text + "\n".join(
        f"{record.getMessage()} {record.exc_text or ''}" for record in caplog.records
    )


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every logger at DEBUG (stripe-python's ``stripe`` logger writes whole bodies there)."""
    caplog.set_level(logging.DEBUG)
    for name in ("aa_stripe", "aa_stripe_graphql", "stripe", "django"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


# --- the function -----------------------------------------------------------------------------------


def test_client_secrets_are_redacted_at_any_depth_and_none_is_kept() -> None:
    _id, secret = a_secret("pi")
    value = {
        "id": "in_1",
        "confirmation_secret": {"client_secret": secret, "type": "payment_intent"},
        "lines": {"data": [{"payment_intent": {"client_secret": secret}}, {"client_secret": None}]},
        "empty": {"client_secret": ""},
        "key": {"object": "ephemeral_key", "secret": "ek_test_YWNjdF8xMjM0NTY3ODkw"},
        "not_a_key": {"object": "customer", "secret": "kept"},
        "metadata": {"plan": "top_secret_plan12345"},
    }

    redacted = redact_secrets(value)

    assert redacted == {
        "id": "in_1",
        "confirmation_secret": {"client_secret": REDACTED, "type": "payment_intent"},
        "lines": {"data": [{"payment_intent": {"client_secret": REDACTED}}, {"client_secret": None}]},
        "empty": {"client_secret": ""},
        "key": {"object": "ephemeral_key", "secret": REDACTED},
        "not_a_key": {"object": "customer", "secret": "kept"},
        "metadata": {"plan": "top_secret_plan12345"},
    }
    assert value["confirmation_secret"]["client_secret"] == secret  # the argument is not changed
    assert REDACTED == "[redacted]"


def test_stripe_error_bodies_lose_the_intents_client_secret_and_messages_quoting_it() -> None:
    seti_id, seti_secret = a_secret("seti")
    pi_id, pi_secret = a_secret("pi")
    body = {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "message": f"No such payment_intent: '{pi_secret}'",
            "payment_intent": {"id": pi_id, "object": "payment_intent", "client_secret": pi_secret},
            "setup_intent": {"id": seti_id, "object": "setup_intent", "client_secret": seti_secret},
        }
    }

    error = redact_secrets(body)["error"]

    assert error["payment_intent"] == {"id": pi_id, "object": "payment_intent", "client_secret": REDACTED}
    assert error["setup_intent"]["client_secret"] == REDACTED
    assert error["message"] == f"No such payment_intent: '{pi_id}_secret_{REDACTED}'"
    assert redact_text(f"confirm {seti_secret} now") == f"confirm {seti_id}_secret_{REDACTED} now"


def test_a_value_without_a_secret_is_returned_as_it_is_not_copied() -> None:
    value = {"id": "cus_1", "sources": [{"id": "card_1"}], "metadata": {"a": "b"}}
    listed = [{"id": "ch_1"}]

    assert redact_secrets(value) is value
    assert redact_secrets(listed) is listed
    assert redact_secrets(None) is None
    assert redact_secrets("cus_1") == "cus_1"


def test_a_stripe_object_is_answered_as_plain_redacted_data() -> None:
    import stripe

    _id, secret = a_secret("seti")
    obj = stripe.StripeObject.construct_from({"id": "seti_1", "client_secret": secret}, "sk_test_x")

    assert redact_secrets(obj) == {"id": "seti_1", "client_secret": REDACTED}


# --- webhooks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "resource", "prefix"),
    [
        ("setup_intent.succeeded", "setup_intent", "seti"),
        ("payment_intent.requires_action", "payment_intent", "pi"),
    ],
)
def test_a_signed_event_is_stored_without_its_client_secret(
    client: Any, all_logs: pytest.LogCaptureFixture, event_type: str, resource: str, prefix: str
) -> None:
    object_id, secret = a_secret(prefix)
    intent = stripe_object(resource, id=object_id, client_secret=secret, customer=None)
    event = make_event(event_type, intent)

    webhook = deliver(client, event)

    assert webhook.raw_data["data"]["object"]["client_secret"] == REDACTED
    assert webhook.raw_data["data"]["object"]["id"] == object_id
    assert webhook.data_object == {**intent, "client_secret": REDACTED}  # the rest as Stripe sent it
    assert secret not in database_text()
    assert secret not in logged_text(all_logs)


def test_the_webhook_admin_page_shows_no_client_secret(staff_client: Any, client: Any) -> None:
    object_id, secret = a_secret("seti")
    event = make_event(
        "setup_intent.succeeded", stripe_object("setup_intent", id=object_id, client_secret=secret)
    )
    deliver(client, event)

    # quote(): the admin unquotes "_40", "_22"... in ids, and a random event id can start so
    response = staff_client.get(reverse("admin:aa_stripe_stripewebhook_change", args=[quote(event["id"])]))

    assert response.status_code == 200
    page = response.content.decode()
    assert object_id in page and REDACTED in page
    assert secret not in page


def test_a_webhook_row_saved_outside_the_endpoint_is_redacted_too() -> None:
    _id, secret = a_secret("pi")
    event = make_event(
        "invoice.paid",
        {
            "id": "in_1",
            "object": "invoice",
            "confirmation_secret": {"client_secret": secret, "type": "payment_intent"},
        },
    )

    webhook, created = StripeWebhook.store_event(event)
    row = StripeWebhook.objects.create(id="evt_by_hand", raw_data=event)

    assert created
    assert event["data"]["object"]["confirmation_secret"]["client_secret"] == secret  # the caller's dict
    for stored in (webhook, row):
        stored.refresh_from_db()
        assert stored.data_object["confirmation_secret"] == {
            "client_secret": REDACTED,
            "type": "payment_intent",
        }
    assert secret not in database_text()


# --- the journal ----------------------------------------------------------------------------------------


@pytest.fixture
def setup_intent_kinds() -> Iterator[dict[str, Any]]:
    """Test-only kinds: create a SetupIntent for a customer (the row is left as it is); and one
    whose recorder, told Stripe refused, adopts the intent put in the yielded dict (a recorder
    judging again)."""
    adopted: dict[str, Any] = {}

    def record_adopting(operation: StripeOperation, outcome: journal.Outcome, target: Any) -> None:
        if outcome.state == StripeOperation.REFUSED and adopted:
            outcome = journal.Outcome(StripeOperation.SUCCEEDED, adopted)
        journal.finish(operation, outcome)

    journal.register_simple(CREATE_KIND, StripeCustomer, lambda row, intent: None)
    journal.register(ADOPT_KIND, lookup=lambda operation: None, record=record_adopting)
    try:
        yield adopted
    finally:
        journal.KINDS.pop(CREATE_KIND, None)
        journal.KINDS.pop(ADOPT_KIND, None)


def create_setup_intent(customer: StripeCustomer, kind: str = CREATE_KIND) -> journal.Outcome:
    return journal.perform(
        customer,
        kind=kind,
        service="setup_intents",
        method="create",
        params={"customer": customer.stripe_customer_id, "usage": "off_session"},
        key=f"{kind}:{customer.pk}",
    )


def test_a_setup_intent_made_through_the_journal_hands_its_secret_to_the_caller_only(
    fake_stripe: Any,
    customer: StripeCustomer,
    setup_intent_kinds: dict[str, Any],
    all_logs: pytest.LogCaptureFixture,
) -> None:
    outcome = create_setup_intent(customer)

    assert outcome.succeeded
    intent = outcome.result
    assert intent is not None and intent["object"] == "setup_intent"
    secret = intent["client_secret"]
    assert secret.startswith(f"{intent['id']}_secret_")  # the caller gets it, to hand to the owner
    operation = StripeOperation.objects.get(kind=CREATE_KIND)
    assert (operation.state, operation.stripe_id) == (StripeOperation.SUCCEEDED, intent["id"])
    assert operation.result == {**intent, "client_secret": REDACTED}
    assert secret not in database_text()
    assert any("API response body" in record.getMessage() for record in all_logs.records)  # stripe's log
    assert secret not in logged_text(all_logs)


def test_a_recorder_judging_again_still_hands_the_answer_to_the_caller_unredacted(
    fake_stripe: Any, customer: StripeCustomer, setup_intent_kinds: dict[str, Any]
) -> None:
    made = stripe_api.call("setup_intents", "create", params={"customer": customer.stripe_customer_id})
    setup_intent_kinds.update(made)
    fake_stripe.proxy.inject("status", method="POST", path_prefix="/v1/setup_intents", status=400)

    outcome = create_setup_intent(customer, kind=ADOPT_KIND)

    assert outcome.state == StripeOperation.SUCCEEDED
    assert outcome.result is not None and outcome.result["client_secret"] == made["client_secret"]
    assert StripeOperation.objects.get(kind=ADOPT_KIND).result["client_secret"] == REDACTED
    assert made["client_secret"] not in database_text()


def test_a_refusal_is_stored_without_the_secret_its_error_body_carries(
    customer: StripeCustomer, setup_intent_kinds: dict[str, Any]
) -> None:
    pi_id, secret = a_secret("pi")
    body = {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "message": f"Your card was declined ({secret}).",
            "payment_intent": {"id": pi_id, "object": "payment_intent", "client_secret": secret},
        }
    }
    error = StripeCardError(body["error"]["message"], code="card_declined", http_status=402, json_body=body)
    operation = journal.plan(
        customer, kind=CREATE_KIND, service="payment_intents", method="create", params={}, key="refused"
    )
    journal.claim(operation)

    assert journal.finish(operation, journal.Outcome(StripeOperation.REFUSED, body, error))

    assert operation.result["error"]["payment_intent"]["client_secret"] == REDACTED  # in memory too
    operation.refresh_from_db()
    assert operation.state == StripeOperation.REFUSED
    assert operation.result["error"]["payment_intent"] == {
        "id": pi_id,
        "object": "payment_intent",
        "client_secret": REDACTED,
    }
    assert pi_id in operation.error_message
    assert body["error"]["payment_intent"]["client_secret"] == secret  # the caller's body
    assert secret not in database_text()


# --- every model's JSON columns ---------------------------------------------------------------------


def test_every_json_column_of_a_library_model_is_saved_redacted(
    customer: StripeCustomer, other_user: Any
) -> None:
    _id, secret = a_secret("pi")
    invoice = stripe_object(
        "invoice", confirmation_secret={"client_secret": secret, "type": "payment_intent"}
    )

    customer.stripe_response = invoice
    customer.save(update_fields=["stripe_response", "updated"])
    other = StripeCustomer.objects.create(
        user=other_user, sources=[invoice], stripe_js_response={"client_secret": secret}
    )

    assert customer.stripe_response["confirmation_secret"]["client_secret"] == REDACTED  # in memory too
    customer.refresh_from_db()
    other.refresh_from_db()
    assert customer.stripe_response == {
        **invoice,
        "confirmation_secret": {"client_secret": REDACTED, "type": "payment_intent"},
    }
    assert other.sources[0]["confirmation_secret"]["client_secret"] == REDACTED
    assert other.stripe_js_response == {"client_secret": REDACTED}
    assert secret not in database_text()


def test_secrets_stored_before_the_upgrade_are_redacted_by_migration_0038(db):
    """Rows an older version stored (raw JSON written past today's save()) are rewritten once."""
    import importlib
    from types import SimpleNamespace

    from django.apps import apps as django_apps
    from django.db import connection

    from aa_stripe.models import StripeWebhook

    migration = importlib.import_module("aa_stripe.migrations.0038_redact_stored_client_secrets")
    secret = "pi_3Old_secret_OldSecret123"
    intent = {"id": "pi_3Old", "object": "payment_intent", "client_secret": secret}
    old = {"id": "evt_old", "type": "payment_intent.succeeded", "data": {"object": intent}}
    StripeWebhook.objects.bulk_create(
        [
            StripeWebhook(id="evt_old", event_type="payment_intent.succeeded", raw_data=old),
            StripeWebhook(id="evt_coupon", event_type="coupon.created", raw_data={"id": "evt_coupon"}),
        ]
    )
    assert secret in str(StripeWebhook.objects.get(pk="evt_old").raw_data)  # bulk_create skips save()

    migration.redact_stored_secrets(django_apps, SimpleNamespace(connection=connection))

    stored = StripeWebhook.objects.get(pk="evt_old").raw_data
    assert stored["data"]["object"]["client_secret"] == "[redacted]"
    assert StripeWebhook.objects.get(pk="evt_coupon").raw_data == {"id": "evt_coupon"}
